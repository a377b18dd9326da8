//! Hostile group use end to end (issue 12, item 7): one user putting a victim into thousands of
//! groups. `conversations` comes in pages (limit, `before`, `more` / `next`) whose replies stay
//! within the packet size limit, a user can be in at most `limits.max_groups_per_user` groups
//! (also after a restart, and counting memberships stored before the per-user index existed), and
//! `limits.groups_created_per_hour` bounds creations per user.

use crate::support;

use std::collections::HashSet;

use serde_json::{json, Value};
use support::*;

/// A server with the given users (password `{user}-pw`) and `limits` lines.
fn server_with(users: &[&str], limits: &str) -> Server {
    let s = Server::start_with(&format!("[limits]\n{limits}\n"));
    for u in users {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

/// A request's raw reply: its size in bytes and its JSON.
async fn rpc_raw(c: &mut Client, me: &str, mut req: Value) -> (usize, Value) {
    let rid = unique("r");
    req["rid"] = json!(rid);
    c.publish_json(&format!("chat/{me}/rpc"), &req).await;
    let p = c.next_publish(&format!("user/{me}/rpc")).await;
    let v: Value = serde_json::from_slice(&p.payload).expect("reply is JSON");
    assert_eq!(v["rid"], json!(rid), "replies come in order: {v}");
    (p.payload.len(), v)
}

/// A request that must succeed; returns its result.
async fn ok(c: &mut Client, me: &str, req: Value) -> Value {
    let (_, r) = rpc_raw(c, me, req.clone()).await;
    assert_eq!(r["ok"], true, "{req} -> {r}");
    r["result"].clone()
}

/// A request that must be refused with `code`, the message containing every `needles`.
async fn refused(c: &mut Client, me: &str, req: Value, code: &str, needles: &[&str]) {
    let (_, r) = rpc_raw(c, me, req.clone()).await;
    assert_eq!(r["ok"], false, "{req} -> {r}");
    assert_eq!(r["error"]["code"], code, "{req} -> {r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(message.contains(needle), "{req} -> {r}");
    }
}

async fn create(c: &mut Client, me: &str, members: &[&str]) -> String {
    let r = ok(
        c,
        me,
        json!({"op": "group.create", "name": unique("g"), "members": members}),
    )
    .await;
    r["group"].as_str().expect("group id").to_string()
}

/// Every conversation of `me`, page by page with `limit` (none: the server's default), checking
/// each page's order, size and cursor; returns the pages' lengths and the conversations.
async fn all_pages(
    c: &mut Client,
    me: &str,
    limit: Option<u64>,
    max_reply: usize,
) -> (Vec<usize>, Vec<Value>) {
    let mut sizes = Vec::new();
    let mut all: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = json!({"op": "conversations"});
        if let Some(limit) = limit {
            req["limit"] = json!(limit);
        }
        if let Some(b) = &before {
            req["before"] = json!(b);
        }
        let (bytes, r) = rpc_raw(c, me, req.clone()).await;
        assert_eq!(r["ok"], true, "{req} -> {r}");
        assert!(bytes <= max_reply, "{req}: a reply of {bytes} bytes");
        let page = r["result"]["conversations"]
            .as_array()
            .expect("list")
            .clone();
        assert!(!page.is_empty(), "{req}: empty page");
        for entry in &page {
            let id = entry["last"]["id"].as_str().expect("last id");
            if let Some(prev) = all.last() {
                let prev = prev["last"]["id"].as_str().unwrap_or_default();
                assert!(id < prev, "newest first across pages: {id} after {prev}");
            }
            all.push(entry.clone());
        }
        sizes.push(page.len());
        if r["result"]["more"] == false {
            assert!(r["result"].get("next").is_none(), "{r}");
            break;
        }
        assert_eq!(r["result"]["more"], true, "{r}");
        let next = r["result"]["next"].as_str().expect("next with more");
        assert_eq!(next, page.last().unwrap()["last"]["id"], "{r}");
        before = Some(next.to_string());
        assert!(sizes.len() < 100, "paging does not end");
    }
    (sizes, all)
}

fn names(list: &[Value]) -> HashSet<String> {
    list.iter()
        .map(|c| {
            c["group"]
                .as_str()
                .or_else(|| c["with"].as_str())
                .expect("group or with")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_come_in_pages_newest_first() {
    let s = server_with(&["alice", "bob", "vic"], "groups_created_per_hour = 0");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut vic = online(&s, "vic", "vic").await;

    let mut groups = HashSet::new();
    for _ in 0..120 {
        groups.insert(create(&mut alice, "alice", &["vic"]).await);
    }
    let ack = bob.send("bob", "vic", &unique("c"), "hi vic").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let mut expected = groups.clone();
    expected.insert("bob".to_string());

    // A client that sends no limit (as before paging) gets the newest 50 and `more`.
    let (sizes, list) = all_pages(&mut vic, "vic", None, 1024 * 1024).await;
    assert_eq!(sizes, vec![50, 50, 21]);
    assert_eq!(
        list[0]["with"], "bob",
        "the newest conversation comes first"
    );
    assert_eq!(list.len(), expected.len());
    assert_eq!(names(&list), expected);

    // The largest page holds all of them.
    let (sizes, list) = all_pages(&mut vic, "vic", Some(200), 1024 * 1024).await;
    assert_eq!(sizes, vec![121]);
    assert_eq!(names(&list), expected);
    let (sizes, _) = all_pages(&mut vic, "vic", Some(7), 1024 * 1024).await;
    assert_eq!(sizes.len(), 18, "{sizes:?}");

    // A conversation with a new message moves to the first page.
    let last_group = list.last().unwrap()["group"].as_str().unwrap().to_string();
    let ack = alice
        .send_json(
            "alice",
            &json!({"cid": unique("c"), "group": last_group, "type": "text", "text": "up"}),
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let first = ok(&mut vic, "vic", json!({"op": "conversations", "limit": 1})).await;
    assert_eq!(
        first["conversations"][0]["group"],
        json!(last_group),
        "{first}"
    );
    assert_eq!(first["conversations"][0]["last"]["text"], "up", "{first}");

    for (req, needle) in [
        (
            json!({"op": "conversations", "limit": 201}),
            "from 1 to 200",
        ),
        (json!({"op": "conversations", "limit": 0}), "from 1 to 200"),
        (
            json!({"op": "conversations", "before": "soon"}),
            "not a message id",
        ),
    ] {
        refused(&mut vic, "vic", req, "bad_request", &[needle]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_never_outgrows_the_packet_limit() {
    let s = server_with(
        &["alice", "vic"],
        "groups_created_per_hour = 0\nmax_packet_size = 65536\nmax_text_bytes = 16000",
    );
    let mut alice = online(&s, "alice", "alice").await;
    let mut vic = online(&s, "vic", "vic").await;
    let mut groups = HashSet::new();
    for i in 0..12 {
        let g = create(&mut alice, "alice", &["vic"]).await;
        let text = format!("{i:02}{}", "x".repeat(15_000));
        let ack = alice
            .send_json(
                "alice",
                &json!({"cid": unique("c"), "group": g, "type": "text", "text": text}),
            )
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        groups.insert(g);
    }
    // 12 conversations of 15 KB: about 180 KB in all, far over the 64 KiB limit. Pages stop
    // at half the limit, however many conversations were asked for.
    for limit in [None, Some(200)] {
        let (sizes, list) = all_pages(&mut vic, "vic", limit, 32 * 1024).await;
        assert!(sizes.len() >= 6, "{sizes:?}");
        assert_eq!(names(&list), groups);
        assert!(list.iter().all(|c| c.get("trimmed").is_none()));
        let texts: Vec<&str> = list
            .iter()
            .map(|c| &c["last"]["text"].as_str().unwrap()[..2])
            .collect();
        assert_eq!(
            texts,
            ["11", "10", "09", "08", "07", "06", "05", "04", "03", "02", "01", "00"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_too_big_for_a_reply_is_shortened() {
    // Budget: half of 4096 bytes; a 3000-byte text alone does not fit.
    let s = server_with(
        &["alice", "vic"],
        "max_packet_size = 4096\nmax_text_bytes = 3000",
    );
    let mut alice = online(&s, "alice", "alice").await;
    let mut vic = online(&s, "vic", "vic").await;
    let ack = alice.send("alice", "vic", &unique("c"), "short").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let g = create(&mut alice, "alice", &["vic"]).await;
    let ack = alice
        .send_json(
            "alice",
            &json!({"cid": unique("c"), "group": g, "type": "text", "text": "y".repeat(3000)}),
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");

    let (sizes, list) = all_pages(&mut vic, "vic", None, 2048).await;
    assert_eq!(sizes, vec![2]);
    assert_eq!(list[0]["group"], json!(g));
    assert_eq!(list[0]["trimmed"], true, "{}", list[0]);
    assert!(list[0]["last"].get("text").is_none(), "{}", list[0]);
    assert_eq!(list[0]["last"]["receipts"]["members"], 1, "{}", list[0]);
    assert_eq!(list[1]["with"], "alice");
    assert_eq!(list[1]["last"]["text"], "short");
    assert!(list[1].get("trimmed").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_belongs_to_at_most_max_groups_per_user() {
    let users = ["alice", "carol", "dave", "erin", "bob"];
    let mut s = server_with(
        &users,
        "max_groups_per_user = 3\ngroups_created_per_hour = 0",
    );
    let mut alice = online(&s, "alice", "alice").await;
    let mut carol = online(&s, "carol", "carol").await;
    let mut dave = online(&s, "dave", "dave").await;
    let mut erin = online(&s, "erin", "erin").await;
    let mut bob = online(&s, "bob", "bob").await;

    let g1 = create(&mut alice, "alice", &["bob"]).await;
    create(&mut carol, "carol", &["bob"]).await;
    create(&mut dave, "dave", &["bob"]).await;

    // A fourth group with bob is refused as a whole: nothing is created.
    refused(
        &mut erin,
        "erin",
        json!({"op": "group.create", "name": "x", "members": ["alice", "bob"]}),
        "too_large",
        &["bob is already in 3 groups"],
    )
    .await;
    let list = ok(&mut erin, "erin", json!({"op": "conversations"})).await;
    assert_eq!(list["conversations"], json!([]), "{list}");
    let g4 = create(&mut erin, "erin", &[]).await;
    refused(
        &mut erin,
        "erin",
        json!({"op": "group.add", "group": g4, "users": ["bob", "alice"]}),
        "too_large",
        &["bob is already in 3 groups"],
    )
    .await;
    let info = ok(&mut erin, "erin", json!({"op": "group.info", "group": g4})).await;
    assert_eq!(info["members"].as_array().map(Vec::len), Some(1), "{info}");
    // Bob himself cannot create one either.
    refused(
        &mut bob,
        "bob",
        json!({"op": "group.create", "name": "mine", "members": []}),
        "too_large",
        &["you are already in 3 groups"],
    )
    .await;

    // Leaving makes room.
    ok(&mut bob, "bob", json!({"op": "group.leave", "group": g1})).await;
    ok(
        &mut erin,
        "erin",
        json!({"op": "group.add", "group": g4, "users": ["bob"]}),
    )
    .await;

    // The count is kept in the store: after a restart bob is still full...
    for c in [alice, carol, dave, bob] {
        c.disconnect().await;
    }
    erin.disconnect().await;
    s.stop();
    s.restart();
    let mut alice = online(&s, "alice", "alice").await;
    let mut erin = online(&s, "erin", "erin").await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g1, "users": ["bob"]}),
        "too_large",
        &["bob is already in 3 groups"],
    )
    .await;
    // ...until he is removed from one.
    ok(
        &mut erin,
        "erin",
        json!({"op": "group.remove", "group": g4, "users": ["bob"]}),
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g1, "users": ["bob"]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_creation_is_rate_limited_per_user() {
    let s = server_with(&["alice", "bob", "carol"], "groups_created_per_hour = 3");
    let mut alice = online(&s, "alice", "alice").await;
    let mut carol = online(&s, "carol", "carol").await;

    create(&mut alice, "alice", &["bob"]).await;
    create(&mut alice, "alice", &["bob"]).await;
    // A creation that is refused for another reason does not count.
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "x", "members": ["nobody"]}),
        "not_found",
        &["nobody"],
    )
    .await;
    create(&mut alice, "alice", &["bob"]).await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "x", "members": ["bob"]}),
        "rate_limited",
        &["at most 3 groups per hour", "retry in"],
    )
    .await;
    let list = ok(&mut alice, "alice", json!({"op": "conversations"})).await;
    assert_eq!(
        list["conversations"].as_array().map(Vec::len),
        Some(3),
        "{list}"
    );
    // Other users have their own budget, and other group requests are not limited.
    let g = create(&mut carol, "carol", &[]).await;
    ok(
        &mut carol,
        "carol",
        json!({"op": "group.add", "group": g, "users": ["alice"]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_from_before_the_index_count_after_an_upgrade() {
    use chatd_kv::Op;

    let mut s = server_with(&["alice", "bob"], "max_groups_per_user = 2");
    let mut alice = online(&s, "alice", "alice").await;
    let g1 = create(&mut alice, "alice", &["bob"]).await;
    let g2 = create(&mut alice, "alice", &[]).await;
    alice.disconnect().await;

    // Make the store look like one written before the per-user index existed.
    s.stop();
    let store = s.open_store();
    let index: Vec<Vec<u8>> = store
        .scan(b"i/", b"i0", false, usize::MAX)
        .expect("scan the index")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(index.len(), 3, "alice in 2 groups, bob in 1");
    let mut ops: Vec<Op> = index.into_iter().map(Op::Delete).collect();
    ops.push(Op::Delete(b"x/membership_index".to_vec()));
    store.apply(ops).expect("drop the index");
    store.flush().expect("flush");
    drop(store);
    s.restart();

    // The index is rebuilt at start-up: alice is in 2 groups, bob in 1.
    let mut alice = online(&s, "alice", "alice").await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "third", "members": []}),
        "too_large",
        &["you are already in 2 groups"],
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.add", "group": g2, "users": ["bob"]}),
    )
    .await;
    ok(
        &mut alice,
        "alice",
        json!({"op": "group.leave", "group": g1}),
    )
    .await;
    refused(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "third", "members": ["bob"]}),
        "too_large",
        &["bob is already in 2 groups"],
    )
    .await;
}
