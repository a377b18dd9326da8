//! The bridge against a fake APNs over cleartext HTTP/2 that checks every request: the ES256
//! provider JWT (signature with the key's public half, `kid`, `iss`, `iat`) reused across
//! requests, the `apns-*` headers, the payload (no text unless previews are on), token deletion
//! on 410 / `BadDeviceToken` / `DeviceTokenNotForTopic`, and retries on 429 and 5xx.

mod common;
mod fake;

use std::sync::Arc;
use std::time::Duration;

use chatd_push_bridge::payload::collapse_id;
use chatd_push_bridge::{BridgeSettings, Platform};
use common::*;
use fake::{FakeApns, Reply};
use serde_json::json;

async fn setup(s: BridgeSettings) -> (FakeApns, TestStore, Arc<chatd_push_bridge::PushBridge>) {
    let apns = FakeApns::start().await;
    let store = TestStore::new();
    let b = bridge(
        &store,
        s.clone(),
        adapters(None, Some(&apns), &s),
        Arc::default(),
    );
    (apns, store, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_is_reused_and_headers_and_payload_are_right() {
    let (apns, store, b) = setup(settings()).await;
    for i in 0..4u8 {
        let user = format!("user{i}");
        b.tokens()
            .register(&user, Some("iphone"), Platform::Apns, &apns_token(i))
            .unwrap();
        store.message("alice", &user, "the secret text");
    }
    let pushes = apns.wait_pushes(4).await;
    apns.assert_clean();
    assert!(
        pushes.iter().all(|p| p.bearer == pushes[0].bearer),
        "provider token not reused"
    );
    for p in &pushes {
        let i = u8::from_str_radix(&p.token[..2], 16).unwrap();
        let conversation = format!("d:alice:user{i}");
        assert_eq!(p.headers["apns-collapse-id"], collapse_id(&conversation));
        let text = p.body.to_string();
        assert!(!text.contains("secret"), "content leaked: {text}");
        assert_eq!(
            p.body["aps"]["alert"],
            json!({"title": "alice", "body": "1 new message"})
        );
        assert_eq!(
            p.body["aps"]["thread-id"],
            collapse_id(&conversation).as_str()
        );
        assert_eq!(p.body["from"], "alice");
        assert_eq!(p.body["conversation"], conversation.as_str());
        assert_eq!(p.body["unread"], 1);
    }
    wait_no_jobs(&store).await;
    assert_eq!(b.stats().sent, 4);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_collapse() {
    let s = BridgeSettings {
        previews: true,
        collapse_window: Duration::from_millis(1200),
        ..settings()
    };
    let (apns, store, b) = setup(s).await;
    b.tokens()
        .register("bob", None, Platform::Apns, &apns_token(1))
        .unwrap();
    store.message("alice", "bob", "first");
    store.message("alice", "bob", "second and newest");
    b.wake();
    let pushes = apns.wait_pushes(1).await;
    wait_no_jobs(&store).await;
    apns.no_more_than(1, Duration::from_millis(500)).await;
    assert_eq!(pushes[0].body["aps"]["alert"]["body"], "second and newest");
    assert_eq!(pushes[0].body["unread"], 2);
    apns.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_tokens_are_deleted() {
    let (apns, store, b) = setup(settings()).await;
    let cases = [
        (1u8, 410, "Unregistered", true),
        (2, 400, "BadDeviceToken", true),
        (3, 400, "DeviceTokenNotForTopic", true),
        (4, 400, "BadCollapseId", false),
    ];
    for (seed, status, reason, _) in cases {
        apns.script(
            &apns_token(seed),
            vec![Reply::new(status, json!({"reason": reason}))],
        );
        let user = format!("u{seed}");
        b.tokens()
            .register(&user, None, Platform::Apns, &apns_token(seed))
            .unwrap();
        store.message("alice", &user, "x");
    }
    apns.wait_pushes(4).await;
    let s = wait_stats(&b, |s| s.failed == 4).await;
    assert_eq!(s.tokens_deleted, 3);
    for (seed, status, reason, deleted) in cases {
        let left = b.tokens().list(&format!("u{seed}")).unwrap().len();
        assert_eq!(left, usize::from(!deleted), "{status} {reason}");
    }
    wait_no_jobs(&store).await;
    apns.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_429_with_retry_after_and_on_500() {
    let (apns, store, b) = setup(settings()).await;
    apns.script(
        &apns_token(1),
        vec![Reply::new(429, json!({"reason": "TooManyRequests"})).retry_after(1)],
    );
    apns.script(
        &apns_token(2),
        vec![Reply::new(500, json!({"reason": "InternalServerError"}))],
    );
    b.tokens()
        .register("u1", None, Platform::Apns, &apns_token(1))
        .unwrap();
    b.tokens()
        .register("u2", None, Platform::Apns, &apns_token(2))
        .unwrap();
    store.message("alice", "u1", "x");
    store.message("alice", "u2", "x");
    let pushes = apns.wait_pushes(4).await;
    let s = wait_stats(&b, |s| s.sent == 2).await;
    assert_eq!((s.retried, s.failed, s.dropped), (2, 0, 0));
    let at: Vec<_> = pushes
        .iter()
        .filter(|p| p.token == apns_token(1))
        .map(|p| p.at)
        .collect();
    assert!(
        at[1] - at[0] >= Duration::from_millis(950),
        "Retry-After ignored: {:?}",
        at[1] - at[0]
    );
    wait_no_jobs(&store).await;
    apns.assert_clean();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_provider_token_is_signed_again() {
    let (apns, store, b) = setup(settings()).await;
    apns.script(
        &apns_token(1),
        vec![Reply::new(403, json!({"reason": "ExpiredProviderToken"}))],
    );
    b.tokens()
        .register("u1", None, Platform::Apns, &apns_token(1))
        .unwrap();
    store.message("alice", "u1", "x");
    let pushes = apns.wait_pushes(2).await;
    wait_stats(&b, |s| s.sent == 1).await;
    assert_ne!(
        pushes[0].bearer, pushes[1].bearer,
        "a new provider token after ExpiredProviderToken"
    );
    apns.assert_clean();
    b.shutdown().await;
}
