//! Profiles end to end: `profile.set` / `profile.get` / `user.find` over a real chatd, and
//! avatars downloaded through `media.download` (the `fs` media back end).
//!
//! Who sees a profile (the owner; whoever shares a 1:1 conversation or a group with them),
//! what a stranger and an unknown id get (the same `null`s), the checks of names and avatars,
//! the avatar download rule, finding users by exact id under the request rate, profiles kept
//! across a restart and gone with a removed account, and profiles shared by the nodes of a
//! cluster (PostgreSQL).

use crate::support;
use crate::support::media_kit;

use media_kit::*;
use serde_json::{json, Value};
use support::{create_group, online, unique, Client};

/// The `profiles` of a `profile.get` by `me` for `users`.
async fn profiles(c: &mut Client, me: &str, users: &[&str]) -> Vec<Value> {
    let reply = rpc(c, me, "profile.get", json!({ "users": users })).await;
    let list = result(&reply)["profiles"]
        .as_array()
        .unwrap_or_else(|| panic!("no profiles list: {reply}"))
        .clone();
    let asked: Vec<&str> = list.iter().filter_map(|p| p["user"].as_str()).collect();
    assert_eq!(asked, users, "entries in request order: {reply}");
    list
}

/// `(name, avatar)` of `user` as `me` sees it.
async fn seen(c: &mut Client, me: &str, user: &str) -> (Value, Value) {
    let list = profiles(c, me, &[user]).await;
    (list[0]["name"].clone(), list[0]["avatar"].clone())
}

/// `profile.set` with `args`, which must succeed with `{}`.
async fn set_ok(c: &mut Client, me: &str, args: Value) {
    let reply = rpc(c, me, "profile.set", args.clone()).await;
    assert_eq!(result(&reply), &json!({}), "profile.set {args}: {reply}");
}

/// A tiny PNG-typed image of its own for each `seed`.
fn image(seed: u8) -> Vec<u8> {
    content(seed, 2048)
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_are_seen_by_contacts_and_group_members_only() {
    let f = Fixture::start(Kind::Fs, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    let mut dave = online(s, "dave", "dave").await;

    // Nothing set yet: the owner sees nulls too.
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (Value::Null, Value::Null)
    );
    set_ok(&mut alice, "alice", json!({"name": "  Alice Liddell \t"})).await;
    set_ok(&mut bob, "bob", json!({"name": "Bob 🙂"})).await;
    set_ok(&mut carol, "carol", json!({"name": "Carol"})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (json!("Alice Liddell"), Value::Null),
        "stored trimmed"
    );

    // Strangers: nulls, exactly as for an id nobody has.
    let list = profiles(&mut bob, "bob", &["alice", "nosuchuser", "bob", "alice"]).await;
    let empty = |u: &str| json!({"user": u, "name": null, "avatar": null});
    assert_eq!(list[0], empty("alice"));
    assert_eq!(list[1], empty("nosuchuser"));
    assert_eq!(
        list[2],
        json!({"user": "bob", "name": "Bob 🙂", "avatar": null})
    );
    assert_eq!(list[3], empty("alice"));

    // One 1:1 message, either way round: both see each other.
    let ack = alice.send("alice", "bob", &unique("c"), "hi bob").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(
        seen(&mut bob, "bob", "alice").await.0,
        json!("Alice Liddell")
    );
    assert_eq!(seen(&mut alice, "alice", "bob").await.0, json!("Bob 🙂"));
    // Nobody else gains anything from it.
    assert_eq!(seen(&mut carol, "carol", "alice").await.0, Value::Null);
    assert_eq!(seen(&mut dave, "dave", "bob").await.0, Value::Null);

    // A group: its members see each other; dave, outside it, still sees nulls.
    let group = create_group(&mut carol, "carol", "book club", &["bob"]).await;
    assert_eq!(seen(&mut bob, "bob", "carol").await.0, json!("Carol"));
    assert_eq!(seen(&mut carol, "carol", "bob").await.0, json!("Bob 🙂"));
    assert_eq!(seen(&mut carol, "carol", "alice").await.0, Value::Null);
    assert_eq!(seen(&mut dave, "dave", "carol").await.0, Value::Null);

    // Leaving the group ends it: only current members see each other.
    let reply = rpc(&mut bob, "bob", "group.leave", json!({"group": group})).await;
    result(&reply);
    assert_eq!(seen(&mut bob, "bob", "carol").await.0, Value::Null);
    assert_eq!(seen(&mut carol, "carol", "bob").await.0, Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_profile_requests_are_refused() {
    let f = Fixture::start(Kind::Fs, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;

    let refused = [
        (
            json!({"name": "bell\u{0007}"}),
            "bad_request",
            "control characters",
        ),
        (
            json!({"name": "two\nlines"}),
            "bad_request",
            "control characters",
        ),
        (
            json!({"name": "abc\u{202E}fdp.exe"}),
            "bad_request",
            "control characters",
        ),
        (json!({"name": "   "}), "bad_request", "empty"),
        (json!({"name": "x".repeat(65)}), "too_large", "at most 64"),
        (json!({"name": 7}), "bad_request", "string or null"),
        (json!({}), "bad_request", "`name` or `avatar`"),
        (
            json!({"name": "A", "nick": "a"}),
            "bad_request",
            "unknown field `nick`",
        ),
        (json!({"avatar": 1}), "bad_request", "media id or null"),
        (
            json!({"avatar": "m_nosuch"}),
            "bad_request",
            "unknown media",
        ),
        (
            json!({"avatar": "not a media id"}),
            "bad_request",
            "not a media id",
        ),
    ];
    for (args, code, needle) in refused {
        let reply = rpc(&mut alice, "alice", "profile.set", args.clone()).await;
        assert_refused(&reply, code, needle);
    }
    // 64 characters (not bytes) is the most.
    set_ok(&mut alice, "alice", json!({"name": "é".repeat(64)})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await.0,
        json!("é".repeat(64))
    );

    // Avatars: only a verified image the caller uploaded.
    let bobs = upload_verified(&f, &mut bob, "bob", "image/png", &image(1)).await;
    let reply = rpc(&mut alice, "alice", "profile.set", json!({"avatar": bobs})).await;
    assert_refused(&reply, "bad_request", "uploaded by another user");
    let (pending, _, _) = upload_grant(&mut alice, "alice", "image/png", &image(2)).await;
    let reply = rpc(
        &mut alice,
        "alice",
        "profile.set",
        json!({"avatar": pending}),
    )
    .await;
    assert_refused(&reply, "bad_request", "not been uploaded");
    let pdf = upload_verified(&f, &mut alice, "alice", "application/pdf", &image(3)).await;
    let reply = rpc(&mut alice, "alice", "profile.set", json!({"avatar": pdf})).await;
    assert_refused(&reply, "bad_request", "image");
    // A refused change changed nothing, the name included.
    let reply = rpc(
        &mut alice,
        "alice",
        "profile.set",
        json!({"name": "Changed", "avatar": bobs}),
    )
    .await;
    assert_refused(&reply, "bad_request", "uploaded by another user");
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (json!("é".repeat(64)), Value::Null)
    );

    for (args, needle) in [
        (json!({}), "`users`"),
        (json!({"users": []}), "1 to 100"),
        (json!({"users": vec!["bob"; 101]}), "1 to 100"),
        (json!({"users": ["bob/x"]}), "not a valid user id"),
        (
            json!({"users": ["bob"], "all": true}),
            "unknown field `all`",
        ),
    ] {
        let reply = rpc(&mut alice, "alice", "profile.get", args).await;
        assert_refused(&reply, "bad_request", needle);
    }
    let hundred: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let reply = rpc(
        &mut alice,
        "alice",
        "profile.get",
        json!({ "users": hundred }),
    )
    .await;
    assert_eq!(
        result(&reply)["profiles"].as_array().map(Vec::len),
        Some(100)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_avatar_is_downloaded_by_whoever_sees_the_profile() {
    let f = Fixture::start(Kind::Fs, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    let photo = image(7);
    let avatar = upload_verified(&f, &mut alice, "alice", "image/png", &photo).await;

    // Before it is an avatar, nobody may download it (not even its uploader: no message).
    let reply = rpc(&mut bob, "bob", "media.download", json!({"media": avatar})).await;
    assert_refused(&reply, "forbidden", "may download");

    set_ok(&mut alice, "alice", json!({"avatar": avatar})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (Value::Null, json!(avatar))
    );
    // The owner fetches their own avatar.
    let (url, _) = download_url(&mut alice, "alice", &avatar).await;
    assert_eq!(get(&url).await.0, 200);

    // A stranger: neither the id in the profile nor the bytes.
    assert_eq!(seen(&mut bob, "bob", "alice").await.1, Value::Null);
    let reply = rpc(&mut bob, "bob", "media.download", json!({"media": avatar})).await;
    assert_refused(&reply, "forbidden", "may download");

    // After a message, bob sees the avatar and downloads its bytes.
    let ack = bob.send("bob", "alice", &unique("c"), "hello").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(seen(&mut bob, "bob", "alice").await.1, json!(avatar));
    let (url, r) = download_url(&mut bob, "bob", &avatar).await;
    assert_eq!(r["mime"], "image/png", "{r}");
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body == photo, "bob downloaded other bytes");
    // Carol, who never talked to alice, still may not.
    let reply = rpc(
        &mut carol,
        "carol",
        "media.download",
        json!({"media": avatar}),
    )
    .await;
    assert_refused(&reply, "forbidden", "may download");

    // Once it is no longer the avatar, the right goes with it.
    set_ok(&mut alice, "alice", json!({"avatar": null})).await;
    let reply = rpc(&mut bob, "bob", "media.download", json!({"media": avatar})).await;
    assert_refused(&reply, "forbidden", "may download");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_found_by_exact_id_under_the_request_rate() {
    let s = support::server_with_users(
        &["alice", "bob"],
        "[limits]\nrequests_per_sec = 1\nrequests_burst = 4\n",
    );
    let mut alice = online(&s, "alice", "alice").await;
    let reply = rpc(&mut alice, "alice", "user.find", json!({"user": "bob"})).await;
    assert_eq!(result(&reply), &json!({"user": "bob"}));
    let reply = rpc(&mut alice, "alice", "user.find", json!({"user": "bobby"})).await;
    assert_refused(&reply, "not_found", "no such user");
    let reply = rpc(&mut alice, "alice", "user.find", json!({"user": "b*"})).await;
    assert_refused(&reply, "bad_request", "not a valid user id");
    // The burst is spent: finding is limited like every request.
    let mut limited = false;
    for _ in 0..3 {
        let reply = rpc(&mut alice, "alice", "user.find", json!({"user": "bob"})).await;
        if reply["ok"] == false {
            assert_refused(&reply, "rate_limited", "");
            limited = true;
            break;
        }
    }
    assert!(limited, "user.find was never rate limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_survives_a_restart_and_null_clears_each_field() {
    let mut f = Fixture::start(Kind::Fs, "", "");
    let mut alice = online(&f.server, "alice", "alice").await;
    let avatar = upload_verified(&f, &mut alice, "alice", "image/png", &image(9)).await;
    set_ok(
        &mut alice,
        "alice",
        json!({"name": "Alice", "avatar": avatar}),
    )
    .await;
    alice.disconnect().await;

    f.server.stop();
    f.server.restart();
    let mut alice = online(&f.server, "alice", "alice").await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (json!("Alice"), json!(avatar))
    );

    // One field at a time: the other stays.
    set_ok(&mut alice, "alice", json!({"name": null})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (Value::Null, json!(avatar))
    );
    set_ok(&mut alice, "alice", json!({"name": "Al"})).await;
    set_ok(&mut alice, "alice", json!({"avatar": null})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (json!("Al"), Value::Null)
    );
    set_ok(&mut alice, "alice", json!({"name": null, "avatar": null})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (Value::Null, Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_users_profile_goes_and_a_reclaimed_id_shares_nothing_old() {
    let s = support::server_with_users(&["alice", "bob"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    set_ok(&mut alice, "alice", json!({"name": "Alice"})).await;
    set_ok(&mut bob, "bob", json!({"name": "Old Bob"})).await;
    let ack = alice.send("alice", "bob", &unique("c"), "hi").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(seen(&mut alice, "alice", "bob").await.0, json!("Old Bob"));
    bob.disconnect().await;

    let (status, body) = s.admin("DELETE", "/admin/users/bob", None);
    assert_eq!(status, 204, "remove: {body}");
    assert_eq!(seen(&mut alice, "alice", "bob").await.0, Value::Null);
    let reply = rpc(&mut alice, "alice", "user.find", json!({"user": "bob"})).await;
    assert_refused(&reply, "not_found", "no such user");

    // Given out again (once the clean-up is done): the new bob starts without a profile, and
    // the old conversation shows neither of them to the other.
    let reclaim = json!({"user": "bob", "password": "bob-pw", "reclaim": true}).to_string();
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let (status, body) = s.admin("POST", "/admin/users", Some(&reclaim));
        if status == 201 {
            break;
        }
        assert!(
            body.contains("still being completed") && std::time::Instant::now() < deadline,
            "reclaim: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut bob = online(&s, "bob", "bob").await;
    assert_eq!(
        seen(&mut bob, "bob", "bob").await,
        (Value::Null, Value::Null)
    );
    set_ok(&mut bob, "bob", json!({"name": "New Bob"})).await;
    assert_eq!(seen(&mut alice, "alice", "bob").await.0, Value::Null);
    assert_eq!(seen(&mut bob, "bob", "alice").await.0, Value::Null);
    // A message of their own does.
    let ack = bob.send("bob", "alice", &unique("c"), "hello again").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(seen(&mut alice, "alice", "bob").await.0, json!("New Bob"));
    assert_eq!(seen(&mut bob, "bob", "alice").await.0, json!("Alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_are_shared_by_the_nodes_of_a_cluster() {
    let cluster = support::cluster_kit::Cluster::new();
    let one = cluster.node(1);
    let two = cluster.node(2);
    for u in ["alice", "bob"] {
        one.add_user(u, &format!("{u}-pw"));
    }
    let mut alice = online(&one, "alice", "alice").await;
    let mut bob = online(&two, "bob", "bob").await;
    let photo = image(11);
    let (avatar, url, _) = upload_grant(&mut alice, "alice", "image/png", &photo).await;
    let (status, body) = put(&url, photo.clone()).await;
    assert_eq!(status, 201, "PUT: {body}");
    set_ok(
        &mut alice,
        "alice",
        json!({"name": "Alice", "avatar": avatar}),
    )
    .await;
    assert_eq!(
        cluster.count("SELECT count(*) FROM profiles WHERE user_id = 'alice' AND name = 'Alice'"),
        1
    );

    // Node 2 applies the same rules to what node 1 stored.
    assert_eq!(
        seen(&mut bob, "bob", "alice").await,
        (Value::Null, Value::Null)
    );
    let ack = bob.send("bob", "alice", &unique("c"), "hi").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(
        seen(&mut bob, "bob", "alice").await,
        (json!("Alice"), json!(avatar))
    );
    let (url, _) = download_url(&mut bob, "bob", &avatar).await;
    let (status, _, bytes) = get(&url).await;
    assert_eq!(status, 200);
    assert!(bytes == photo, "bob downloaded other bytes");

    // A change on node 2 is what node 1 reads.
    let mut alice_two = online(&two, "alice:two", "alice").await;
    set_ok(&mut alice_two, "alice", json!({"name": null})).await;
    assert_eq!(
        seen(&mut alice, "alice", "alice").await,
        (Value::Null, json!(avatar))
    );
}
