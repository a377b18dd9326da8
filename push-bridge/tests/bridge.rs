//! The worker's rules, against both fakes: jobs pending before start are sent (restart), no
//! push for a user who is online or already got the messages, jobs of users without tokens
//! are deleted, every token of a user gets one notification, concurrency is bounded, a
//! shutdown while waiting to retry leaves the jobs for the next start, and two workers sharing
//! a store (through claims) push each group once.

mod common;
mod fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_embedded::keys;
use chatd_kv::Op;
use chatd_push_bridge::{Adapters, BridgeSettings, Platform};
use common::*;
use fake::{FakeApns, FakeFcm, Reply};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pending_before_start_are_sent() {
    let fcm = FakeFcm::start().await;
    let store = TestStore::new();
    // A first run that never gets to push: window far in the future.
    let long = BridgeSettings {
        collapse_window: Duration::from_secs(3600),
        ..settings()
    };
    let first = bridge(
        &store,
        long.clone(),
        adapters(Some(&fcm), None, &long),
        Arc::default(),
    );
    first
        .tokens()
        .register("bob", None, Platform::Fcm, "tok-bob")
        .unwrap();
    store.message("alice", "bob", "one");
    store.message("alice", "bob", "two");
    first.wake();
    fcm.no_more_than(0, Duration::from_millis(500)).await;
    first.shutdown().await;
    drop(first);
    assert_eq!(store.jobs(), 2);

    // The next start (jobs older than its window) sends them, collapsed.
    let s = settings();
    let second = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    let pushes = fcm.wait_pushes(1).await;
    wait_no_jobs(&store).await;
    assert_eq!(pushes[0].body["message"]["data"]["unread"], "2");
    fcm.no_more_than(1, Duration::from_millis(500)).await;
    fcm.assert_clean();
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_users_and_delivered_messages_get_no_push() {
    let fcm = FakeFcm::start().await;
    let store = TestStore::new();
    let online = Arc::new(Online::default());
    let s = settings();
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        online.clone(),
    );
    b.tokens()
        .register("bob", None, Platform::Fcm, "tok-bob")
        .unwrap();
    b.tokens()
        .register("carol", None, Platform::Fcm, "tok-carol")
        .unwrap();
    // Bob came online before the job was due.
    online.set("bob", true);
    store.message("alice", "bob", "x");
    // Carol came and went, and received the message (it left her queue).
    let id = store.message("alice", "carol", "x");
    store
        .store
        .apply(vec![Op::Delete(
            format!("{}{id}", keys::queue_prefix("carol")).into_bytes(),
        )])
        .unwrap();
    b.wake();
    wait_no_jobs(&store).await;
    let s = wait_stats(&b, |s| s.skipped == 2).await;
    assert_eq!(s.sent, 0);
    fcm.no_more_than(0, Duration::from_millis(300)).await;

    // Offline again: the next message is pushed.
    online.set("bob", false);
    store.message("alice", "bob", "y");
    b.wake();
    let pushes = fcm.wait_pushes(1).await;
    assert_eq!(pushes[0].token, "tok-bob");
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_without_tokens_are_deleted_and_each_device_gets_one() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let store = TestStore::new();
    let s = settings();
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), Some(&apns), &s),
        Arc::default(),
    );
    store.message("alice", "nobody", "x");
    b.tokens()
        .register("bob", Some("android"), Platform::Fcm, "tok-android")
        .unwrap();
    b.tokens()
        .register("bob", Some("iphone"), Platform::Apns, &apns_token(9))
        .unwrap();
    store.message("alice", "bob", "x");
    b.wake();
    fcm.wait_pushes(1).await;
    apns.wait_pushes(1).await;
    wait_no_jobs(&store).await;
    assert_eq!(b.stats().sent, 2);
    fcm.assert_clean();
    apns.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_an_unconfigured_platform_are_dropped() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let store = TestStore::new();
    let s = settings();
    // Registered while APNs was configured ...
    let both = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), Some(&apns), &s),
        Arc::default(),
    );
    both.tokens()
        .register("bob", None, Platform::Apns, &apns_token(3))
        .unwrap();
    both.shutdown().await;
    // ... then APNs was taken out of the configuration.
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    store.message("alice", "bob", "x");
    b.wake();
    wait_stats(&b, |s| s.dropped == 1).await;
    wait_no_jobs(&store).await;
    assert!(apns.pushes().is_empty());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let fcm = FakeFcm::start().await;
    let store = TestStore::new();
    let s = BridgeSettings {
        concurrency: 2,
        ..settings()
    };
    fcm.set_delay(Duration::from_millis(300));
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    let old = now_ms() - 10_000;
    for i in 0..8 {
        let user = format!("u{i}");
        b.tokens()
            .register(&user, None, Platform::Fcm, &format!("tok-{i}"))
            .unwrap();
        store.message_at("alice", &user, "x", old);
    }
    let start = Instant::now();
    b.wake();
    wait_stats(&b, |s| s.sent == 8).await;
    // 8 requests of 300 ms, two at a time: at least 4 rounds.
    assert!(
        start.elapsed() >= Duration::from_millis(1150),
        "{:?}",
        start.elapsed()
    );
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_waiting_to_retry_keeps_the_jobs() {
    let fcm = FakeFcm::start().await;
    let store = TestStore::new();
    let s = settings();
    fcm.script(
        "tok-bob",
        vec![Reply::new(
            503,
            json!({"error": {"code": 503, "status": "UNAVAILABLE"}}),
        )
        .retry_after(30)],
    );
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    b.tokens()
        .register("bob", None, Platform::Fcm, "tok-bob")
        .unwrap();
    store.message("alice", "bob", "x");
    b.wake();
    wait_stats(&b, |s| s.retried == 1).await;
    let stopping = Instant::now();
    b.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited for the retry"
    );
    assert_eq!(store.jobs(), 1);

    let again = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    fcm.wait_pushes(2).await;
    wait_stats(&again, |s| s.sent == 1).await;
    wait_no_jobs(&store).await;
    fcm.assert_clean();
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_name_the_group() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let store = TestStore::new();
    let s = settings();
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), Some(&apns), &s),
        Arc::default(),
    );
    b.tokens()
        .register("bob", Some("a"), Platform::Fcm, "tok-bob")
        .unwrap();
    b.tokens()
        .register("bob", Some("i"), Platform::Apns, &apns_token(7))
        .unwrap();
    store.group_message("alice", "g_7f3a", "bob");
    b.wake();
    let android = fcm.wait_pushes(1).await;
    let ios = apns.wait_pushes(1).await;
    let m = &android[0].body["message"];
    assert_eq!(m["data"]["group"], "g_7f3a");
    assert_eq!(m["data"]["conversation"], "g:g_7f3a");
    assert!(
        m["data"].get("kind").is_none(),
        "the type is content: preview only"
    );
    assert_eq!(m["notification"]["title"], "alice in g_7f3a");
    assert_eq!(ios[0].body["group"], "g_7f3a");
    assert_eq!(ios[0].body["aps"]["alert"]["title"], "alice in g_7f3a");
    wait_no_jobs(&store).await;
    fcm.assert_clean();
    apns.assert_clean();
    b.shutdown().await;
}

#[test]
fn adapters_report_their_platforms() {
    assert!(Adapters::default().platforms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_a_store_push_each_group_once() {
    let fcm = FakeFcm::start().await;
    // Slow answers keep each group claimed while the other worker looks for work.
    fcm.set_delay(Duration::from_millis(200));
    let store = TestStore::new();
    let s = settings();
    let push = Arc::new(chatd_embedded::push::EmbeddedPush::new(store.store.clone()));
    let start = || {
        chatd_push_bridge::PushBridge::start(
            push.clone(),
            push.clone(),
            s.clone(),
            adapters(Some(&fcm), None, &s),
            Arc::new(Online::default()),
        )
    };
    let (a, b) = (start(), start());
    for i in 0..6 {
        let user = format!("u{i}");
        a.tokens()
            .register(&user, None, Platform::Fcm, &format!("tok-{i}"))
            .unwrap();
        store.message("alice", &user, "hi");
    }
    a.wake();
    b.wake();
    fcm.wait_pushes(6).await;
    wait_no_jobs(&store).await;
    fcm.no_more_than(6, Duration::from_millis(800)).await;
    let sent = a.stats().sent + b.stats().sent;
    assert_eq!(sent, 6, "{:?} {:?}", a.stats(), b.stats());
    fcm.assert_clean();
    a.shutdown().await;
    b.shutdown().await;
}
