//! Push notifications end to end: the real chatd binary with `[push]` pointing at local fake
//! FCM and APNs servers that check every request. Tokens are registered over MQTT
//! (`push.register` on `chat/{me}/rpc`); a message to a user with no device online wakes
//! each of its devices once, without the text; nothing is pushed while a device is online;
//! a burst becomes one push; a job pending at shutdown is pushed after the restart; a token
//! moves to another user once its holder logged out (what a token's holder keeps is in
//! `tests/push_tokens.rs`); bad requests are refused.

use crate::support;

use crate::fake;

use crate::support::push_kit;

use std::time::Duration;

use fake::{FakeApns, FakeFcm};
use push_kit::*;
use serde_json::{json, Value};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_user_is_woken_on_every_device_without_text_and_online_user_is_not() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "collapse_window_ms = 300");
    let ios_token = "ab".repeat(32);
    register(&s, "bob", "bob:android", "fcm", "fcm-bob-android").await;
    register(&s, "bob", "bob:iphone", "apns", &ios_token).await;

    let mut alice = alice(&s).await;
    let id = send(&mut alice, "bob", "meet me at the secret place").await;
    let pushes = fcm.wait_pushes(1).await;
    let m = &pushes[0].body["message"];
    assert_eq!(pushes[0].token, "fcm-bob-android");
    assert_eq!(m["data"]["from"], "alice");
    assert_eq!(m["data"]["conversation"], "d:alice:bob");
    assert_eq!(m["data"]["unread"], "1");
    assert_eq!(m["data"]["id"], id.as_str());
    let ios = apns.wait_pushes(1).await;
    assert_eq!(ios[0].token, ios_token);
    assert_eq!(ios[0].body["from"], "alice");
    assert_eq!(ios[0].body["unread"], 1);
    for body in [&pushes[0].body, &ios[0].body] {
        assert!(!body.to_string().contains("secret"), "text leaked: {body}");
    }
    wait_metric(&s, "chatd_push_sent_total", 2);

    // A device of bob's is online: messages are delivered, nothing is pushed.
    let mut bob = online(&s, "bob:android", "bob").await;
    send(&mut alice, "bob", "are you there").await;
    let delivered = bob.next_on("user/bob/inbox").await;
    assert_eq!(delivered["from"], "alice");
    fcm.no_more_than(1, Duration::from_millis(1500)).await;
    apns.no_more_than(1, Duration::from_millis(10)).await;
    assert_eq!(metric(&s, "chatd_push_sent_total"), 2);
    for name in ["failed", "retried", "dropped"] {
        assert_eq!(metric(&s, &format!("chatd_push_{name}_total")), 0);
    }
    fcm.assert_clean();
    apns.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_becomes_one_push() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "collapse_window_ms = 4000");
    register(&s, "bob", "bob:android", "fcm", "fcm-bob").await;
    let mut alice = alice(&s).await;
    let mut last = String::new();
    for i in 0..4 {
        last = send(&mut alice, "bob", &format!("part {i}")).await;
    }
    let pushes = fcm.wait_pushes(1).await;
    fcm.no_more_than(1, Duration::from_millis(1500)).await;
    let data = &pushes[0].body["message"]["data"];
    assert_eq!(data["unread"], "4");
    assert_eq!(data["id"], last.as_str());
    fcm.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pending_at_shutdown_is_pushed_after_restart() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let mut s = start(&fcm, &apns, "collapse_window_ms = 600000");
    register(&s, "bob", "bob:android", "fcm", "fcm-bob").await;
    let mut alice = alice(&s).await;
    send(&mut alice, "bob", "while you were away").await;
    drop(alice);
    fcm.no_more_than(0, Duration::from_millis(800)).await;
    assert!(s.stop().success());

    // Same store, a short window now: the job left by the first run is due at once.
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    let config = config.replace("collapse_window_ms = 600000", "collapse_window_ms = 300");
    std::fs::write(s.config_path(), config).unwrap();
    s.restart();
    let pushes = fcm.wait_pushes(1).await;
    assert_eq!(pushes[0].body["message"]["data"]["from"], "alice");
    fcm.no_more_than(1, Duration::from_millis(800)).await;
    fcm.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_moves_after_its_holder_logs_out() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "collapse_window_ms = 200");
    register(&s, "bob", "bob:tablet", "fcm", "fcm-shared-tablet").await;
    // The tablet changes hands: bob logs out (the app unregisters its token), carol logs in
    // on it and registers the same token.
    let mut bob = online(&s, "bob:tablet", "bob").await;
    let reply = bob
        .rpc(
            "bob",
            json!({"rid": "u0", "op": "push.unregister", "token": "fcm-shared-tablet"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    bob.disconnect().await;
    wait_offline(&s, "bob");
    register(&s, "carol", "carol:tablet", "fcm", "fcm-shared-tablet").await;
    let mut alice = alice(&s).await;
    send(&mut alice, "bob", "for bob").await;
    send(&mut alice, "carol", "for carol").await;
    let pushes = fcm.wait_pushes(1).await;
    fcm.no_more_than(1, Duration::from_millis(1200)).await;
    assert_eq!(pushes[0].token, "fcm-shared-tablet");
    assert_eq!(
        pushes[0].body["message"]["data"]["conversation"],
        "d:alice:carol"
    );

    // Unregistered: no more pushes to it.
    let mut carol = online(&s, "carol:tablet", "carol").await;
    let reply = carol
        .rpc(
            "carol",
            json!({"rid": "u1", "op": "push.unregister", "token": "fcm-shared-tablet"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    carol.disconnect().await;
    wait_offline(&s, "carol");
    send(&mut alice, "carol", "again").await;
    fcm.no_more_than(1, Duration::from_millis(1200)).await;
    fcm.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_requests_are_refused() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "");
    let mut bob = online(&s, "bob:phone", "bob").await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"op": "push.register", "platform": "fcm", "token": "t"}),
            "bad_request",
            "rid",
        ),
        (
            json!({"rid": "b1", "op": "push.register", "platform": "gcm", "token": "t"}),
            "bad_request",
            "platform",
        ),
        (
            json!({"rid": "b2", "op": "push.register", "token": "t"}),
            "bad_request",
            "platform",
        ),
        (
            json!({"rid": "b3", "op": "push.register", "platform": "fcm"}),
            "bad_request",
            "token",
        ),
        (
            json!({"rid": "b4", "op": "push.register", "platform": "fcm", "token": "has space"}),
            "bad_request",
            "token",
        ),
        (
            json!({"rid": "b5", "op": "push.register", "platform": "apns", "token": "not-hex"}),
            "bad_request",
            "token",
        ),
        (
            json!({"rid": "b6", "op": "push.register", "platform": "fcm", "token": "x".repeat(5000)}),
            "too_large",
            "token",
        ),
        (
            json!({"rid": "b7", "op": "push.register", "platform": "fcm", "token": 12}),
            "bad_request",
            "token",
        ),
        (
            json!({"rid": "b8", "op": "push.register", "platform": "fcm", "token": "t", "user": "carol"}),
            "bad_request",
            "user",
        ),
        (
            json!({"rid": "b9", "op": "push.unregister"}),
            "bad_request",
            "token",
        ),
    ];
    for (req, code, mentions) in cases {
        bob.publish_json("chat/bob/rpc", &req).await;
        let reply = match req.get("rid") {
            Some(rid) => bob.next_where("user/bob/rpc", "rid", rid).await,
            None => bob.next_on("user/bob/rpc").await,
        };
        assert_eq!(reply["ok"], false, "{req}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{req}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{req}: {reply}");
    }
    // Nothing was stored: a message to bob (offline) pushes nothing.
    bob.disconnect().await;
    wait_offline(&s, "bob");
    let mut alice = alice(&s).await;
    send(&mut alice, "bob", "hello").await;
    fcm.no_more_than(0, Duration::from_millis(3000)).await;
    apns.no_more_than(0, Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_config_requests_are_refused_and_bad_keys_stop_the_start() {
    let s = Server::start();
    s.add_user("bob", "bob-pw");
    let mut bob = online(&s, "bob", "bob").await;
    let reply = bob
        .rpc(
            "bob",
            json!({"rid": "n1", "op": "push.register", "platform": "fcm", "token": "t"}),
        )
        .await;
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{reply}"
    );

    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let err = Server::try_start_custom(|dir| {
        let text = push_config(dir, &fcm, &apns, "");
        std::fs::write(dir.join("AuthKey.p8"), "not a key").unwrap();
        text
    })
    .err()
    .expect("chatd started with a broken APNs key");
    assert!(err.contains("push.apns.key_file"), "{err}");
    let err = Server::try_start_custom(|dir| {
        let text = push_config(dir, &fcm, &apns, "");
        std::fs::remove_file(dir.join("service-account.json")).unwrap();
        text
    })
    .err()
    .expect("chatd started without its service account file");
    assert!(err.contains("push.fcm.service_account"), "{err}");
}
