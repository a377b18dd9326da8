//! Delivery and read receipts: `Chat::receipt`, forwarding to the author through the queue,
//! refusals, history status, unread counts and durability.

mod common;

use chatd_core::messaging::ChatConfig;
use chatd_core::outbox::Outgoing;
use chatd_kv::KvStore;
use common::{parse, start, wait_until, Env};
use serde_json::{json, Value};

/// Sends a receipt and parses the refusal, if any.
async fn receipt(env: &Env, me: &str, ids: &[&str], status: &str) -> Option<Value> {
    let payload = json!({"ids": ids, "status": status}).to_string();
    raw_receipt(env, me, &payload).await
}

async fn raw_receipt(env: &Env, me: &str, payload: &str) -> Option<Value> {
    env.chat
        .receipt(me, payload.as_bytes())
        .await
        .map(|b| parse(&b))
}

/// The receipt deliveries recorded so far.
fn receipts_of(env: &Env, user: &str) -> Vec<Outgoing> {
    env.rec
        .items()
        .into_iter()
        .filter(|o| o.channel.topic(&o.user) == format!("user/{user}/receipt"))
        .collect()
}

/// Waits for `n` receipt deliveries to `user` and returns them parsed.
fn forwarded(env: &Env, user: &str, n: usize) -> Vec<Value> {
    wait_until(|| receipts_of(env, user).len() >= n);
    receipts_of(env, user)
        .iter()
        .map(|o| parse(&o.payload))
        .collect()
}

fn refused_ids(v: &Value) -> Vec<String> {
    v["receipt"]
        .as_array()
        .unwrap_or_else(|| panic!("no receipt list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn delivered_then_read_is_forwarded_in_order() {
    let env = Env::new(&["alice", "bob"]);
    let id = env.text("alice", "bob", "c0", "hi").await;
    assert_eq!(receipt(&env, "bob", &[&id], "delivered").await, None);
    assert_eq!(receipt(&env, "bob", &[&id], "read").await, None);
    let got = forwarded(&env, "alice", 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], id.as_str());
    assert_eq!(got[0]["by"], "bob");
    assert_eq!(got[0]["status"], "delivered");
    assert_eq!(got[1]["status"], "read");
    assert!(got[0]["ts"].as_u64().unwrap_or(0) > 0);
    assert!(got[1]["ts"].as_u64() >= got[0]["ts"].as_u64());
    let obj = got[1].as_object().expect("object");
    assert_eq!(obj.len(), 4, "{obj:?}");
    // Items are queued for the author, with increasing queue ids after the message id.
    let items = receipts_of(&env, "alice");
    assert!(items.iter().all(|o| o.user == "alice"));
    let q0 = items[0].queue_id.clone().expect("qid");
    let q1 = items[1].queue_id.clone().expect("qid");
    assert!(id < q0 && q0 < q1, "{id} {q0} {q1}");
    let queued = env.chat.backlog("alice", None, 10).expect("backlog");
    assert!(queued
        .iter()
        .any(|o| o.queue_id.as_deref() == Some(q0.as_str())));
    assert!(env.store.has(format!("s/{id}/bob").as_bytes()));
    let stats = env.chat.stats();
    assert_eq!(stats.receipts_stored, 2);
    assert_eq!(stats.receipts_refused, 0);
    assert_eq!(stats.messages_stored, 1);
}

#[tokio::test]
async fn late_delivered_and_duplicates_are_not_forwarded() {
    let env = Env::new(&["alice", "bob"]);
    let a = env.text("alice", "bob", "c0", "one").await;
    let b = env.text("alice", "bob", "c1", "two").await;
    assert_eq!(receipt(&env, "bob", &[&a], "read").await, None);
    // Late delivered after read: accepted, nothing changes, nothing forwarded.
    assert_eq!(receipt(&env, "bob", &[&a], "delivered").await, None);
    // Duplicate read: same.
    assert_eq!(receipt(&env, "bob", &[&a], "read").await, None);
    // Duplicate delivered for b; and the same id twice in one publish counts once.
    assert_eq!(receipt(&env, "bob", &[&b, &b], "delivered").await, None);
    assert_eq!(receipt(&env, "bob", &[&b], "delivered").await, None);
    // A marker: once this arrives, every earlier one would have too.
    assert_eq!(receipt(&env, "bob", &[&b], "read").await, None);
    let got = forwarded(&env, "alice", 3);
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_string(),
                v["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (a.clone(), "read".to_string()),
            (b.clone(), "delivered".to_string()),
            (b.clone(), "read".to_string()),
        ]
    );
    assert_eq!(env.chat.stats().receipts_stored, 3);
    // The stored status stays `read`.
    let h = env
        .rpc("alice", json!({"rid":"r","op":"history","with":"bob"}))
        .await;
    assert_eq!(h["result"]["messages"][0]["status"], "read");
}

#[tokio::test]
async fn receipts_for_messages_not_received_are_forbidden() {
    let env = Env::new(&["alice", "bob", "carol"]);
    let to_bob = env.text("alice", "bob", "c0", "for bob").await;
    let to_carol = env.text("alice", "carol", "c1", "for carol").await;
    // The author's own message.
    let r = receipt(&env, "alice", &[&to_bob], "read")
        .await
        .expect("refused");
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(refused_ids(&r), vec![to_bob.clone()]);
    // Another pair's message.
    let r = receipt(&env, "bob", &[&to_carol], "delivered")
        .await
        .expect("refused");
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(refused_ids(&r), vec![to_carol.clone()]);
    assert!(!env.store.has(format!("s/{to_bob}/alice").as_bytes()));
    assert!(!env.store.has(format!("s/{to_carol}/bob").as_bytes()));
    // Nothing forwarded, nothing queued for alice.
    assert!(receipts_of(&env, "alice").is_empty());
    assert!(env
        .chat
        .backlog("alice", None, 10)
        .expect("backlog")
        .is_empty());
    assert_eq!(env.chat.stats().receipts_refused, 2);
    assert_eq!(env.chat.stats().receipts_stored, 0);
}

#[tokio::test]
async fn unknown_id_is_not_found() {
    let env = Env::new(&["alice", "bob"]);
    env.text("alice", "bob", "c0", "hi").await;
    let ghost = "1000000000000-00001-00000";
    let r = receipt(&env, "bob", &[ghost], "read")
        .await
        .expect("refused");
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert_eq!(refused_ids(&r), vec![ghost.to_string()]);
    assert!(r["error"]["message"].as_str().is_some());
}

#[tokio::test]
async fn malformed_receipts_are_bad_requests() {
    let env = Env::new(&["alice", "bob"]);
    let id = env.text("alice", "bob", "c0", "hi").await;
    let cases = [
        (json!({"ids": [id], "status": "seen"}).to_string(), 1),
        (json!({"ids": [id], "status": "sent"}).to_string(), 1),
        (json!({"ids": [id]}).to_string(), 1),
        (
            json!({"ids": [id], "status": "read", "extra": 1}).to_string(),
            1,
        ),
        (
            json!({"ids": [id, "not-an-id"], "status": "read"}).to_string(),
            2,
        ),
        (json!({"ids": [], "status": "read"}).to_string(), 0),
        (json!({"status": "read"}).to_string(), 0),
        ("{not json".to_string(), 0),
        ("".to_string(), 0),
        ("[1,2]".to_string(), 0),
    ];
    for (payload, n) in cases {
        let r = raw_receipt(&env, "bob", &payload)
            .await
            .unwrap_or_else(|| panic!("{payload} accepted"));
        assert_eq!(r["error"]["code"], "bad_request", "{payload}: {r}");
        assert_eq!(refused_ids(&r).len(), n, "{payload}: {r}");
        if n > 0 {
            assert_eq!(refused_ids(&r)[0], id, "{payload}: {r}");
        }
    }
    let too_many: Vec<String> = (0..101)
        .map(|i| format!("1732790000123-00001-{i:05}"))
        .collect();
    let r = raw_receipt(
        &env,
        "bob",
        &json!({"ids": too_many, "status": "read"}).to_string(),
    )
    .await
    .expect("refused");
    assert_eq!(r["error"]["code"], "bad_request");
    // Nothing was stored for the valid id of those publishes.
    assert!(!env.store.has(format!("s/{id}/bob").as_bytes()));
    assert!(receipts_of(&env, "alice").is_empty());
    assert_eq!(env.chat.stats().receipts_stored, 0);
}

#[tokio::test]
async fn mixed_ids_process_the_valid_ones() {
    let env = Env::new(&["alice", "bob", "carol"]);
    let ok1 = env.text("alice", "bob", "c0", "one").await;
    let mine = env.text("bob", "alice", "c1", "bob's own").await;
    let ok2 = env.text("carol", "bob", "c2", "from carol").await;
    let ghost = "1000000000000-00001-00000";
    let r = receipt(&env, "bob", &[&ok1, &mine, ghost, &ok2], "read")
        .await
        .expect("partly refused");
    assert_eq!(refused_ids(&r), vec![mine.clone(), ghost.to_string()]);
    // The first refused id's code; the message names each id's reason.
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&mine) && msg.contains(ghost), "{msg}");
    let to_alice = forwarded(&env, "alice", 1);
    assert_eq!(to_alice.len(), 1);
    assert_eq!(to_alice[0]["id"], ok1.as_str());
    let to_carol = forwarded(&env, "carol", 1);
    assert_eq!(to_carol.len(), 1);
    assert_eq!(to_carol[0]["id"], ok2.as_str());
    assert_eq!(to_carol[0]["by"], "bob");
    let stats = env.chat.stats();
    assert_eq!(stats.receipts_stored, 2);
    assert_eq!(stats.receipts_refused, 2);
}

#[tokio::test]
async fn one_publish_is_one_batch() {
    let env = Env::new(&["alice", "bob"]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(env.text("alice", "bob", &format!("c{i}"), "x").await);
    }
    let before = env.chat.stats().batches;
    let flushes = env.store.flush_count();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(receipt(&env, "bob", &refs, "delivered").await, None);
    assert_eq!(env.chat.stats().batches, before + 1);
    assert_eq!(env.store.flush_count(), flushes + 1);
    let got = forwarded(&env, "alice", 5);
    let got_ids: Vec<&str> = got.iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(got_ids, refs);
    // Durable before forwarded: every forwarded event's status is already stored.
    for id in &ids {
        assert!(env.store.has(format!("s/{id}/bob").as_bytes()));
    }
}

#[tokio::test]
async fn offline_author_gets_receipts_from_the_backlog() {
    let env = Env::new(&["alice", "bob"]);
    let m1 = env.text("alice", "bob", "c0", "one").await;
    assert_eq!(receipt(&env, "bob", &[&m1], "delivered").await, None);
    let reply = env.text("bob", "alice", "c1", "answer").await;
    assert_eq!(receipt(&env, "bob", &[&m1], "read").await, None);
    let backlog = env.chat.backlog("alice", None, 10).expect("backlog");
    let kinds: Vec<String> = backlog.iter().map(|o| o.channel.topic(&o.user)).collect();
    assert_eq!(
        kinds,
        vec![
            "user/alice/receipt",
            "user/alice/inbox",
            "user/alice/receipt"
        ]
    );
    let qids: Vec<String> = backlog.iter().filter_map(|o| o.queue_id.clone()).collect();
    let mut sorted = qids.clone();
    sorted.sort();
    assert_eq!(qids, sorted);
    assert_eq!(qids[1], reply);
    assert!(backlog.iter().all(|o| o.user == "alice"));
    // The backlog payloads are the live deliveries' bytes.
    // Deliveries are handed over just after the acks: wait for both.
    forwarded(&env, "alice", 2);
    let live = receipts_of(&env, "alice");
    assert_eq!(backlog[0].payload, live[0].payload);
    assert_eq!(backlog[2].payload, live[1].payload);
    assert_eq!(parse(&backlog[2].payload)["status"], "read");
    // Paging by queue id works across both kinds.
    let rest = env
        .chat
        .backlog("alice", Some(&qids[0]), 10)
        .expect("backlog");
    assert_eq!(rest.len(), 2);
    // Acks remove receipts as well as messages.
    env.chat.acked("alice", &qids[0]).expect("acked");
    env.chat.acked("alice", &qids[2]).expect("acked");
    let left: Vec<String> = env
        .chat
        .backlog("alice", None, 10)
        .expect("backlog")
        .into_iter()
        .filter_map(|o| o.queue_id)
        .collect();
    assert_eq!(left, vec![reply]);
    // Bob's queue is untouched by receipts.
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 1);
}

#[tokio::test]
async fn history_shows_the_status() {
    let env = Env::new(&["alice", "bob"]);
    let a = env.text("alice", "bob", "c0", "one").await;
    let b = env.text("alice", "bob", "c1", "two").await;
    let c = env.text("alice", "bob", "c2", "three").await;
    assert_eq!(receipt(&env, "bob", &[&a, &b], "delivered").await, None);
    assert_eq!(receipt(&env, "bob", &[&a], "read").await, None);
    for me in ["alice", "bob"] {
        let with = if me == "alice" { "bob" } else { "alice" };
        let h = env
            .rpc(me, json!({"rid":"r","op":"history","with":with}))
            .await;
        let statuses: Vec<(&str, &str)> = h["result"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default(),
                    m["status"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                (a.as_str(), "read"),
                (b.as_str(), "delivered"),
                (c.as_str(), "sent")
            ],
            "{me}"
        );
    }
    let convs = env
        .rpc("alice", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(
        convs["result"]["conversations"][0]["last"]["status"],
        "sent"
    );
}

#[tokio::test]
async fn read_lowers_unread() {
    let env = Env::new(&["alice", "bob", "carol"]);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(env.text("alice", "bob", &format!("c{i}"), "x").await);
    }
    let from_carol = env.text("carol", "bob", "k0", "y").await;
    let unread = |v: &Value, with: &str| -> u64 {
        v["result"]["conversations"]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["with"] == with)
            .and_then(|c| c["unread"].as_u64())
            .unwrap_or(999)
    };
    let convs = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "alice"), 4);
    assert_eq!(unread(&convs, "carol"), 1);
    // Delivered does not change unread.
    assert_eq!(receipt(&env, "bob", &[&ids[0]], "delivered").await, None);
    // Read of two (one already delivered): -2.
    assert_eq!(
        receipt(&env, "bob", &[&ids[0], &ids[1]], "read").await,
        None
    );
    let convs = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "alice"), 2);
    assert_eq!(unread(&convs, "carol"), 1);
    // Reading again does not lower it further; a late delivered changes nothing.
    assert_eq!(
        receipt(&env, "bob", &[&ids[0], &ids[1]], "read").await,
        None
    );
    assert_eq!(receipt(&env, "bob", &[&ids[1]], "delivered").await, None);
    // Reading the rest plus carol's: both at zero.
    assert_eq!(
        receipt(&env, "bob", &[&ids[2], &ids[3], &from_carol], "read").await,
        None
    );
    let convs = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "alice"), 0);
    assert_eq!(unread(&convs, "carol"), 0);
    // Alice's own count is untouched.
    let convs = env
        .rpc("alice", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "bob"), 0);
    // Never below zero, even after a new message arrives and old ones are re-read.
    let late = env.text("alice", "bob", "c9", "z").await;
    assert_eq!(receipt(&env, "bob", &[&ids[0]], "read").await, None);
    let convs = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "alice"), 1);
    assert_eq!(receipt(&env, "bob", &[&late], "read").await, None);
    let convs = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(unread(&convs, "alice"), 0);
}

#[tokio::test]
async fn statuses_and_queued_receipts_survive_a_restart() {
    let env = Env::new(&["alice", "bob"]);
    let a = env.text("alice", "bob", "c0", "one").await;
    let b = env.text("alice", "bob", "c1", "two").await;
    assert_eq!(receipt(&env, "bob", &[&a], "read").await, None);
    assert_eq!(receipt(&env, "bob", &[&b], "delivered").await, None);
    let queued: Vec<String> = env
        .chat
        .backlog("alice", None, 10)
        .expect("backlog")
        .into_iter()
        .filter_map(|o| o.queue_id)
        .collect();
    assert_eq!(queued.len(), 2);
    let Env {
        dir,
        store,
        accounts,
        chat,
        rec,
    } = env;
    chat.close();
    drop((chat, accounts, store, rec));

    let (store, accounts, chat, rec) = start(dir.path(), ChatConfig::default());
    let env = Env {
        dir,
        store,
        accounts,
        chat,
        rec,
    };
    // Queued receipts are still there and visible (the watermark starts at the highest
    // queue id, not just the newest message).
    let backlog = env.chat.backlog("alice", None, 10).expect("backlog");
    let again: Vec<String> = backlog.iter().filter_map(|o| o.queue_id.clone()).collect();
    assert_eq!(again, queued);
    assert!(backlog
        .iter()
        .all(|o| o.channel.topic(&o.user) == "user/alice/receipt"));
    let h = env
        .rpc("alice", json!({"rid":"r","op":"history","with":"bob"}))
        .await;
    assert_eq!(h["result"]["messages"][0]["status"], "read");
    assert_eq!(h["result"]["messages"][1]["status"], "delivered");
    // Status still only moves forward after the restart; new ids sort after the old qids.
    assert_eq!(receipt(&env, "bob", &[&a], "delivered").await, None);
    assert_eq!(receipt(&env, "bob", &[&b], "read").await, None);
    let got = forwarded(&env, "alice", 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], b.as_str());
    let qid = receipts_of(&env, "alice")[0].queue_id.clone().expect("qid");
    assert!(qid > queued[1], "{qid} after {}", queued[1]);
    let id = env.text("alice", "bob", "c2", "three").await;
    assert!(id > qid);
    assert_eq!(
        env.store.get(b"x/last_id").expect("get"),
        Some(id.clone().into_bytes())
    );
}
