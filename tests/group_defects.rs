//! Defects of issue 13, end to end: a message acknowledged to a member alone in a group is
//! readable at once; a member removed and added back keeps their unread messages; a group
//! message wakes an offline member's device; `group.info` with `message` answers `receipts` and
//! `status` like a history entry; user lists are judged on rights and existence first, then on
//! their size without repeats.

use crate::support;

use crate::fake;

use crate::support::push_kit;

use std::time::{Duration, Instant};

use fake::{FakeApns, FakeFcm};
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

/// A request that must be refused with `code`.
async fn refused(c: &mut Client, me: &str, mut req: Value, code: &str) {
    req["rid"] = json!(unique("r"));
    let r = c.rpc(me, req.clone()).await;
    assert_eq!(r["ok"], false, "{req} -> {r}");
    assert_eq!(r["error"]["code"], code, "{req} -> {r}");
}

async fn create(c: &mut Client, me: &str, members: &[&str]) -> String {
    let r = ok(
        c,
        me,
        json!({"op": "group.create", "name": "G", "members": members}),
    )
    .await;
    r["group"].as_str().expect("group id").to_string()
}

/// Ids of `me`'s group history (newest 100).
async fn history_ids(c: &mut Client, me: &str, group: &str) -> Vec<String> {
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
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// The unread count of `group` in `me`'s conversation list.
async fn unread(c: &mut Client, me: &str, group: &str) -> Value {
    let conv = ok(c, me, json!({"op": "conversations"})).await;
    conv["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["group"] == group)
        .unwrap_or_else(|| panic!("no entry for {group}: {conv}"))["unread"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_group_of_one_is_readable_once_acknowledged() {
    let s = server_with(&["alice"], "");
    let mut phone = online(&s, "alice:phone", "alice").await;
    let mut laptop = online(&s, "alice:laptop", "alice").await;
    let g = create(&mut phone, "alice", &[]).await;
    let id = group_sent_id(&mut phone, "alice", &g, "note to self").await;
    let copy = laptop
        .next_where("user/alice/inbox", "id", &json!(id))
        .await;
    assert_eq!(copy["text"], "note to self", "{copy}");

    // Nothing else is stored meanwhile: the ack alone must make the message readable.
    let ids = history_ids(&mut laptop, "alice", &g).await;
    assert_eq!(ids.len(), 2, "creation event and the message: {ids:?}");
    assert_eq!(ids[1], id, "{ids:?}");
    let info = ok(
        &mut laptop,
        "alice",
        json!({"op": "group.info", "group": g, "message": id}),
    )
    .await;
    assert_eq!(info["message"], id.as_str(), "{info}");
    assert_eq!(info["status"], "sent", "{info}");
    assert_eq!(info["receipts"]["members"], 0, "{info}");
    let conv = ok(&mut laptop, "alice", json!({"op": "conversations"})).await;
    assert_eq!(
        conv["conversations"][0]["last"]["id"],
        id.as_str(),
        "{conv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_back_keeps_what_they_had_not_read() {
    let s = server_with(&["alice", "bob"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let g = create(&mut alice, "alice", &["bob"]).await;
    let first = group_sent_id(&mut alice, "alice", &g, "first").await;
    assert_eq!(unread(&mut bob, "bob", &g).await, 1);

    ok(
        &mut alice,
        "alice",
        json!({"op": "group.remove", "group": g, "users": ["bob"]}),
    )
    .await;
    group_sent_id(&mut alice, "alice", &g, "while bob is away").await;
    assert_eq!(unread(&mut bob, "bob", &g).await, 1);
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["bob"]}),
    )
    .await;
    // No read receipt from bob: the first message is still unread, the gap is not his.
    assert_eq!(unread(&mut bob, "bob", &g).await, 1);
    assert!(history_ids(&mut bob, "bob", &g).await.contains(&first));

    let second = group_sent_id(&mut alice, "alice", &g, "welcome back").await;
    assert_eq!(unread(&mut bob, "bob", &g).await, 2);
    bob.next_where("user/bob/inbox", "id", &json!(second)).await;
    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [second], "status": "read"}),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while unread(&mut bob, "bob", &g).await != 0 {
        assert!(Instant::now() < deadline, "read receipt not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_info_for_a_message_gives_receipts_and_status_like_history() {
    let s = server_with(&["alice", "bob", "carol"], "");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let g = create(&mut alice, "alice", &["bob", "carol"]).await;
    let id = group_sent_id(&mut alice, "alice", &g, "hi").await;
    bob.next_where("user/bob/inbox", "id", &json!(id)).await;
    bob.publish_json("chat/bob/receipt", &json!({"ids": [id], "status": "read"}))
        .await;
    alice
        .next_where("user/alice/receipt", "by", &json!("bob"))
        .await;

    let info = ok(
        &mut alice,
        "alice",
        json!({"op": "group.info", "group": g, "message": id}),
    )
    .await;
    let page = ok(
        &mut alice,
        "alice",
        json!({"op": "history", "group": g, "after": info["members"][0]["since"]}),
    )
    .await;
    let entry = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {page}"))
        .clone();
    assert_eq!(info["message"], id.as_str(), "{info}");
    assert_eq!(info["receipts"], entry["receipts"], "{info} vs {entry}");
    assert_eq!(info["status"], entry["status"], "{info} vs {entry}");
    assert_eq!(
        info["receipts"],
        json!({"members": 2, "delivered": 1, "read": 1,
               "delivered_by": ["bob"], "read_by": ["bob"]}),
        "{info}"
    );
    assert_eq!(info["status"], "sent", "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lists_are_judged_without_repeats_after_rights_and_existence() {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let s = server_with(&users, "[limits]\nmax_group_members = 5\n");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let g = create(&mut alice, "alice", &["carol"; 9]).await;
    let six_bobs = json!(vec!["bob"; 6]);
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": six_bobs}),
    )
    .await;
    let members = ok(&mut alice, "alice", json!({"op": "group.info", "group": g})).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");

    // The same long list: a missing group is `not_found`, a non-admin `forbidden`.
    let six_daves = json!(vec!["dave"; 6]);
    for op in ["group.add", "group.remove", "group.promote", "group.demote"] {
        refused(
            &mut alice,
            "alice",
            json!({"op": op, "group": "g_missing", "users": six_daves}),
            "not_found",
        )
        .await;
        refused(
            &mut bob,
            "bob",
            json!({"op": op, "group": g, "users": six_daves}),
            "forbidden",
        )
        .await;
    }
    // Repeats are not members: six times dave makes four members.
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": six_daves}),
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.promote", "group": g, "users": ["bob", "bob", "bob", "bob", "bob", "dave"]}),
    )
    .await;
    // Distinct users over the limit are still refused, after the checks above.
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["erin", "frank", "erin"]}),
        "too_large",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.remove", "group": g,
               "users": ["bob", "carol", "dave", "erin", "frank", "zed"]}),
        "too_large",
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "Big",
               "members": ["bob", "carol", "dave", "erin", "frank"]}),
        "too_large",
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g, "users": ["erin", "erin", "erin"]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_wakes_an_offline_member() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = push_kit::start(&fcm, &apns, "collapse_window_ms = 300");
    let mut bob = online(&s, "bob:android", "bob").await;
    let rid = unique("r");
    let reply = bob
        .rpc(
            "bob",
            json!({"rid": rid, "op": "push.register", "platform": "fcm", "token": "fcm-bob"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    bob.disconnect().await;
    push_kit::wait_offline(&s, "bob");

    let mut alice = online(&s, "alice", "alice").await;
    let mut carol = online(&s, "carol", "carol").await;
    let g = create(&mut alice, "alice", &["bob", "carol"]).await;
    let id = group_sent_id(&mut alice, "alice", &g, "lunch?").await;
    carol.next_where("user/carol/inbox", "id", &json!(id)).await;

    let pushes = fcm.wait_pushes(1).await;
    assert_eq!(pushes[0].token, "fcm-bob");
    let m = &pushes[0].body["message"];
    assert_eq!(m["data"]["conversation"], format!("g:{g}"), "{m}");
    assert_eq!(m["data"]["group"], g.as_str(), "{m}");
    assert_eq!(m["data"]["from"], "alice", "{m}");
    assert_eq!(m["data"]["id"], id.as_str(), "{m}");
    assert_eq!(m["notification"]["title"], format!("alice in {g}"), "{m}");
    // Carol was online: she gets no push; nor does the creation event wake bob.
    fcm.no_more_than(1, Duration::from_millis(1000)).await;
    fcm.assert_clean();
}
