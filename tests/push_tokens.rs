//! A push token stays with the user who holds it (issue 12, item 14): another user who
//! registers it — having read it somewhere — is refused and gets none of the holder's
//! notifications. The token moves only when the holder lets it go: unregisters it (the app does
//! at logout), the holder's account is removed, or the push service reports it dead. The same
//! user may register it from another device.

use crate::support;

use crate::fake;

use crate::support::push_kit;

use std::time::Duration;

use fake::{FakeApns, FakeFcm, Reply};
use push_kit::*;
use serde_json::{json, Value};
use support::*;

/// `push.register` of `token` (FCM) from `client_id` of `user`: the reply.
async fn try_register(s: &Server, user: &str, client_id: &str, token: &str) -> Value {
    let mut c = online(s, client_id, user).await;
    let reply = c
        .rpc(
            user,
            json!({"rid": unique("r"), "op": "push.register", "platform": "fcm", "token": token}),
        )
        .await;
    c.disconnect().await;
    wait_offline(s, user);
    reply
}

fn assert_held_by_other(reply: &Value) {
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("another account"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stays_with_its_holder() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "collapse_window_ms = 200");
    register(&s, "bob", "bob:phone", "fcm", "fcm-bobs-phone").await;

    // carol learnt bob's token and registers it, from any client id: refused.
    for client_id in ["carol", "carol:phone"] {
        assert_held_by_other(&try_register(&s, "carol", client_id, "fcm-bobs-phone").await);
    }
    // bob's notifications still go to bob's phone, and carol's go nowhere.
    let mut alice = alice(&s).await;
    send(&mut alice, "carol", "for carol").await;
    send(&mut alice, "bob", "for bob").await;
    let pushes = fcm.wait_pushes(1).await;
    fcm.no_more_than(1, Duration::from_millis(1500)).await;
    assert_eq!(pushes[0].token, "fcm-bobs-phone");
    assert_eq!(
        pushes[0].body["message"]["data"]["conversation"],
        "d:alice:bob"
    );

    // bob registers it again from another device: it moves within bob.
    register(&s, "bob", "bob:tablet", "fcm", "fcm-bobs-phone").await;
    assert_held_by_other(&try_register(&s, "carol", "carol:phone", "fcm-bobs-phone").await);
    send(&mut alice, "bob", "still for bob").await;
    let pushes = fcm.wait_pushes(2).await;
    assert_eq!(pushes[1].token, "fcm-bobs-phone");
    assert_eq!(
        pushes[1].body["message"]["data"]["conversation"],
        "d:alice:bob"
    );
    fcm.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_token_or_a_removed_account_frees_it() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let s = start(&fcm, &apns, "collapse_window_ms = 200");

    // FCM says the token is dead: chatd deletes it, and it may be registered by someone else.
    let unregistered = json!({"error": {"code": 404, "message": "Requested entity was not found.",
        "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "UNREGISTERED"}]}});
    fcm.script("fcm-dead", vec![Reply::new(404, unregistered)]);
    register(&s, "bob", "bob:old", "fcm", "fcm-dead").await;
    assert_held_by_other(&try_register(&s, "carol", "carol:new", "fcm-dead").await);
    let mut alice = alice(&s).await;
    send(&mut alice, "bob", "to a dead token").await;
    wait_metric(&s, "chatd_push_tokens_deleted_total", 1);
    register(&s, "carol", "carol:new", "fcm", "fcm-dead").await;

    // bob's account is removed: his tokens are free.
    register(&s, "bob", "bob:sold", "fcm", "fcm-sold").await;
    assert_held_by_other(&try_register(&s, "carol", "carol:sold", "fcm-sold").await);
    let (status, body) = s.admin("DELETE", "/admin/users/bob", None);
    assert_eq!(status, 204, "{body}");
    // (From the same device, whose token it replaces: carol has this one token now.)
    register(&s, "carol", "carol:new", "fcm", "fcm-sold").await;
    send(&mut alice, "carol", "for carol").await;
    let pushes = fcm.wait_pushes(2).await;
    assert_eq!(pushes[1].token, "fcm-sold");
    assert_eq!(
        pushes[1].body["message"]["data"]["conversation"],
        "d:alice:carol"
    );
}
