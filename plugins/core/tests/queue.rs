//! The undelivered queue: `Chat::backlog` paging and the watermark, `Chat::acked`.

mod common;

use std::time::Duration;

use chatd_kv::KvStore;
use common::{wait_until, Env};

#[tokio::test]
async fn backlog_pages_in_id_order() {
    let env = Env::new(&["alice", "bob", "carol"]);
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            env.text("alice", "bob", &format!("c{i}"), &format!("m{i}"))
                .await,
        );
    }
    env.text("alice", "carol", "other", "not for bob").await;

    let page1 = env.chat.backlog("bob", None, 3).expect("backlog");
    let got: Vec<_> = page1.iter().filter_map(|o| o.queue_id.clone()).collect();
    assert_eq!(got, ids[..3]);
    assert!(page1
        .iter()
        .all(|o| o.user == "bob" && o.channel.topic(&o.user) == "user/bob/inbox"));
    // The backlog payload is the same bytes as the live delivery.
    assert_eq!(page1[0].payload, env.delivered(8)[0].payload);

    let page2 = env.chat.backlog("bob", Some(&ids[2]), 3).expect("backlog");
    let got: Vec<_> = page2.iter().filter_map(|o| o.queue_id.clone()).collect();
    assert_eq!(got, ids[3..6]);
    let page3 = env.chat.backlog("bob", Some(&ids[5]), 3).expect("backlog");
    assert_eq!(page3.len(), 1);
    assert!(env
        .chat
        .backlog("bob", Some(&ids[6]), 3)
        .expect("backlog")
        .is_empty());
    assert_eq!(
        env.chat.backlog("carol", None, 10).expect("backlog").len(),
        1
    );
    assert!(env
        .chat
        .backlog("alice", None, 10)
        .expect("backlog")
        .is_empty());
    assert!(env
        .chat
        .backlog("bob", None, 0)
        .expect("backlog")
        .is_empty());
    assert!(env
        .chat
        .backlog("b/ob", None, 10)
        .expect("backlog")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_stops_at_the_watermark() {
    let env = Env::new(&["alice", "bob"]);
    let first = env.text("alice", "bob", "c0", "committed").await;
    env.store.close_gate();
    let chat = env.chat.clone();
    let pending = tokio::spawn(async move {
        chat.send(
            "alice",
            br#"{"cid":"c1","to":"bob","type":"text","text":"in flight"}"#,
        )
        .await
    });
    assert!(wait_until(|| env.store.has(b"k/alice/c1")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Applied but not flushed: the queue entry exists (held in memory, named by its batch's
    // list of held entries in the store), the backlog does not show it.
    let lists = env
        .store
        .scan(b"x/held/", b"x/held0", false, 10)
        .expect("scan");
    assert_eq!(lists.len(), 2);
    let backlog = env.chat.backlog("bob", None, 10).expect("backlog");
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].queue_id.as_deref(), Some(first.as_str()));
    // History does not show it either.
    let h = env
        .rpc(
            "bob",
            serde_json::json!({"rid":"r","op":"history","with":"alice"}),
        )
        .await;
    assert_eq!(h["result"]["messages"].as_array().map(Vec::len), Some(1));
    env.store.open_gate();
    pending.await.expect("join");
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 2);
}

#[tokio::test]
async fn acked_removes_from_the_queue() {
    let env = Env::new(&["alice", "bob"]);
    let a = env.text("alice", "bob", "c0", "one").await;
    let b = env.text("alice", "bob", "c1", "two").await;
    env.chat.acked("bob", &a).expect("acked");
    let left: Vec<_> = env
        .chat
        .backlog("bob", None, 10)
        .expect("backlog")
        .into_iter()
        .filter_map(|o| o.queue_id)
        .collect();
    assert_eq!(left, vec![b.clone()]);
    // Acking twice, someone else's id, or junk is harmless.
    env.chat.acked("bob", &a).expect("acked");
    env.chat.acked("alice", &b).expect("acked");
    env.chat.acked("bob", "junk").expect("acked");
    env.chat.acked("../x", &b).expect("acked");
    assert_eq!(env.chat.backlog("bob", None, 10).expect("backlog").len(), 1);
    env.chat.acked("bob", &b).expect("acked");
    assert!(env
        .chat
        .backlog("bob", None, 10)
        .expect("backlog")
        .is_empty());
    // The message itself stays in history.
    let h = env
        .rpc(
            "bob",
            serde_json::json!({"rid":"r","op":"history","with":"alice"}),
        )
        .await;
    assert_eq!(h["result"]["messages"].as_array().map(Vec::len), Some(2));
}
