//! `Chat::send`: acks, durability, retries, refusals, group commit and restart.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chatd_core::messaging::ChatConfig;
use chatd_kv::KvStore;
use chatd_wire::ids::valid_message_id;
use common::{parse, start, wait_until, Env};
use serde_json::{json, Value};

#[tokio::test]
async fn send_ok_stores_and_delivers() {
    let env = Env::new(&["alice", "bob"]);
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c-17","to":"bob","type":"text","text":"hi","from":"mallory"}"#,
        )
        .await;
    let id = ack["id"].as_str().expect("id").to_string();
    assert!(valid_message_id(&id), "{ack}");
    assert_eq!(ack["cid"], "c-17");
    assert_eq!(ack["status"], "sent");
    let ts = ack["ts"].as_u64().expect("ts");
    assert_eq!(id[..13].parse::<u64>().ok(), Some(ts));
    assert_eq!(ack.as_object().map(|o| o.len()), Some(4), "{ack}");

    let items = env.delivered(1);
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.user, "bob");
    assert_eq!(item.channel.topic(&item.user), "user/bob/inbox");
    assert_eq!(item.queue_id.as_deref(), Some(id.as_str()));
    let msg = parse(&item.payload);
    assert_eq!(
        msg,
        json!({"id": id, "from": "alice", "to": "bob", "type": "text", "text": "hi", "ts": ts})
    );

    let store = &env.store;
    assert_eq!(
        store.get(format!("m/{id}").as_bytes()).expect("get"),
        Some(item.payload.to_vec())
    );
    assert!(store
        .get(format!("h/d:alice:bob/{id}").as_bytes())
        .expect("get")
        .is_some());
    // Queued for bob (held in memory by the embedded log, so read through the queue).
    let queued = env.chat.backlog("bob", None, 10).expect("backlog");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].queue_id.as_deref(), Some(id.as_str()));
    // The ack is remembered as its id alone (`cid_acks.rs`), and given back whole.
    let k = store.get(b"k/alice/c-17").expect("get").expect("cid entry");
    assert_eq!(k, [&b"\0"[..], id.as_bytes()].concat());
    let sv = parse(&store.get(b"v/alice/d:alice:bob").expect("get").expect("v"));
    assert_eq!(sv, json!({"peer": "bob", "last_id": id, "unread": 0}));
    let rv = parse(&store.get(b"v/bob/d:alice:bob").expect("get").expect("v"));
    assert_eq!(rv, json!({"peer": "alice", "last_id": id, "unread": 1}));

    let stats = env.chat.stats();
    assert_eq!(stats.messages_stored, 1);
    assert_eq!(stats.batches, 1);
    let again = env
        .send(
            "alice",
            r#"{"cid":"c-17","to":"bob","type":"text","text":"hi again"}"#,
        )
        .await;
    assert_eq!(
        again, ack,
        "a retry gets the first ack back, rebuilt from the id"
    );
}

#[tokio::test]
async fn reply_to_is_kept() {
    let env = Env::new(&["alice", "bob"]);
    let first = env.text("alice", "bob", "c1", "question").await;
    let ack = env
        .send(
            "bob",
            &json!({"cid":"c1","to":"alice","type":"text","text":"answer","reply_to":first})
                .to_string(),
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let items = env.delivered(2);
    assert_eq!(parse(&items[1].payload)["reply_to"], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_only_after_flush() {
    let env = Env::new(&["alice", "bob"]);
    let before = env.store.flush_count();
    env.store.close_gate();
    let chat = env.chat.clone();
    let task = tokio::spawn(async move {
        chat.send(
            "alice",
            br#"{"cid":"c1","to":"bob","type":"text","text":"hi"}"#,
        )
        .await
    });
    // The batch is applied, but its flush is held: no ack, no delivery, not in the backlog.
    assert!(wait_until(|| env.store.has(b"k/alice/c1")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "acked before the flush returned");
    assert!(env.rec.items().is_empty());
    assert!(env
        .chat
        .backlog("bob", None, 10)
        .expect("backlog")
        .is_empty());
    env.store.open_gate();
    let ack = parse(&task.await.expect("join"));
    assert_eq!(ack["status"], "sent");
    assert_eq!(env.store.flush_count(), before + 1);
    assert_eq!(env.delivered(1).len(), 1);
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 1);
}

#[tokio::test]
async fn cid_retry_returns_first_ack() {
    let env = Env::new(&["alice", "bob"]);
    let payload = r#"{"cid":"c-1","to":"bob","type":"text","text":"hi"}"#;
    let first = env.chat.send("alice", payload.as_bytes()).await;
    let second = env.chat.send("alice", payload.as_bytes()).await;
    assert_eq!(first, second);
    // A retry with another text still answers with the first message.
    let third = env
        .chat
        .send(
            "alice",
            br#"{"cid":"c-1","to":"bob","type":"text","text":"changed"}"#,
        )
        .await;
    assert_eq!(first, third);
    assert_eq!(env.delivered(1).len(), 1);
    assert_eq!(
        env.chat.backlog("bob", None, 100).expect("backlog").len(),
        1
    );
    let stats = env.chat.stats();
    assert_eq!(stats.messages_stored, 1);
    assert_eq!(stats.duplicate_cids, 2);
    // Another sender may use the same cid for its own message.
    let ack = env
        .send(
            "bob",
            r#"{"cid":"c-1","to":"alice","type":"text","text":"yo"}"#,
        )
        .await;
    assert_ne!(ack["id"], parse(&first)["id"]);
}

/// Holds the committer in the flush of alice's send "x" to bob (the store's gate is closed),
/// so that the sends made meanwhile are committed together in the next batch once the gate
/// opens; returns that first send.
fn hold_committer(env: &Env) -> tokio::task::JoinHandle<bytes::Bytes> {
    env.store.close_gate();
    let chat = env.chat.clone();
    let blocker = tokio::spawn(async move {
        chat.send(
            "alice",
            br#"{"cid":"x","to":"bob","type":"text","text":"a"}"#,
        )
        .await
    });
    assert!(wait_until(|| env.store.has(b"k/alice/x")));
    blocker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cid_retries_in_one_batch_make_one_message() {
    let env = Env::new(&["alice", "bob"]);
    // The first send occupies the committer (its flush is held); the rest queue up and
    // are committed together in the next batch.
    let blocker = hold_committer(&env);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let chat = env.chat.clone();
        tasks.push(tokio::spawn(async move {
            chat.send(
                "alice",
                br#"{"cid":"same","to":"bob","type":"text","text":"b"}"#,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.store.open_gate();
    blocker.await.expect("join");
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.expect("join"));
    }
    assert!(acks.iter().all(|a| a == &acks[0]), "{acks:?}");
    assert_eq!(parse(&acks[0])["status"], "sent");
    assert_eq!(env.delivered(2).len(), 2);
    assert_eq!(env.chat.stats().duplicate_cids, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_in_one_batch_of_a_cid_stored_before_get_the_first_ack() {
    let env = Env::new(&["alice", "bob"]);
    let repeat = br#"{"cid":"same","to":"bob","type":"text","text":"b"}"#;
    let first = env.chat.send("alice", repeat).await;
    assert_eq!(parse(&first)["status"], "sent");
    let blocker = hold_committer(&env);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let chat = env.chat.clone();
        tasks.push(tokio::spawn(
            async move { chat.send("alice", repeat).await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    env.store.open_gate();
    blocker.await.expect("join");
    for t in tasks {
        assert_eq!(t.await.expect("join"), first);
    }
    assert_eq!(env.delivered(2).len(), 2);
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 2);
    let stats = env.chat.stats();
    assert_eq!((stats.messages_stored, stats.duplicate_cids), (2, 3));
}

#[tokio::test]
async fn a_repeat_that_would_now_be_refused_gets_the_first_ack() {
    let env = Env::new(&["alice", "bob"]);
    let r = env
        .rpc(
            "alice",
            json!({"rid": "r", "op": "group.create", "name": "G", "members": ["bob"]}),
        )
        .await;
    let group = r["result"]["group"].as_str().expect("group id").to_string();
    let send = json!({"cid": "g-1", "group": group, "type": "text", "text": "hi"}).to_string();
    let first = env.send("alice", &send).await;
    assert_eq!(first["status"], "sent", "{first}");
    let r = env
        .rpc(
            "alice",
            json!({"rid": "l", "op": "group.leave", "group": group}),
        )
        .await;
    assert!(r.get("error").is_none(), "{r}");
    // Not a member any more: a new message is refused, the retry of the stored one is not.
    let again = env.send("alice", &send).await;
    assert_eq!(again, first);
    let other = json!({"cid": "g-2", "group": group, "type": "text", "text": "hi"}).to_string();
    let refused = env.send("alice", &other).await;
    assert!(refused.get("error").is_some(), "{refused}");
}

#[tokio::test]
async fn unknown_recipient_is_not_found() {
    let env = Env::new(&["alice"]);
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c1","to":"nobody","type":"text","text":"hi"}"#,
        )
        .await;
    assert_eq!(ack["cid"], "c1");
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    assert!(ack["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("nobody"));
    assert!(env.rec.items().is_empty());
    // The failed attempt does not reserve the cid.
    common::add_account(&env.store, "nobody");
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c1","to":"nobody","type":"text","text":"hi"}"#,
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
}

#[tokio::test]
async fn bad_input_classes() {
    let env = Env::with_config(
        &["alice", "bob"],
        ChatConfig {
            max_text_bytes: 10,
            ..ChatConfig::default()
        },
    );
    let cases: &[(&[u8], &str, Option<&str>, &str)] = &[
        (b"", "bad_request", None, "empty"),
        (b"\xc3\x28", "bad_request", None, "UTF-8"),
        (b"{\"cid\":", "bad_request", None, "JSON"),
        (b"42", "bad_request", None, "object"),
        (
            br#"{"to":"bob","type":"text","text":"x"}"#,
            "bad_request",
            None,
            "`cid`",
        ),
        (
            br#"{"cid":null,"to":"bob","type":"text","text":"x"}"#,
            "bad_request",
            None,
            "`cid`",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"text","text":"x","foo":1}"#,
            "bad_request",
            Some("c"),
            "unknown field `foo`",
        ),
        (
            br#"{"cid":"c","group":"g","to":"bob","type":"text","text":"x"}"#,
            "bad_request",
            Some("c"),
            "not both",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"video","media":"m"}"#,
            "bad_request",
            Some("c"),
            "media service",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"gif","text":"x"}"#,
            "bad_request",
            Some("c"),
            "`type`",
        ),
        (
            br#"{"cid":"c","to":"b b","type":"text","text":"x"}"#,
            "bad_request",
            Some("c"),
            "`to`",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"text","text":""}"#,
            "bad_request",
            Some("c"),
            "`text`",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"text","text":"12345678901"}"#,
            "too_large",
            Some("c"),
            "11 bytes",
        ),
        (
            br#"{"cid":"c","to":"bob","type":"text","text":"x","reply_to":"nope"}"#,
            "bad_request",
            Some("c"),
            "`reply_to`",
        ),
    ];
    for (payload, code, cid, needle) in cases {
        let ack = parse(&env.chat.send("alice", payload).await);
        let shown = String::from_utf8_lossy(payload);
        assert_eq!(ack["error"]["code"], *code, "{shown}: {ack}");
        assert_eq!(
            ack.get("cid").and_then(Value::as_str),
            *cid,
            "{shown}: {ack}"
        );
        let message = ack["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{shown}: {ack}");
    }
    let long_cid = "c".repeat(129);
    let ack = env
        .send(
            "alice",
            &json!({"cid": long_cid, "to":"bob","type":"text","text":"x"}).to_string(),
        )
        .await;
    assert_eq!(ack["error"]["code"], "bad_request");
    assert!(ack.get("cid").is_none());
    assert!(env.rec.items().is_empty());
    assert_eq!(env.chat.stats().rejected, cases.len() as u64 + 1);
    assert_eq!(env.chat.stats().messages_stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_batched_and_ordered() {
    let env = Env::new(&["alice", "bob", "carol"]);
    const N: usize = 400;
    let mut tasks = Vec::new();
    for i in 0..N {
        let chat = env.chat.clone();
        tasks.push(tokio::spawn(async move {
            let from = if i % 2 == 0 { "alice" } else { "carol" };
            let payload = json!({"cid": format!("c{i}"), "to": "bob", "type": "text", "text": format!("m{i}")});
            chat.send(from, payload.to_string().as_bytes()).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let ack = parse(&t.await.expect("join"));
        ids.push(ack["id"].as_str().expect("id").to_string());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), N, "ids are not distinct");
    // Deliveries come in id order.
    let delivered: Vec<String> = env
        .delivered(N)
        .into_iter()
        .filter_map(|o| o.queue_id)
        .collect();
    assert_eq!(delivered, sorted);
    let stats = env.chat.stats();
    assert_eq!(stats.messages_stored, N as u64);
    assert!(stats.batches < N as u64, "no batching: {stats:?}");
    assert!(env.store.flush_count() < N, "one flush per message");
    // Unread counts added up across batches.
    let v = parse(
        &env.store
            .get(b"v/bob/d:alice:bob")
            .expect("get")
            .expect("v"),
    );
    assert_eq!(v["unread"], N as u64 / 2);
    let v = parse(
        &env.store
            .get(b"v/bob/d:bob:carol")
            .expect("get")
            .expect("v"),
    );
    assert_eq!(v["unread"], N as u64 / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_conversation_in_one_batch_counts_every_message() {
    let env = Env::new(&["alice", "bob"]);
    env.store.close_gate();
    let chat = env.chat.clone();
    let blocker = tokio::spawn(async move {
        chat.send(
            "alice",
            br#"{"cid":"first","to":"bob","type":"text","text":"a"}"#,
        )
        .await
    });
    assert!(wait_until(|| env.store.has(b"k/alice/first")));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let chat = env.chat.clone();
        tasks.push(tokio::spawn(async move {
            let p = json!({"cid": format!("c{i}"), "to": "bob", "type": "text", "text": "x"});
            chat.send("alice", p.to_string().as_bytes()).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let batches_before = env.chat.stats().batches;
    env.store.open_gate();
    blocker.await.expect("join");
    for t in tasks {
        assert_eq!(parse(&t.await.expect("join"))["status"], "sent");
    }
    assert_eq!(
        env.chat.stats().batches,
        batches_before + 2,
        "10 sends in one batch"
    );
    let v = parse(
        &env.store
            .get(b"v/bob/d:alice:bob")
            .expect("get")
            .expect("v"),
    );
    assert_eq!(v["unread"], 11);
    // Deliveries follow the acks; wait for all of them.
    let last = env.delivered(11).last().and_then(|o| o.queue_id.clone());
    assert_eq!(v["last_id"].as_str(), last.as_deref());
}

#[tokio::test]
async fn store_failures_answer_internal_and_committer_survives() {
    let env = Env::new(&["alice", "bob"]);
    env.store.fail_apply.store(true, Ordering::SeqCst);
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c1","to":"bob","type":"text","text":"x"}"#,
        )
        .await;
    assert_eq!(ack["error"]["code"], "internal", "{ack}");
    assert_eq!(ack["cid"], "c1");
    env.store.fail_apply.store(false, Ordering::SeqCst);

    env.store.fail_flush.store(true, Ordering::SeqCst);
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c2","to":"bob","type":"text","text":"y"}"#,
        )
        .await;
    assert_eq!(ack["error"]["code"], "internal", "{ack}");
    assert!(env.rec.items().is_empty());
    assert!(env
        .chat
        .backlog("bob", None, 10)
        .expect("backlog")
        .is_empty());
    env.store.fail_flush.store(false, Ordering::SeqCst);

    // The committer still works; the retry of c1 makes a message now.
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c1","to":"bob","type":"text","text":"x"}"#,
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    // c2 was applied but its flush failed: the retry answers with that message once a
    // flush has succeeded, and the backlog then includes it.
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c2","to":"bob","type":"text","text":"y"}"#,
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 2);
}

#[tokio::test]
async fn close_finishes_and_refuses_later_sends() {
    let env = Env::new(&["alice", "bob"]);
    env.text("alice", "bob", "c1", "before").await;
    env.chat.close();
    env.chat.close();
    let ack = env
        .send(
            "alice",
            r#"{"cid":"c2","to":"bob","type":"text","text":"after"}"#,
        )
        .await;
    assert_eq!(ack["error"]["code"], "internal");
    assert_eq!(ack["error"]["message"], "server is shutting down");
    assert_eq!(ack["cid"], "c2");
}

#[tokio::test]
async fn reopen_after_drop_finds_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_id, first_ack) = {
        let (store, _accounts, chat, _rec) = start(dir.path(), ChatConfig::default());
        common::add_account(&store, "alice");
        common::add_account(&store, "bob");
        let ack = parse(
            &chat
                .send(
                    "alice",
                    br#"{"cid":"c1","to":"bob","type":"text","text":"hi"}"#,
                )
                .await,
        );
        (ack["id"].as_str().expect("id").to_string(), ack)
    };
    let (_store, accounts, chat, rec) = start(dir.path(), ChatConfig::default());
    assert!(accounts.exists("bob").expect("exists"));
    let backlog = chat.backlog("bob", None, 10).expect("backlog");
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].queue_id.as_deref(), Some(first_id.as_str()));
    assert_eq!(parse(&backlog[0].payload)["text"], "hi");
    // The cid map survived: a retry after the restart gets the same ack.
    let again = parse(
        &chat
            .send(
                "alice",
                br#"{"cid":"c1","to":"bob","type":"text","text":"hi"}"#,
            )
            .await,
    );
    assert_eq!(again, first_ack);
    // New ids continue after the stored ones.
    let ack = parse(
        &chat
            .send(
                "alice",
                br#"{"cid":"c2","to":"bob","type":"text","text":"again"}"#,
            )
            .await,
    );
    let second_id = ack["id"].as_str().expect("id");
    assert!(second_id > first_id.as_str());
    assert!(wait_until(|| rec.items().len() == 1));
    let history = parse(
        &chat
            .rpc("bob", br#"{"rid":"r","op":"history","with":"alice"}"#)
            .await,
    );
    assert_eq!(
        history["result"]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    let convs = parse(
        &chat
            .rpc("bob", br#"{"rid":"r","op":"conversations"}"#)
            .await,
    );
    assert_eq!(convs["result"]["conversations"][0]["unread"], 2);
}

#[tokio::test]
async fn note_to_self_has_no_unread() {
    let env = Env::new(&["alice"]);
    let id = env.text("alice", "alice", "c1", "remember milk").await;
    let v = parse(
        &env.store
            .get(b"v/alice/d:alice:alice")
            .expect("get")
            .expect("v"),
    );
    assert_eq!(v, json!({"peer": "alice", "last_id": id, "unread": 0}));
    assert_eq!(env.delivered(1)[0].user, "alice");
}
