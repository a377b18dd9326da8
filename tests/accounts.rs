//! Account lifecycle against hostile reuse (issue 12): a removed user leaves every group and
//! their data goes, the id stays reserved until an administrator reclaims it (a JWT cannot bring
//! it back), and a reclaimed id starts empty; a revoked session's will is discarded; ids that
//! look like an existing one cannot be created.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::raw::{Connect, Raw, V};
use support::*;

const SECRET: &str = "accounts-test-secret-0123456789";

/// A server with the given users (password `{user}-pw`).
fn server_with(users: &[&str], extra_toml: &str) -> Server {
    server_with_users(users, extra_toml)
}

/// A request that must succeed; returns its result.
async fn ok(c: &mut Client, me: &str, req: Value) -> Value {
    rpc_ok(c, me, req).await
}

/// A request that must be refused; returns the error code.
async fn refused(c: &mut Client, me: &str, mut req: Value) -> String {
    req["rid"] = json!(unique("r"));
    let r = c.rpc(me, req.clone()).await;
    assert_eq!(r["ok"], false, "{req} must be refused: {r}");
    r["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// The next group event of `kind` in `me`'s inbox.
async fn event(c: &mut Client, me: &str, kind: &str) -> Value {
    c.next_where(&format!("user/{me}/inbox"), "event", &json!(kind))
        .await
}

fn add(s: &Server, user: &str, password: &str, reclaim: Option<bool>) -> (u16, String) {
    let mut body = json!({"user": user, "password": password});
    if let Some(reclaim) = reclaim {
        body["reclaim"] = json!(reclaim);
    }
    s.admin("POST", "/admin/users", Some(&body.to_string()))
}

fn jwt(sub: &str) -> String {
    hs256_jwt(SECRET, sub)
}

/// CONNACK code of a 3.1.1 login (0 = accepted, 4 = bad credentials, 5 = not authorized).
async fn login_code(s: &Server, user: &str, password: &str) -> u8 {
    let connect = Connect::new(V::V4, &format!("{user}:probe"), user, password);
    let (mut raw, code) = Raw::connect_with(s.mqtt, &connect).await;
    let code = code.unwrap_or_else(|e| panic!("no CONNACK for {user}: {e:?}"));
    raw.send(&support::raw::disconnect()).await;
    code
}

/// Uploads `bytes` as an image through the fs back end: the media id.
async fn upload(c: &mut Client, me: &str, bytes: &[u8]) -> String {
    let http = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("http client");
    loop {
        let grant = ok(
            c,
            me,
            json!({"op": "media.upload", "mime": "image/png", "size": bytes.len(),
                   "sha256": hex::encode(Sha256::digest(bytes))}),
        )
        .await;
        let media = grant["media"].as_str().expect("media id").to_string();
        let url = grant["upload_url"].as_str().expect("upload_url");
        let status = http
            .put(url)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT upload")
            .status()
            .as_u16();
        // A URL that expired on a slow machine is asked for again.
        if status == 201 {
            return media;
        }
        assert_eq!(status, 403, "upload PUT answered {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_leaves_groups_and_a_reclaimed_id_starts_empty() {
    let s = server_with(&["alice", "bob", "carol"], "[media]\nbackend = \"fs\"\n");
    let mut alice = online(&s, "alice", "alice").await;
    let mut carol = online(&s, "carol", "carol").await;
    let old_cid = unique("c");
    let (group, old_id, received, media) = {
        let mut bob = online(&s, "bob", "bob").await;
        // bob is the group's only admin.
        let group = ok(
            &mut bob,
            "bob",
            json!({"op": "group.create", "name": "team", "members": ["alice", "carol"]}),
        )
        .await["group"]
            .as_str()
            .expect("group id")
            .to_string();
        let ack = bob.send("bob", "alice", &old_cid, "old secret").await;
        assert_eq!(ack["status"], "sent", "{ack}");
        let old_id = ack["id"].as_str().expect("id").to_string();
        alice
            .next_where("user/alice/inbox", "id", &json!(old_id))
            .await;
        let media = upload(&mut alice, "alice", b"\x89PNG old photo").await;
        let ack = alice
            .send_json(
                "alice",
                &json!({"cid": unique("c"), "to": "bob", "type": "image", "media": media}),
            )
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        bob.next_where("user/bob/inbox", "id", &ack["id"]).await;
        bob.disconnect().await;
        let received = ack["id"].as_str().expect("id").to_string();
        (group, old_id, received, media)
    };
    // Queued for bob while he is away: a group message and a 1:1 message.
    let ack = alice
        .send_json(
            "alice",
            &json!({"cid": unique("c"), "group": group, "type": "text", "text": "while away"}),
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let ack = alice.send("alice", "bob", &unique("c"), "queued").await;
    assert_eq!(ack["status"], "sent", "{ack}");

    let (status, body) = s.admin("DELETE", "/admin/users/bob", None);
    assert_eq!(status, 204, "remove: {body}");

    // The members are told, and the group keeps an admin.
    let left = event(&mut alice, "alice", "member_left").await;
    assert_eq!(left["users"], json!(["bob"]), "{left}");
    assert_eq!(left["group"], json!(group), "{left}");
    event(&mut carol, "carol", "member_left").await;
    event(&mut alice, "alice", "promoted").await;
    let info = ok(
        &mut alice,
        "alice",
        json!({"op": "group.info", "group": group}),
    )
    .await;
    let members = info["members"].as_array().expect("members").clone();
    assert!(
        !members.iter().any(|m| m["user"] == "bob"),
        "bob still a member: {info}"
    );
    assert!(
        members.iter().any(|m| m["role"] == "admin"),
        "no admin left: {info}"
    );
    // The id is refused like an unknown one, and is not given out again by accident.
    let ack = alice.send("alice", "bob", &unique("c"), "gone?").await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    let (status, body) = add(&s, "bob", "new-pw", None);
    assert_eq!(status, 409, "add of a removed id without reclaim: {body}");
    assert!(body.contains("reclaim"), "{body}");
    assert_eq!(
        login_code(&s, "bob", "bob-pw").await,
        4,
        "removed user logs in"
    );

    // An administrator gives the id out again: its new owner sees nothing of the old one.
    let (status, body) = add(&s, "bob", "bob-pw", Some(true));
    assert_eq!(status, 201, "reclaim: {body}");
    let mut bob = online(&s, "bob:new", "bob").await;
    // Anything left in the old queue would come before this.
    let ack = alice
        .send("alice", "bob", &unique("c"), "hello new bob")
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let first = bob.next_on("user/bob/inbox").await;
    assert_eq!(
        first["text"], "hello new bob",
        "old queue delivered: {first}"
    );
    let list = ok(&mut bob, "bob", json!({"op": "conversations"})).await;
    let list = list["conversations"].as_array().expect("list").clone();
    assert_eq!(list.len(), 1, "only the new conversation: {list:?}");
    assert_eq!(list[0]["last"]["text"], "hello new bob", "{list:?}");
    let page = ok(&mut bob, "bob", json!({"op": "history", "with": "alice"})).await;
    let texts: Vec<&Value> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| &m["text"])
        .collect();
    assert_eq!(
        texts,
        vec!["hello new bob"],
        "old 1:1 history shown: {page}"
    );
    refused(&mut bob, "bob", json!({"op": "history", "group": group})).await;
    refused(&mut bob, "bob", json!({"op": "group.info", "group": group})).await;
    let code = refused(
        &mut bob,
        "bob",
        json!({"op": "media.download", "media": media}),
    )
    .await;
    assert_eq!(code, "forbidden", "old media right kept");
    // No receipt for the old owner's messages, and the old owner's cids are forgotten.
    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [received], "status": "read"}),
    )
    .await;
    let refusal = bob.next_on("user/bob/ack").await;
    assert_eq!(refusal["receipt"], json!([received]), "{refusal}");
    let ack = bob.send("bob", "alice", &old_cid, "new text").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_ne!(ack["id"], json!(old_id), "the old owner's ack was returned");
    // The peers keep their history.
    let page = ok(&mut alice, "alice", json!({"op": "history", "with": "bob"})).await;
    assert!(
        page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["text"] == "old secret"),
        "alice lost her history: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_interrupted_by_a_crash_is_finished_at_the_next_start() {
    let mut s = server_with(&["alice", "bob"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let ack = alice.send("alice", "bob", &unique("c"), "queued").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    drop(alice);
    s.kill9();
    // The tombstone is written, then the server dies before cleaning up.
    {
        let store = s.open_store();
        chatd_core::accounts::Accounts::new(std::sync::Arc::new(
            chatd_embedded::accounts::EmbeddedAccounts::new(store),
        ))
        .remove("bob")
        .expect("remove");
    }
    let out = s.cli(&["user", "add", "bob", "--password", "bob-pw"]);
    assert!(!out.status.success(), "add without --reclaim succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reclaim"),
        "{out:?}"
    );
    s.restart();
    let (status, body) = add(&s, "bob", "bob-pw", Some(true));
    assert_eq!(status, 201, "reclaim after the restart: {body}");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let ack = alice.send("alice", "bob", &unique("c"), "after").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let first = bob.next_on("user/bob/inbox").await;
    assert_eq!(first["text"], "after", "old queue delivered: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_remove_command_cleans_up_too() {
    let mut s = server_with(&["alice", "bob"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let ack = alice.send("alice", "bob", &unique("c"), "queued").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    drop(alice);
    s.stop();
    let out = s.cli(&["user", "remove", "bob"]);
    assert!(out.status.success(), "{out:?}");
    let out = s.cli(&["user", "add", "bob", "--password", "bob-pw", "--reclaim"]);
    assert!(out.status.success(), "{out:?}");
    s.restart();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let ack = alice.send("alice", "bob", &unique("c"), "after").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let first = bob.next_on("user/bob/inbox").await;
    assert_eq!(first["text"], "after", "old queue delivered: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_bring_back_a_removed_user() {
    let s = Server::start_with(&format!("[auth]\njwt_hs256_secret = \"{SECRET}\"\n"));
    let dave = unique("dave");
    assert_eq!(
        login_code(&s, &dave, &jwt(&dave)).await,
        0,
        "first JWT login"
    );
    let (status, body) = s.admin("DELETE", &format!("/admin/users/{dave}"), None);
    assert_eq!(status, 204, "remove: {body}");
    assert_eq!(
        login_code(&s, &dave, &jwt(&dave)).await,
        5,
        "JWT login of a removed user"
    );
    let (status, body) = s.admin("GET", "/admin/users", None);
    assert_eq!(status, 200);
    assert!(!body.contains(&dave), "re-created by a JWT: {body}");
    let (status, body) = add(&s, &dave, "dave-pw", Some(true));
    assert_eq!(status, 201, "reclaim: {body}");
    assert_eq!(login_code(&s, &dave, &jwt(&dave)).await, 0, "after reclaim");
}

/// A will on `chat/bob/send` to alice.
fn will_connect(client_id: &str, password: &str, text: &str) -> Connect {
    let will = json!({"cid": unique("w"), "to": "alice", "type": "text", "text": text});
    Connect::new(V::V4, client_id, "bob", password)
        .will("chat/bob/send", will.to_string().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_will_is_discarded() {
    let s = server_with(&["alice", "bob"], "");
    let mut alice = online(&s, "alice", "alice").await;
    // The control: a connection that is lost fires its will.
    let raw = Raw::login_with(s.mqtt, &will_connect("bob:lost", "bob-pw", "lost")).await;
    drop(raw);
    let will = alice.next_on("user/alice/inbox").await;
    assert_eq!(will["text"], "lost", "{will}");

    // A password change closes the session and discards the will.
    let mut raw = Raw::login_with(s.mqtt, &will_connect("bob:pw", "bob-pw", "after passwd")).await;
    assert!(raw.ping().await, "session is up");
    let (status, body) = s.admin(
        "PUT",
        "/admin/users/bob/password",
        Some(&json!({"password": "bob-pw2"}).to_string()),
    );
    assert_eq!(status, 204, "passwd: {body}");
    raw.expect_closed(WAIT, "session after a password change")
        .await;
    alice
        .nothing_on("user/alice/inbox", Duration::from_secs(2))
        .await;

    // So does a removal.
    let mut raw =
        Raw::login_with(s.mqtt, &will_connect("bob:rm", "bob-pw2", "after removal")).await;
    assert!(raw.ping().await, "session is up");
    let (status, body) = s.admin("DELETE", "/admin/users/bob", None);
    assert_eq!(status, 204, "remove: {body}");
    raw.expect_closed(WAIT, "session after a removal").await;
    alice
        .nothing_on("user/alice/inbox", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_ids_cannot_be_created() {
    let s = Server::start_with(&format!("[auth]\njwt_hs256_secret = \"{SECRET}\"\n"));
    let (status, body) = add(&s, "alice", "alice-pw", None);
    assert_eq!(status, 201, "{body}");
    for lookalike in ["ALICE", "Alice", "a1ice", "al1ce", "aLIce"] {
        let (status, body) = add(&s, lookalike, "pw-x", None);
        assert_eq!(status, 409, "{lookalike}: {body}");
        assert!(
            body.contains("too similar") && body.contains("`alice`"),
            "{lookalike}: {body}"
        );
    }
    let out = s.cli(&["user", "add", "A1ICE", "--password", "pw-x"]);
    assert!(!out.status.success(), "CLI added a look-alike");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too similar"),
        "{out:?}"
    );
    // A token cannot create one either; the login itself stays exact.
    assert_eq!(
        login_code(&s, "ALICE", &jwt("ALICE")).await,
        5,
        "JWT look-alike"
    );
    assert_eq!(
        login_code(&s, "ALICE", "alice-pw").await,
        4,
        "case-folded login"
    );
    assert_eq!(login_code(&s, "alice", "alice-pw").await, 0);
    assert_eq!(login_code(&s, "alice", &jwt("alice")).await, 0);
    // Different enough ids are fine; separators are one class.
    let (status, body) = add(&s, "alicia", "pw-x", None);
    assert_eq!(status, 201, "{body}");
    let (status, body) = add(&s, "john_doe", "pw-x", None);
    assert_eq!(status, 201, "{body}");
    let (status, body) = add(&s, "john.doe", "pw-x", None);
    assert_eq!(status, 409, "{body}");
    // A removed id keeps its look-alikes out; only the id itself can be reclaimed.
    let (status, body) = s.admin("DELETE", "/admin/users/alice", None);
    assert_eq!(status, 204, "{body}");
    let (status, body) = add(&s, "ALICE", "pw-x", Some(true));
    assert_eq!(status, 409, "look-alike of a removed id: {body}");
    let (status, body) = add(&s, "alice", "alice-pw2", Some(true));
    assert_eq!(status, 201, "reclaim: {body}");
    assert_eq!(login_code(&s, "alice", "alice-pw2").await, 0);
}
