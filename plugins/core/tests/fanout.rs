//! Group fan-out in slices: other sends are not held up by a big group, every member gets
//! each message once and in order, and an unfinished fan-out resumes after a restart.

mod common;

use chatd_kv::KvStore;

use chatd_core::messaging::ChatConfig;
use common::*;
use serde_json::json;
use std::future::Future;
use std::sync::atomic::Ordering;

/// Polls `fut` once (enough for a send to reach the committer's queue).
async fn poll_once<F: Future + Unpin>(fut: &mut F) {
    tokio::select! {
        biased;
        _ = fut => panic!("finished while the store was held"),
        _ = std::future::ready(()) => {}
    }
}

fn sliced(slice: usize) -> ChatConfig {
    ChatConfig {
        fanout_slice: slice,
        ..ChatConfig::default()
    }
}

fn members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i:03}")).collect()
}

async fn group(env: &Env, members: &[String]) -> String {
    let r = env
        .rpc(
            "alice",
            json!({"rid": "r", "op": "group.create", "name": "G", "members": members}),
        )
        .await;
    r["result"]["group"]
        .as_str()
        .unwrap_or_else(|| panic!("group.create refused: {r}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_overtakes_a_big_fan_out() {
    let users = members(40);
    let mut all: Vec<&str> = vec!["alice", "bob"];
    all.extend(users.iter().map(String::as_str));
    let env = Env::with_config(&all, sliced(2));
    let g = group(&env, &users).await;
    // The creation event goes to alice and the 40 members.
    env.delivered(41);
    env.rec.0.lock().expect("recorder").clear();

    // Hold the group message's batch at its flush, queue a 1:1 message behind it, release.
    env.store.close_gate();
    // Whatever fails below, the committer must not stay stuck in the flush (the test would hang).
    struct Reopen<'a>(&'a TestStore);
    impl Drop for Reopen<'_> {
        fn drop(&mut self) {
            self.0.open_gate();
        }
    }
    let _reopen = Reopen(&env.store);
    let applied = env.store.applies.load(Ordering::SeqCst);
    let send = json!({"cid": "g1", "group": g, "type": "text", "text": "to all"}).to_string();
    let mut group_send = Box::pin(env.chat.send("alice", send.as_bytes()));
    poll_once(&mut group_send).await;
    assert!(wait_until(
        || env.store.applies.load(Ordering::SeqCst) > applied
    ));
    let send = json!({"cid": "d1", "to": "bob", "type": "text", "text": "hi"}).to_string();
    let mut direct = Box::pin(env.chat.send("alice", send.as_bytes()));
    // The first poll hands the job to the committer, which is stuck in the flush.
    poll_once(&mut direct).await;
    env.store.open_gate();
    let ack = parse(&group_send.await);
    assert_eq!(ack["status"], "sent", "{ack}");
    let ack = parse(&direct.await);
    assert_eq!(ack["status"], "sent", "{ack}");

    let items = env.delivered(41);
    let to_bob = items
        .iter()
        .position(|o| o.user == "bob")
        .expect("bob's message delivered");
    let last_member = items
        .iter()
        .rposition(|o| o.user.starts_with('m'))
        .expect("group deliveries");
    assert!(
        to_bob < last_member,
        "the 1:1 message waited for the whole group: {to_bob} vs {last_member}"
    );
    // Every member got it exactly once, with increasing queue ids.
    for user in &users {
        let mine: Vec<_> = items.iter().filter(|o| &o.user == user).collect();
        assert_eq!(mine.len(), 1, "{user}");
    }
    let qids: Vec<&str> = items.iter().filter_map(|o| o.queue_id.as_deref()).collect();
    assert!(qids.windows(2).all(|w| w[0] <= w[1]), "{qids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_fan_out_resumes_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = members(200);
    let (store, accounts, chat, rec) = start(dir.path(), sliced(1));
    for user in ["alice"]
        .iter()
        .copied()
        .chain(users.iter().map(String::as_str))
    {
        add_account(&store, user);
    }
    let r = parse(
        &chat
            .rpc(
                "alice",
                json!({"rid": "r", "op": "group.create", "name": "G", "members": users})
                    .to_string()
                    .as_bytes(),
            )
            .await,
    );
    let g = r["result"]["group"].as_str().expect("group").to_string();
    let ack = parse(
        &chat
            .send(
                "alice",
                json!({"cid": "c1", "group": g, "type": "text", "text": "hello"})
                    .to_string()
                    .as_bytes(),
            )
            .await,
    );
    let id = ack["id"].as_str().expect("acked").to_string();
    chat.close();
    assert!(
        store.has(format!("n/{id}").as_bytes()),
        "the fan-out should still be pending at close"
    );
    drop((chat, accounts, rec, store));

    let (store, _accounts, chat, rec) = start(dir.path(), sliced(64));
    // Every member ends with the event and the message in their queue, once, in order.
    assert!(wait_until(|| !store.has(format!("n/{id}").as_bytes())));
    // Queue reads see the last slice once it is flushed.
    assert!(wait_until(|| users.iter().all(|u| {
        chat.backlog(u, None, 10).is_ok_and(|q| q.len() == 2)
    })));
    for user in &users {
        let queue = chat.backlog(user, None, 10).expect("backlog");
        let ids: Vec<String> = queue
            .iter()
            .map(|o| parse(&o.payload)["id"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(ids.len(), 2, "{user}: {ids:?}");
        assert_eq!(ids[1], id, "{user}: {ids:?}");
    }
    assert!(rec.items().iter().any(|o| o.user == users[199]));
}

#[tokio::test]
async fn acked_entries_leave_the_store() {
    let env = Env::new(&["alice", "bob"]);
    let id = env.text("alice", "bob", "c0", "one").await;
    // Held in memory (the embedded log's `held.rs`): no record of its own, one list of the
    // entries its batch queued.
    let lists = || {
        env.store
            .scan(b"x/held/", b"x/held0", false, 10)
            .expect("scan")
    };
    assert!(!env.store.has(format!("q/bob/{id}").as_bytes()));
    let first = lists();
    assert_eq!(first.len(), 1);
    env.chat.acked("bob", &id).expect("acked");
    assert!(env
        .chat
        .backlog("bob", None, 10)
        .expect("backlog")
        .is_empty());
    // The next commit deletes the list, whose only entry went.
    env.text("alice", "bob", "c1", "two").await;
    assert!(
        wait_until(|| !lists().iter().any(|(key, _)| *key == first[0].0)),
        "the committer should delete the list of the acked entry"
    );
    assert!(!env.store.has(format!("q/bob/{id}").as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_wait_while_the_fan_out_backlog_is_full() {
    let users = members(3000);
    let mut all: Vec<&str> = vec!["alice", "bob"];
    all.extend(users.iter().map(String::as_str));
    let env = Env::with_config(
        &all,
        ChatConfig {
            fanout_slice: 1,
            max_fanout_backlog: 100,
            max_group_members: 5000,
            ..ChatConfig::default()
        },
    );
    // Two membership events, to 1501 and 3001 members, queued one recipient per batch.
    let g = group(&env, &users[..1500]).await;
    let r = env
        .rpc(
            "alice",
            json!({"rid": "r2", "op": "group.add", "group": g, "users": &users[1500..]}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let send = |cid: &str| json!({"cid": cid, "group": g, "type": "text", "text": "hi"});
    let ack = env.send("alice", &send("g1").to_string()).await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    // Other conversations are not held back.
    let ack = env
        .send(
            "alice",
            r#"{"cid":"d1","to":"bob","type":"text","text":"hi"}"#,
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    // Once the backlog has drained, the same message goes through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ack = env.send("alice", &send("g1").to_string()).await;
        if ack["status"] == "sent" {
            break;
        }
        assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
        assert!(
            std::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
