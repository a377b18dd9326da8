//! Groups end to end: membership requests with admin checks and every refusal, events in every
//! member's inbox, fan-out to online and offline members on several devices, nothing new for a
//! removed member, history windows for late joiners and removed members, per-member receipts,
//! the member limit, group typing, and a 1024-member group.

use crate::support;

use support::online;

use std::time::Duration;

use chatd_kv::Op;
use serde_json::{json, Value};
use support::*;

/// A server with the given users (password `{user}-pw`).
fn server_with(users: &[&str], extra_toml: &str) -> Server {
    server_with_users(users, extra_toml)
}

/// A request that must succeed; returns its result.
async fn ok(c: &mut Client, me: &str, req: Value) -> Value {
    rpc_ok(c, me, req).await
}

/// A request that must be refused with `code`, the message containing `needle`.
async fn refused(c: &mut Client, me: &str, mut req: Value, code: &str, needle: &str) {
    req["rid"] = json!(unique("r"));
    let r = c.rpc(me, req.clone()).await;
    assert_eq!(r["ok"], false, "{req} -> {r}");
    assert_eq!(r["error"]["code"], code, "{req} -> {r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{req} -> {r}");
}

/// The next group event of `kind` in `me`'s inbox.
async fn event(c: &mut Client, me: &str, kind: &str) -> Value {
    let e = c
        .next_where(&format!("user/{me}/inbox"), "event", &json!(kind))
        .await;
    assert_eq!(e["type"], "event", "{e}");
    e
}

async fn group_send(c: &mut Client, me: &str, group: &str, text: &str) -> Value {
    c.send_json(
        me,
        &json!({"cid": unique("c"), "group": group, "type": "text", "text": text}),
    )
    .await
}

/// Takes whatever is buffered or arrives within a moment on `topic`, so a later
/// `nothing_on` looks only at what comes after.
async fn drain(c: &mut Client, topic: &str) {
    while c
        .next_publish_within(topic, Duration::from_millis(300))
        .await
        .is_ok()
    {}
}

/// The members of `group.info` as (user, role) pairs.
async fn members(c: &mut Client, me: &str, group: &str) -> Vec<(String, String)> {
    let info = ok(c, me, json!({"op": "group.info", "group": group})).await;
    info["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {info}"))
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect()
}

/// Ids (and event kinds or texts) of a group history page as `me` sees it.
async fn history(c: &mut Client, me: &str, group: &str) -> Vec<String> {
    let page = ok(
        c,
        me,
        json!({"op": "history", "group": group, "limit": 100}),
    )
    .await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m["type"].as_str() {
            Some("event") => format!("event:{}", m["event"].as_str().unwrap()),
            _ => m["text"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_requests_with_admin_checks_and_events() {
    let s = server_with(&["alice", "bob", "carol", "dave"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    let mut dave = online(&s, "dave", "dave").await;

    let g = create_group(&mut alice, "alice", "Team", &["bob"]).await;
    assert!(g.starts_with("g_"), "{g}");
    let e = event(&mut bob, "bob", "member_added").await;
    assert_eq!(e["group"], g.as_str(), "{e}");
    assert_eq!(e["by"], "alice", "{e}");
    assert_eq!(e["users"], json!(["bob"]), "{e}");
    assert_eq!(e["name"], "Team", "{e}");
    assert_eq!(
        members(&mut bob, "bob", &g).await,
        pairs(&[("alice", "admin"), ("bob", "member")])
    );

    // Members are not admins; strangers are not members.
    let add_carol = json!({"op": "group.add", "group": g, "users": ["carol"]});
    refused(
        &mut bob,
        "bob",
        add_carol.clone(),
        "forbidden",
        "only admins",
    )
    .await;
    refused(
        &mut bob,
        "bob",
        json!({"op": "group.rename", "group": g, "name": "x"}),
        "forbidden",
        "only admins",
    )
    .await;
    refused(
        &mut dave,
        "dave",
        json!({"op": "group.info", "group": g}),
        "forbidden",
        "not a member",
    )
    .await;
    refused(
        &mut dave,
        "dave",
        add_carol.clone(),
        "forbidden",
        "not a member",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.info", "group": "g_nope"}),
        "not_found",
        "no such group",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["carol", "zed"]}),
        "not_found",
        "zed",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.remove", "group": g, "users": ["carol"]}),
        "not_found",
        "carol",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.demote", "group": g, "users": ["alice"]}),
        "bad_request",
        "at least one admin",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g}),
        "bad_request",
        "`users` is required",
    )
    .await;
    // None of the refusals changed anything.
    assert_eq!(
        members(&mut alice, "alice", &g).await,
        pairs(&[("alice", "admin"), ("bob", "member")])
    );

    ok(&mut alice, "alice", add_carol).await;
    for (c, me) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        let e = event(c, me, "member_added").await;
        if e["users"] == json!(["carol"]) {
            continue;
        }
        // alice and bob saw the creation event first.
        let e = event(c, me, "member_added").await;
        assert_eq!(e["users"], json!(["carol"]), "{me}: {e}");
    }

    ok(
        &mut alice,
        "alice",
        json!({"op": "group.promote", "group": g, "users": ["bob"]}),
    )
    .await;
    let e = event(&mut carol, "carol", "promoted").await;
    assert_eq!(
        (e["by"].clone(), e["users"].clone()),
        (json!("alice"), json!(["bob"]))
    );
    ok(
        &mut bob,
        "bob",
        json!({"op": "group.rename", "group": g, "name": "Renamed"}),
    )
    .await;
    let e = event(&mut carol, "carol", "renamed").await;
    assert_eq!(e["name"], "Renamed", "{e}");
    ok(
        &mut bob,
        "bob",
        json!({"op": "group.demote", "group": g, "users": ["alice"]}),
    )
    .await;
    let e = event(&mut carol, "carol", "demoted").await;
    assert_eq!(e["users"], json!(["alice"]), "{e}");

    ok(
        &mut bob,
        "bob",
        json!({"op": "group.remove", "group": g, "users": ["carol"]}),
    )
    .await;
    // The removed member learns of it too.
    let e = event(&mut carol, "carol", "member_removed").await;
    assert_eq!(
        (e["by"].clone(), e["users"].clone()),
        (json!("bob"), json!(["carol"]))
    );
    refused(
        &mut carol,
        "carol",
        json!({"op": "group.info", "group": g}),
        "forbidden",
        "no longer a member",
    )
    .await;

    ok(
        &mut alice,
        "alice",
        json!({"op": "group.leave", "group": g}),
    )
    .await;
    let e = event(&mut bob, "bob", "member_left").await;
    assert_eq!(e["users"], json!(["alice"]), "{e}");
    let info = ok(&mut bob, "bob", json!({"op": "group.info", "group": g})).await;
    assert_eq!(info["name"], "Renamed", "{info}");
    assert_eq!(
        members(&mut bob, "bob", &g).await,
        pairs(&[("bob", "admin")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_admin_leaving_promotes_the_longest_standing_and_an_empty_group_closes() {
    let s = server_with(&["alice", "bob", "carol"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    // carol joins first (at creation), bob later: carol has been a member longest.
    let g = create_group(&mut alice, "alice", "G", &["carol"]).await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["bob"]}),
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.leave", "group": g}),
    )
    .await;
    let e = event(&mut bob, "bob", "promoted").await;
    assert_eq!(e["users"], json!(["carol"]), "{e}");
    assert_eq!(
        members(&mut bob, "bob", &g).await,
        pairs(&[("bob", "member"), ("carol", "admin")])
    );
    ok(&mut bob, "bob", json!({"op": "group.leave", "group": g})).await;
    ok(
        &mut carol,
        "carol",
        json!({"op": "group.leave", "group": g}),
    )
    .await;
    // Closed: nobody can use it any more.
    refused(
        &mut carol,
        "carol",
        json!({"op": "group.add", "group": g, "users": ["alice"]}),
        "not_found",
        "no such group",
    )
    .await;
    let ack = group_send(&mut carol, "carol", &g, "anyone?").await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_online_and_offline_members_on_several_devices() {
    let s = server_with(&["alice", "bob", "carol", "dave"], "");
    let mut alice_phone = online(&s, "alice:phone", "alice").await;
    let mut alice_laptop = online(&s, "alice:laptop", "alice").await;
    let mut bob_phone = online(&s, "bob:phone", "bob").await;
    let mut bob_laptop = online(&s, "bob:laptop", "bob").await;
    let mut dave = online(&s, "dave", "dave").await;
    // carol is offline throughout the sends.
    let g = create_group(&mut alice_phone, "alice", "G", &["bob", "carol"]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(group_sent_id(&mut alice_phone, "alice", &g, &format!("m{i}")).await);
    }
    for (c, who) in [
        (&mut bob_phone, "bob:phone"),
        (&mut bob_laptop, "bob:laptop"),
    ] {
        for (i, id) in ids.iter().enumerate() {
            let m = c.next_where("user/bob/inbox", "id", &json!(id)).await;
            assert_eq!(m["from"], "alice", "{who}: {m}");
            assert_eq!(m["group"], g.as_str(), "{who}: {m}");
            assert_eq!(m["text"], format!("m{i}"), "{who}: {m}");
            assert!(m.get("to").is_none(), "{who}: {m}");
        }
    }
    // The sender's other device sees what the phone sent; the phone itself does not.
    for id in &ids {
        alice_laptop
            .next_where("user/alice/inbox", "id", &json!(id))
            .await;
    }
    event(&mut alice_phone, "alice", "member_added").await;
    alice_phone
        .nothing_on("user/alice/inbox", Duration::from_millis(500))
        .await;
    // A non-member gets nothing.
    dave.nothing_on("user/dave/inbox", Duration::from_millis(300))
        .await;

    // carol comes online: the creation event and all five messages, in order.
    let mut carol = online(&s, "carol:tablet", "carol").await;
    let first = carol.next_on("user/carol/inbox").await;
    assert_eq!(first["event"], "member_added", "{first}");
    for (i, id) in ids.iter().enumerate() {
        let m = carol.next_on("user/carol/inbox").await;
        assert_eq!(m["id"], id.as_str(), "message {i} out of order: {m}");
    }

    // A send by a non-member is refused and reaches nobody.
    let ack = group_send(&mut dave, "dave", &g, "let me in").await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    carol
        .nothing_on("user/carol/inbox", Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_members_get_nothing_new_and_history_follows_membership() {
    let s = server_with(&["alice", "bob", "carol"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    let g = create_group(&mut alice, "alice", "G", &["bob"]).await;
    group_sent_id(&mut alice, "alice", &g, "before carol").await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["carol"]}),
    )
    .await;
    let both = group_sent_id(&mut alice, "alice", &g, "with carol").await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.remove", "group": g, "users": ["bob"]}),
    )
    .await;
    event(&mut bob, "bob", "member_removed").await;
    drain(&mut bob, "user/bob/inbox").await;
    let after = group_sent_id(&mut alice, "alice", &g, "after bob").await;
    carol
        .next_where("user/carol/inbox", "id", &json!(after))
        .await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(500))
        .await;

    // bob: from creation to his removal; carol: from her joining on.
    assert_eq!(
        history(&mut bob, "bob", &g).await,
        vec![
            "event:member_added",
            "before carol",
            "event:member_added",
            "with carol",
            "event:member_removed"
        ]
    );
    assert_eq!(
        history(&mut carol, "carol", &g).await,
        vec![
            "event:member_added",
            "with carol",
            "event:member_removed",
            "after bob"
        ]
    );
    // A removed member can no longer send, nor acknowledge what came after.
    let ack = group_send(&mut bob, "bob", &g, "still here?").await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [after], "status": "read"}),
    )
    .await;
    let refusal = bob
        .next_where("user/bob/ack", "receipt", &json!([after]))
        .await;
    assert_eq!(refusal["error"]["code"], "forbidden", "{refusal}");
    // What he did receive he may still acknowledge.
    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [both], "status": "read"}),
    )
    .await;
    let r = alice
        .next_where("user/alice/receipt", "id", &json!(both))
        .await;
    assert_eq!(
        (r["by"].clone(), r["status"].clone()),
        (json!("bob"), json!("read"))
    );

    // Re-added: bob sees his old window and the new one, not the gap.
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["bob"]}),
    )
    .await;
    let back = history(&mut bob, "bob", &g).await;
    assert!(!back.contains(&"after bob".to_string()), "{back:?}");
    assert_eq!(back.last().map(String::as_str), Some("event:member_added"));
    assert_eq!(back.len(), 6, "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_member_receipts_reach_the_sender_and_show_in_history_and_info() {
    let s = server_with(&["alice", "bob", "carol", "dave"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    let mut dave = online(&s, "dave", "dave").await;
    let g = create_group(&mut alice, "alice", "G", &["bob", "carol"]).await;
    let id = group_sent_id(&mut alice, "alice", &g, "hello all").await;
    let id2 = group_sent_id(&mut alice, "alice", &g, "second").await;
    bob.next_where("user/bob/inbox", "id", &json!(id2)).await;

    let conv = ok(&mut carol, "carol", json!({"op": "conversations"})).await;
    let entry = conv["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["group"] == g.as_str())
        .unwrap_or_else(|| panic!("no group conversation: {conv}"))
        .clone();
    assert_eq!(entry["unread"], 2, "{entry}");
    assert_eq!(entry["name"], "G", "{entry}");
    assert_eq!(entry["last"]["id"], id2.as_str(), "{entry}");

    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [id], "status": "delivered"}),
    )
    .await;
    carol
        .publish_json(
            "chat/carol/receipt",
            &json!({"ids": [id], "status": "read"}),
        )
        .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = alice.next_on("user/alice/receipt").await;
        assert_eq!(r["id"], id.as_str(), "{r}");
        got.push((
            r["by"].as_str().unwrap().to_string(),
            r["status"].as_str().unwrap().to_string(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("bob".to_string(), "delivered".to_string()),
            ("carol".to_string(), "read".to_string())
        ]
    );

    // Refused: the author's own message, a non-member, an event.
    alice
        .publish_json(
            "chat/alice/receipt",
            &json!({"ids": [id], "status": "read"}),
        )
        .await;
    let r = alice
        .next_where("user/alice/ack", "receipt", &json!([id]))
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    dave.publish_json("chat/dave/receipt", &json!({"ids": [id], "status": "read"}))
        .await;
    let r = dave
        .next_where("user/dave/ack", "receipt", &json!([id]))
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");

    let page = ok(&mut alice, "alice", json!({"op": "history", "group": g})).await;
    let m = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        m["receipts"],
        json!({"members": 2, "delivered": 2, "read": 1,
               "delivered_by": ["bob", "carol"], "read_by": ["carol"]}),
        "{m}"
    );
    assert_eq!(m["status"], "delivered", "{m}");
    let info = ok(
        &mut alice,
        "alice",
        json!({"op": "group.info", "group": g, "message": id}),
    )
    .await;
    assert_eq!(info["message"], id.as_str(), "{info}");
    assert_eq!(info["receipts"], m["receipts"], "{info}");
    assert_eq!(info["status"], "delivered", "{info}");

    // Reading the second message clears carol's unread count.
    carol
        .publish_json(
            "chat/carol/receipt",
            &json!({"ids": [id2], "status": "read"}),
        )
        .await;
    alice
        .next_where("user/alice/receipt", "id", &json!(id2))
        .await;
    let conv = ok(&mut carol, "carol", json!({"op": "conversations"})).await;
    let entry = conv["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["group"] == g.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["unread"], 0, "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_limit_refuses_and_changes_nothing() {
    let s = server_with(
        &["alice", "bob", "carol", "dave", "erin"],
        "[limits]\nmax_group_members = 3\n",
    );
    let mut alice = online(&s, "alice", "alice").await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "big", "members": ["bob", "carol", "dave"]}),
        "too_large",
        "at most 3",
    )
    .await;
    let g = create_group(&mut alice, "alice", "small", &["bob", "carol"]).await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["dave"]}),
        "too_large",
        "at most 3",
    )
    .await;
    assert_eq!(members(&mut alice, "alice", &g).await.len(), 3);
    // Making room makes it possible.
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.remove", "group": g, "users": ["carol"]}),
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["dave"]}),
    )
    .await;
    assert_eq!(
        members(&mut alice, "alice", &g).await,
        pairs(&[("alice", "admin"), ("bob", "member"), ("dave", "member")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_typing_goes_to_the_other_members_only() {
    let s = server_with(&["alice", "bob", "carol", "dave"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    let mut dave = online(&s, "dave", "dave").await;
    let g = create_group(&mut alice, "alice", "G", &["bob", "carol"]).await;
    alice
        .publish_json("chat/alice/typing", &json!({"group": g}))
        .await;
    for (c, me) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let t = c.next_on(&format!("user/{me}/typing")).await;
        assert_eq!(t, json!({"from": "alice", "group": g}), "{me}");
    }
    alice
        .nothing_on("user/alice/typing", Duration::from_millis(300))
        .await;
    dave.publish_json("chat/dave/typing", &json!({"group": g}))
        .await;
    let r = dave.next_on("user/dave/ack").await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    bob.nothing_on("user/bob/typing", Duration::from_millis(300))
        .await;
}

/// Writes accounts straight into a stopped server's store: hashing 1024 passwords through the
/// admin API would take a minute, and these members never log in.
fn seed_accounts(s: &mut Server, users: &[String]) {
    s.stop();
    let store = s.open_store();
    let ops = users
        .iter()
        .map(|u| {
            Op::Put(
                format!("u/{u}").into_bytes(),
                br#"{"hash":"$argon2id$not-a-login","created":0}"#.to_vec(),
            )
        })
        .collect();
    store.apply(ops).expect("write accounts");
    store.flush().expect("flush accounts");
    drop(store);
    s.restart();
}

/// Connects a seeded user, who cannot log in with a password until given one.
async fn seeded_online(s: &Server, user: &str) -> Client {
    let (status, body) = s.admin(
        "PUT",
        &format!("/admin/users/{user}/password"),
        Some(&json!({"password": format!("{user}-pw")}).to_string()),
    );
    assert!(status < 300, "set password of {user}: {status} {body}");
    online(s, user, user).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_1024_members() {
    let mut s = server_with(&["alice", "bob"], "");
    let others: Vec<String> = (0..1022).map(|i| format!("m{i:04}")).collect();
    seed_accounts(&mut s, &others);
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    // Created with some members, the rest added in chunks (a request is at most 24 KiB).
    let mut first: Vec<&str> = vec!["bob"];
    first.extend(others[..500].iter().map(String::as_str));
    let g = create_group(&mut alice, "alice", "everyone", &first).await;
    for chunk in others[500..].chunks(300) {
        ok(
            &mut alice,
            "alice",
            json!({"op": "group.add", "group": g, "users": chunk}),
        )
        .await;
    }
    assert_eq!(members(&mut bob, "bob", &g).await.len(), 1024);
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["m9999"]}),
        "too_large",
        "at most 1024",
    )
    .await;

    let id = group_sent_id(&mut alice, "alice", &g, "hello 1024").await;
    bob.next_where("user/bob/inbox", "id", &json!(id)).await;
    // An offline member, chosen from the last chunk, gets it from their queue.
    let late = &others[1021];
    let mut member = seeded_online(&s, late).await;
    let m = member
        .next_where(&format!("user/{late}/inbox"), "id", &json!(id))
        .await;
    assert_eq!(m["text"], "hello 1024", "{m}");
    let page = ok(
        &mut alice,
        "alice",
        json!({"op": "history", "group": g, "limit": 1}),
    )
    .await;
    assert_eq!(page["messages"][0]["receipts"]["members"], 1023, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_queued_group_messages_survive_restarts_and_kill9() {
    let mut s = server_with(&["alice", "bob", "carol"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let g = create_group(&mut alice, "alice", "durable", &["bob", "carol"]).await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.promote", "group": g, "users": ["bob"]}),
    )
    .await;
    let first = group_sent_id(&mut alice, "alice", &g, "before restart").await;
    drop(alice);
    s.stop();
    s.restart();
    let mut alice = online(&s, "alice", "alice").await;
    let second = group_sent_id(&mut alice, "alice", &g, "before kill").await;
    drop(alice);
    s.kill9();
    s.restart();

    // bob and carol were offline throughout: everything acked is queued for them, in order.
    for me in ["bob", "carol"] {
        let mut c = online(&s, me, me).await;
        let inbox = format!("user/{me}/inbox");
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let m = c.next_on(&inbox).await;
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{me}: {seen:?}");
        assert_eq!(
            &seen[2..],
            [first.clone(), second.clone()],
            "{me}: {seen:?}"
        );
        assert_eq!(
            members(&mut c, me, &g).await,
            pairs(&[("alice", "admin"), ("bob", "admin"), ("carol", "member")])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fans_out_in_slices_in_order_and_resumes_after_kill9() {
    // One recipient per batch: every group message takes hundreds of batches to reach all.
    let mut s = server_with(
        &["alice", "bob", "dave", "zed"],
        "[limits]\nfanout_slice = 1\n",
    );
    let others: Vec<String> = (0..300).map(|i| format!("m{i:04}")).collect();
    seed_accounts(&mut s, &others);
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut dave = online(&s, "dave", "dave").await;
    let mut members: Vec<&str> = vec!["bob", "zed"];
    members.extend(others.iter().map(String::as_str));
    let g = create_group(&mut alice, "alice", "sliced", &members).await;

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(group_sent_id(&mut alice, "alice", &g, &format!("g{i}")).await);
    }
    // A 1:1 message sent behind three unfinished fan-outs is not held up by them.
    let ack = alice.send("alice", "dave", "d1", "direct").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let m = dave.next_on("user/dave/inbox").await;
    assert_eq!(m["text"], "direct", "{m}");
    // bob, online, is in the first slices: the event, then the messages in order.
    assert_eq!(
        event(&mut bob, "bob", "member_added").await["group"],
        g.as_str()
    );
    for (i, id) in ids.iter().enumerate() {
        let m = bob.next_on("user/bob/inbox").await;
        assert_eq!(m["id"], id.as_str(), "message {i} out of order: {m}");
    }
    // zed, offline and last in line, cannot have everything yet: kill the server mid-way.
    drop(alice);
    s.kill9();
    s.restart();

    let mut zed = online(&s, "zed", "zed").await;
    let first = zed.next_on("user/zed/inbox").await;
    assert_eq!(first["event"], "member_added", "{first}");
    for (i, id) in ids.iter().enumerate() {
        let m = zed.next_on("user/zed/inbox").await;
        assert_eq!(m["id"], id.as_str(), "message {i} out of order: {m}");
        assert_eq!(m["text"], format!("g{i}"), "{m}");
    }
    zed.nothing_on("user/zed/inbox", Duration::from_millis(500))
        .await;
    // A member who was offline throughout gets everything once too.
    let late = &others[299];
    let mut member = seeded_online(&s, late).await;
    let inbox = format!("user/{late}/inbox");
    assert_eq!(member.next_on(&inbox).await["event"], "member_added");
    for id in &ids {
        assert_eq!(member.next_on(&inbox).await["id"], id.as_str());
    }
    member.nothing_on(&inbox, Duration::from_millis(500)).await;
    drop(bob);
}
