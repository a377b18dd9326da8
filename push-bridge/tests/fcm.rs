//! The bridge against a fake FCM that checks every request: OAuth exchange (assertion signed
//! with the service account key, claims checked) done once for many sends, payloads without
//! text (and with a preview when configured), collapse, token deletion on each error, retries
//! honouring `Retry-After`.

mod common;
mod fake;

use std::sync::Arc;
use std::time::Duration;

use chatd_push_bridge::payload::collapse_id;
use chatd_push_bridge::{BridgeSettings, Platform};
use common::*;
use fake::{FakeFcm, Reply};
use serde_json::json;

async fn setup(s: BridgeSettings) -> (FakeFcm, TestStore, Arc<chatd_push_bridge::PushBridge>) {
    let fcm = FakeFcm::start().await;
    let store = TestStore::new();
    let b = bridge(
        &store,
        s.clone(),
        adapters(Some(&fcm), None, &s),
        Arc::default(),
    );
    (fcm, store, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exchange_for_many_sends_and_no_text() {
    let (fcm, store, b) = setup(settings()).await;
    for i in 0..5 {
        let user = format!("user{i}");
        b.tokens()
            .register(&user, Some("phone"), Platform::Fcm, &format!("tok-{i}"))
            .unwrap();
        store.message("alice", &user, "the secret text");
    }
    let pushes = fcm.wait_pushes(5).await;
    wait_no_jobs(&store).await;
    assert_eq!(fcm.exchanges(), 1, "the access token is cached");
    for p in &pushes {
        assert_eq!(p.bearer, "ya29.fake-1");
        let text = p.body.to_string();
        assert!(!text.contains("secret"), "content leaked: {text}");
        let m = &p.body["message"];
        let user = format!("user{}", p.token.trim_start_matches("tok-"));
        let conversation = format!("d:alice:{user}");
        assert_eq!(m["data"]["from"], "alice");
        assert_eq!(m["data"]["conversation"], conversation.as_str());
        assert_eq!(m["data"]["unread"], "1");
        assert!(m["data"].get("text").is_none());
        assert_eq!(
            m["notification"],
            json!({"title": "alice", "body": "1 new message"})
        );
        assert_eq!(
            m["android"]["collapse_key"],
            collapse_id(&conversation).as_str()
        );
        assert_eq!(
            m["apns"]["headers"]["apns-collapse-id"],
            collapse_id(&conversation).as_str()
        );
    }
    let s = b.stats();
    assert_eq!((s.sent, s.failed, s.retried, s.dropped), (5, 0, 0, 0));
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_when_configured() {
    let s = BridgeSettings {
        previews: true,
        ..settings()
    };
    let (fcm, store, b) = setup(s).await;
    b.tokens()
        .register("bob", None, Platform::Fcm, "tok-bob")
        .unwrap();
    store.message("alice", "bob", "see you at 8");
    let pushes = fcm.wait_pushes(1).await;
    let m = &pushes[0].body["message"];
    assert_eq!(m["data"]["text"], "see you at 8");
    assert_eq!(m["notification"]["body"], "see you at 8");
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_messages_collapse_into_one_push() {
    let s = BridgeSettings {
        collapse_window: Duration::from_millis(1500),
        ..settings()
    };
    let (fcm, store, b) = setup(s).await;
    b.tokens()
        .register("bob", None, Platform::Fcm, "tok-bob")
        .unwrap();
    let mut last = String::new();
    for i in 0..4 {
        last = store.message("alice", "bob", &format!("m{i}"));
        b.wake();
    }
    let pushes = fcm.wait_pushes(1).await;
    wait_no_jobs(&store).await;
    fcm.no_more_than(1, Duration::from_millis(800)).await;
    let data = &pushes[0].body["message"]["data"];
    assert_eq!(data["unread"], "4");
    assert_eq!(data["id"], last.as_str());
    assert_eq!(
        pushes[0].body["message"]["notification"]["body"],
        "4 new messages"
    );
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_are_deleted_others_kept() {
    let (fcm, store, b) = setup(settings()).await;
    let unregistered = json!({"error": {"code": 404, "message": "Requested entity was not found.",
        "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "UNREGISTERED"}]}});
    let bad_token = json!({"error": {"code": 400,
        "message": "The registration token is not a valid FCM registration token",
        "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "INVALID_ARGUMENT"}]}});
    let other_400 = json!({"error": {"code": 400, "message": "Invalid JSON payload received.",
        "status": "INVALID_ARGUMENT"}});
    fcm.script("tok-gone", vec![Reply::new(404, unregistered)]);
    fcm.script("tok-bad", vec![Reply::new(400, bad_token)]);
    fcm.script("tok-odd", vec![Reply::new(400, other_400)]);
    for (user, token) in [("u1", "tok-gone"), ("u2", "tok-bad"), ("u3", "tok-odd")] {
        b.tokens()
            .register(user, None, Platform::Fcm, token)
            .unwrap();
        store.message("alice", user, "x");
    }
    fcm.wait_pushes(3).await;
    let s = wait_stats(&b, |s| s.failed == 3).await;
    assert_eq!(s.tokens_deleted, 2);
    assert!(b.tokens().list("u1").unwrap().is_empty());
    assert!(b.tokens().list("u2").unwrap().is_empty());
    assert_eq!(
        b.tokens().list("u3").unwrap().len(),
        1,
        "a 400 about the request keeps the token"
    );
    assert_eq!(b.tokens().owner("tok-gone").unwrap(), None);
    wait_no_jobs(&store).await;
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_retry_after_on_429_and_back_off_on_5xx() {
    let (fcm, store, b) = setup(settings()).await;
    let quota = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}});
    let down = json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "down"}});
    fcm.script("tok-429", vec![Reply::new(429, quota).retry_after(2)]);
    fcm.script(
        "tok-503",
        vec![Reply::new(503, down.clone()), Reply::new(503, down)],
    );
    b.tokens()
        .register("u1", None, Platform::Fcm, "tok-429")
        .unwrap();
    b.tokens()
        .register("u2", None, Platform::Fcm, "tok-503")
        .unwrap();
    store.message("alice", "u1", "x");
    store.message("alice", "u2", "x");
    let pushes = fcm.wait_pushes(5).await;
    let s = wait_stats(&b, |s| s.sent == 2).await;
    assert_eq!((s.retried, s.failed, s.dropped), (3, 0, 0));
    let times = |t: &str| -> Vec<_> {
        pushes
            .iter()
            .filter(|p| p.token == t)
            .map(|p| p.at)
            .collect()
    };
    let a = times("tok-429");
    assert_eq!(a.len(), 2);
    assert!(
        a[1] - a[0] >= Duration::from_millis(1900),
        "Retry-After ignored: {:?}",
        a[1] - a[0]
    );
    let c = times("tok-503");
    assert_eq!(c.len(), 3);
    assert!(
        c[1] - c[0] >= Duration::from_millis(100),
        "no backoff: {:?}",
        c[1] - c[0]
    );
    assert!(
        c[2] - c[1] >= Duration::from_millis(200),
        "backoff does not grow: {:?}",
        c[2] - c[1]
    );
    wait_no_jobs(&store).await;
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_retries() {
    let s = BridgeSettings {
        max_retries: 2,
        ..settings()
    };
    let (fcm, store, b) = setup(s).await;
    let down = Reply::new(500, json!({"error": {"code": 500, "status": "INTERNAL"}}));
    fcm.script(
        "tok-x",
        vec![down.clone(), down.clone(), down.clone(), down],
    );
    b.tokens()
        .register("u1", None, Platform::Fcm, "tok-x")
        .unwrap();
    store.message("alice", "u1", "x");
    let s = wait_stats(&b, |s| s.dropped == 1).await;
    assert_eq!((s.sent, s.retried), (0, 2));
    assert_eq!(fcm.pushes().len(), 3);
    wait_no_jobs(&store).await;
    assert_eq!(
        b.tokens().list("u1").unwrap().len(),
        1,
        "a server error never deletes the token"
    );
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_is_exchanged_again() {
    let (fcm, store, b) = setup(settings()).await;
    b.tokens()
        .register("u1", None, Platform::Fcm, "tok-1")
        .unwrap();
    store.message("alice", "u1", "x");
    fcm.wait_pushes(1).await;
    // The server stops accepting the cached token: 401, one new exchange, then sent.
    fcm.revoke_tokens();
    store.message("alice", "u1", "y");
    b.wake();
    let pushes = fcm.wait_pushes(2).await;
    wait_stats(&b, |s| s.sent == 2).await;
    assert_eq!(fcm.exchanges(), 2);
    assert_eq!(pushes[1].bearer, "ya29.fake-2");
    fcm.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_is_renewed_shortly_before_it_expires() {
    let (fcm, store, b) = setup(settings()).await;
    // A 2 s token is replaced after 1 s (half its life; long-lived ones 5 minutes early).
    fcm.set_expires_in(2);
    b.tokens()
        .register("u1", None, Platform::Fcm, "tok-1")
        .unwrap();
    store.message("alice", "u1", "x");
    fcm.wait_pushes(1).await;
    assert_eq!(fcm.exchanges(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    store.message("alice", "u1", "y");
    b.wake();
    let pushes = fcm.wait_pushes(2).await;
    assert_eq!(fcm.exchanges(), 2, "the token was used until it expired");
    assert_eq!(pushes[1].bearer, "ya29.fake-2");
    fcm.assert_clean();
    b.shutdown().await;
}
