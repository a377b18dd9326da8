//! Typing indicators end to end: `chat/{me}/typing` `{"to":"bob"}` reaches bob's connected
//! devices on `user/bob/typing` as `{"from":"alice"}` at QoS 0, is never stored or queued, is
//! refused on `user/{me}/ack` for bad input, unknown users and too many per second.

use crate::support;

use support::online;

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

/// A server with alice, bob and carol (password `{user}-pw`) and `extra` configuration.
fn server_abc_with(extra: &str) -> Server {
    let s = Server::start_with(extra);
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

fn server_abc() -> Server {
    server_abc_with("")
}

/// Publishes a typing indicator from `me` with the given QoS.
async fn typing(c: &Client, me: &str, payload: &Value, qos: QoS) {
    c.publish_bytes(
        &format!("chat/{me}/typing"),
        qos,
        payload.to_string().into_bytes(),
    )
    .await;
}

/// The next typing indicator `c` gets on `user/{me}/typing`: checks it is exactly
/// `{"from": from}` (the QoS is checked by [`typing_is_delivered_at_qos0`] only).
async fn expect_typing(c: &mut Client, me: &str, from: &str) {
    let topic = format!("user/{me}/typing");
    let p = c.next_publish(&topic).await;
    let v: Value = serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("typing payload not JSON ({e}): {p:?}"));
    assert_eq!(v, json!({"from": from}), "typing payload");
}

/// Checks a typing refusal: exactly `{"typing":true,"error":{"code","message"}}`.
fn assert_typing_error(ack: &Value, code: &str, what: &str) {
    assert_eq!(ack["typing"], true, "{what}: {ack}");
    assert_eq!(ack["error"]["code"], code, "{what}: {ack}");
    assert!(
        ack["error"]["message"].is_string(),
        "{what}: error without message: {ack}"
    );
    let keys: BTreeSet<&str> = ack
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["error", "typing"].into(), "{what}: fields of {ack}");
}

/// The next typing refusal on `user/{me}/ack`.
async fn next_typing_error(c: &mut Client, me: &str) -> Value {
    c.next_where(&format!("user/{me}/ack"), "typing", &json!(true))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_delivered_at_qos0() {
    let s = server_abc();
    let alice = online(&s, "alice", "alice").await;
    // Subscribed at QoS 1 (through `user/bob/#` and directly): typing still comes at QoS 0.
    let mut bob = online(&s, "bob", "bob").await;
    let mut laptop = connect(s.mqtt, "bob:laptop", "bob", "bob-pw").await;
    laptop.subscribe("user/bob/typing", QoS::AtLeastOnce).await;
    let mut bob5 = connect5(s.mqtt, "bob:five", "bob", "bob-pw").await;
    bob5.subscribe("user/bob/#", QoS5::AtLeastOnce).await;
    // Every device is checked before failing, so the message lists each wrong delivery.
    let mut wrong = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        typing(&alice, "alice", &json!({"to":"bob"}), qos).await;
        for (who, c) in [
            ("bob (3.1.1, user/bob/#)", &mut bob),
            ("bob:laptop (3.1.1, user/bob/typing)", &mut laptop),
        ] {
            let p = c.next_publish("user/bob/typing").await;
            if p.qos != QoS::AtMostOnce {
                wrong.push(format!("{who}: sent at {qos:?}, delivered at {:?}", p.qos));
            }
        }
        let p = bob5.next_publish("user/bob/typing").await;
        if p.qos != QoS5::AtMostOnce {
            wrong.push(format!(
                "bob:five (5.0, user/bob/#): sent at {qos:?}, delivered at {:?}",
                p.qos
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "typing not delivered at QoS 0: {wrong:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_every_connected_device() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut phone = online(&s, "bob:phone", "bob").await;
    // A device subscribed to the typing topic only (at QoS 1: still delivered at QoS 0).
    let mut laptop = connect(s.mqtt, "bob:laptop", "bob", "bob-pw").await;
    laptop.subscribe("user/bob/typing", QoS::AtLeastOnce).await;
    let mut carol = online(&s, "carol", "carol").await;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        typing(&alice, "alice", &json!({"to":"bob"}), qos).await;
        expect_typing(&mut phone, "bob", "alice").await;
        expect_typing(&mut laptop, "bob", "alice").await;
    }
    // Not to anyone else, no ack for a success, nothing in the inbox.
    carol
        .nothing_on("user/carol/typing", Duration::from_millis(300))
        .await;
    alice
        .nothing_on("user/alice/typing", Duration::from_millis(100))
        .await;
    alice
        .nothing_on("user/alice/ack", Duration::from_millis(100))
        .await;
    phone
        .nothing_on("user/bob/inbox", Duration::from_millis(100))
        .await;
    phone
        .nothing_on("user/bob/typing", Duration::from_millis(100))
        .await;

    // And back, from bob's phone to alice.
    typing(&phone, "bob", &json!({"to":"alice"}), QoS::AtMostOnce).await;
    expect_typing(&mut alice, "alice", "bob").await;

    // MQTT 5: sender and receiver.
    let mut carol5 = connect5(s.mqtt, "carol:five", "carol", "carol-pw").await;
    carol5.subscribe("user/carol/#", QoS5::AtLeastOnce).await;
    let alice5 = connect5(s.mqtt, "alice:five", "alice", "alice-pw").await;
    alice5
        .publish_bytes(
            "chat/alice/typing",
            QoS5::AtMostOnce,
            br#"{"to":"carol"}"#.to_vec(),
        )
        .await;
    let p = carol5.next_publish("user/carol/typing").await;
    let v: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(v, json!({"from":"alice"}));
    let mut alice5 = alice5;
    let reason = alice5
        .publish_result("chat/alice/typing", br#"{"to":"carol"}"#.to_vec())
        .await;
    assert!(
        matches!(
            reason,
            rumqttc::v5::mqttbytes::v5::PubAckReason::Success
                | rumqttc::v5::mqttbytes::v5::PubAckReason::NoMatchingSubscribers
        ),
        "PUBACK {reason:?}"
    );
    let p = carol5.next_publish("user/carol/typing").await;
    let v: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(v, json!({"from":"alice"}));
    // The old carol (3.1.1) got both as well.
    expect_typing(&mut carol, "carol", "alice").await;
    expect_typing(&mut carol, "carol", "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_never_stored_or_queued() {
    let mut s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;

    // bob has no device: the indicators go nowhere, and no error either (bob exists).
    for _ in 0..3 {
        typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    }
    // A real message after them, as an anchor.
    let ack = alice.send("alice", "bob", "real-1", "a real message").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();
    alice
        .nothing_on("user/alice/ack", Duration::from_millis(300))
        .await;

    // bob comes online: the message arrives, no typing.
    let mut bob = online(&s, "bob", "bob").await;
    let m = bob.next_on("user/bob/inbox").await;
    assert_eq!(m["id"], id.as_str(), "{m}");
    bob.nothing_on("user/bob/typing", Duration::from_millis(1000))
        .await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(100))
        .await;

    // History holds only the real message.
    let h = alice
        .rpc("alice", json!({"rid":"h1","op":"history","with":"bob"}))
        .await;
    assert_eq!(h["ok"], true, "{h}");
    let msgs = h["result"]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "typing stored in history: {h}");
    assert_eq!(msgs[0]["id"], id.as_str());

    // A device that subscribes only to the inbox (no typing) gets no typing; and typing sent
    // while bob is connected but not subscribed to typing is not replayed later.
    drop(bob);
    let mut bob2 = connect(s.mqtt, "bob:tablet", "bob", "bob-pw").await;
    bob2.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    let ack = alice.send("alice", "bob", "real-2", "second").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(bob2.next_on("user/bob/inbox").await["text"], "second");
    bob2.subscribe("user/bob/typing", QoS::AtLeastOnce).await;
    bob2.nothing_on("user/bob/typing", Duration::from_millis(800))
        .await;

    // Not across a restart either.
    drop(bob2);
    typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    let ack = alice.send("alice", "bob", "real-3", "third").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    drop(alice);
    assert!(s.stop().success());
    s.restart();
    let mut bob = online(&s, "bob", "bob").await;
    assert_eq!(bob.next_on("user/bob/inbox").await["text"], "third");
    bob.nothing_on("user/bob/typing", Duration::from_millis(800))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_refusals_and_nothing_crashes() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown user", br#"{"to":"nobody"}"#.to_vec(), "not_found"),
        ("bad JSON", b"{nope".to_vec(), "bad_request"),
        ("not an object", b"[1,2]".to_vec(), "bad_request"),
        ("a JSON string", br#""bob""#.to_vec(), "bad_request"),
        ("empty payload", Vec::new(), "bad_request"),
        ("missing to", b"{}".to_vec(), "bad_request"),
        (
            "invalid user id",
            br#"{"to":"not a user!"}"#.to_vec(),
            "bad_request",
        ),
        ("empty user id", br#"{"to":""}"#.to_vec(), "bad_request"),
        ("to not a string", br#"{"to":42}"#.to_vec(), "bad_request"),
        (
            "unknown field",
            br#"{"to":"bob","colour":"red"}"#.to_vec(),
            "bad_request",
        ),
        (
            "typing in an unknown group",
            br#"{"group":"g1"}"#.to_vec(),
            "not_found",
        ),
        (
            "to and group",
            br#"{"to":"bob","group":"g1"}"#.to_vec(),
            "bad_request",
        ),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{'], "bad_request"),
    ];
    for (i, (what, payload, code)) in cases.into_iter().enumerate() {
        // Alternate QoS 0 and QoS 1: refusals are reported either way.
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        alice.publish_bytes("chat/alice/typing", qos, payload).await;
        let ack = next_typing_error(&mut alice, "alice").await;
        assert_typing_error(&ack, code, what);
        // Slow enough not to hit the default limit of 5 per second with these.
        if i % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    bob.nothing_on("user/bob/typing", Duration::from_millis(300))
        .await;
    alice
        .nothing_on("user/alice/ack", Duration::from_millis(100))
        .await;

    // The connection survives: typing and sending still work.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtMostOnce).await;
    expect_typing(&mut bob, "bob", "alice").await;
    let ack = alice.send("alice", "bob", "after-bad", "still fine").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(bob.next_on("user/bob/inbox").await["text"], "still fine");

    // MQTT 5 sender: the refusal arrives the same way.
    let mut alice5 = connect5(s.mqtt, "alice:five", "alice", "alice-pw").await;
    alice5.subscribe("user/alice/ack", QoS5::AtLeastOnce).await;
    alice5
        .publish_json("chat/alice/typing", &json!({"to":"nobody"}))
        .await;
    let ack = alice5
        .next_where("user/alice/ack", "typing", &json!(true))
        .await;
    assert_typing_error(&ack, "not_found", "v5 unknown user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_rate_limited_per_user() {
    let s = server_abc_with("[limits]\ntyping_per_sec = 2\n");
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;

    // A burst of 5 (QoS 1, in order): 2 pass, the excess is refused.
    for _ in 0..5 {
        typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    }
    let mut delivered = 0;
    while bob
        .next_publish_within("user/bob/typing", Duration::from_millis(800))
        .await
        .is_ok()
    {
        delivered += 1;
    }
    let mut limited = 0;
    while let Ok(p) = alice
        .next_publish_within("user/alice/ack", Duration::from_millis(800))
        .await
    {
        let ack: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_typing_error(&ack, "rate_limited", "burst over the limit");
        limited += 1;
    }
    eprintln!(
        "typing: burst of 5 with typing_per_sec = 2: {delivered} delivered, {limited} rate_limited"
    );
    assert_eq!(
        delivered + limited,
        5,
        "every indicator is delivered or refused"
    );
    assert!(
        (2..=3).contains(&delivered),
        "{delivered} of a burst of 5 delivered with typing_per_sec = 2"
    );

    // The limit is per user: carol is not affected by alice's burst.
    typing(&carol, "carol", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    expect_typing(&mut bob, "bob", "carol").await;
    carol
        .nothing_on("user/carol/ack", Duration::from_millis(300))
        .await;

    // After about a second alice may type again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    expect_typing(&mut bob, "bob", "alice").await;
    alice
        .nothing_on("user/alice/ack", Duration::from_millis(300))
        .await;

    // The limit covers all of a user's devices together.
    let alice2 = connect(s.mqtt, "alice:tablet", "alice", "alice-pw").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..6 {
        let c = if i % 2 == 0 { &alice } else { &alice2 };
        typing(c, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    }
    let mut delivered = 0;
    while bob
        .next_publish_within("user/bob/typing", Duration::from_millis(800))
        .await
        .is_ok()
    {
        delivered += 1;
    }
    eprintln!("typing: 6 from two devices with typing_per_sec = 2: {delivered} delivered");
    assert!(
        (2..=3).contains(&delivered),
        "{delivered} of 6 from two devices delivered with typing_per_sec = 2"
    );

    // Messages are not rate limited by typing.
    let ack = alice.send("alice", "bob", "not-limited", "hi").await;
    assert_eq!(ack["status"], "sent", "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_is_five_per_second() {
    let s = server_abc();
    let alice = online(&s, "alice", "alice").await;
    let mut alice = alice;
    let mut bob = online(&s, "bob", "bob").await;
    // 5 in a burst pass.
    for _ in 0..5 {
        typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    }
    for _ in 0..5 {
        expect_typing(&mut bob, "bob", "alice").await;
    }
    // 10 more at once: most are refused.
    for _ in 0..10 {
        typing(&alice, "alice", &json!({"to":"bob"}), QoS::AtLeastOnce).await;
    }
    let mut limited = 0;
    while let Ok(p) = alice
        .next_publish_within("user/alice/ack", Duration::from_millis(800))
        .await
    {
        let ack: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_typing_error(&ack, "rate_limited", "over the default limit");
        limited += 1;
    }
    let mut delivered = 0;
    while bob
        .next_publish_within("user/bob/typing", Duration::from_millis(300))
        .await
        .is_ok()
    {
        delivered += 1;
    }
    eprintln!("typing: default limit, 5 then 10 more: {delivered} of the 10 delivered, {limited} rate_limited");
    assert_eq!(delivered + limited, 10);
    assert!(
        limited >= 7,
        "only {limited} of 10 refused after a full burst"
    );
}
