//! Receipts end to end: `chat/{me}/receipt` `{"ids":[…],"status":"delivered"|"read"}` reaches the
//! author on `user/{author}/receipt`, status only moves forward, refusals on `user/{me}/ack`,
//! receipts queued for an offline author (also across a restart), and the status in `history` and
//! the unread counts of `conversations`.

use crate::support;

use support::{now_ms, online};

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

/// A server with alice, bob and carol (password `{user}-pw`).
fn server_abc() -> Server {
    let s = Server::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

/// `from` sends `text` to `to`; waits for the ack and for `recipient` (if given) to receive it;
/// returns the message id.
async fn send_received(
    from_c: &mut Client,
    from: &str,
    to: &str,
    text: &str,
    recipient: Option<&mut Client>,
) -> String {
    let cid = unique("c");
    let ack = from_c.send(from, to, &cid, text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();
    if let Some(r) = recipient {
        let m = r
            .next_where(&format!("user/{to}/inbox"), "id", &json!(id))
            .await;
        assert_eq!(m["text"], text, "{m}");
    }
    id
}

/// Publishes a receipt from `me`.
async fn receipt(c: &Client, me: &str, ids: &[&str], status: &str) {
    c.publish_json(
        &format!("chat/{me}/receipt"),
        &json!({"ids": ids, "status": status}),
    )
    .await;
}

/// Checks a receipt is exactly `{id, by, status, ts}` with a `ts` about now.
fn assert_receipt(r: &Value, id: &str, by: &str, status: &str) {
    assert_eq!(r["id"], id, "receipt: {r}");
    assert_eq!(r["by"], by, "receipt: {r}");
    assert_eq!(r["status"], status, "receipt: {r}");
    let ts = r["ts"]
        .as_i64()
        .unwrap_or_else(|| panic!("receipt without numeric ts: {r}"));
    assert!(
        (ts - now_ms()).abs() < 10 * 60 * 1000,
        "receipt ts {ts} is far from now: {r}"
    );
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["by", "id", "status", "ts"].into(), "fields of {r}");
}

/// The next receipt on `user/{me}/receipt`.
async fn next_receipt(c: &mut Client, me: &str) -> Value {
    c.next_on(&format!("user/{me}/receipt")).await
}

/// The next receipt refusal on `user/{me}/ack` listing exactly `ids`; checks its code.
async fn expect_refusal(c: &mut Client, me: &str, ids: &[&str], code: &str, what: &str) {
    let ack = c
        .next_where(&format!("user/{me}/ack"), "receipt", &json!(ids))
        .await;
    assert_refusal(&ack, code, what);
}

fn assert_refusal(ack: &Value, code: &str, what: &str) {
    assert_eq!(ack["error"]["code"], code, "{what}: {ack}");
    assert!(
        ack["error"]["message"].is_string(),
        "{what}: error without message: {ack}"
    );
    assert!(ack["receipt"].is_array(), "{what}: no receipt list: {ack}");
}

async fn history_statuses(c: &mut Client, me: &str, with: &str) -> Vec<(String, String)> {
    let rid = unique("h");
    let r = c
        .rpc(me, json!({"rid": rid, "op": "history", "with": with}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    r["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["status"]
                    .as_str()
                    .unwrap_or_else(|| panic!("history message without status: {m}"))
                    .to_string(),
            )
        })
        .collect()
}

async fn unread_with(c: &mut Client, me: &str, with: &str) -> i64 {
    let rid = unique("cv");
    let r = c.rpc(me, json!({"rid": rid, "op": "conversations"})).await;
    assert_eq!(r["ok"], true, "{r}");
    let conv = r["result"]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["with"] == with)
        .unwrap_or_else(|| panic!("no conversation with {with}: {r}"))
        .clone();
    conv["unread"]
        .as_i64()
        .unwrap_or_else(|| panic!("unread not a number: {conv}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_then_read_reach_the_sender() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let x = send_received(&mut alice, "alice", "bob", "hello", Some(&mut bob)).await;

    receipt(&bob, "bob", &[&x], "delivered").await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &x,
        "bob",
        "delivered",
    );
    receipt(&bob, "bob", &[&x], "read").await;
    let r = next_receipt(&mut alice, "alice").await;
    assert_receipt(&r, &x, "bob", "read");

    // Nothing goes back to bob (no receipt, no ack for accepted receipts).
    bob.nothing_on("user/bob/receipt", Duration::from_millis(300))
        .await;
    bob.nothing_on("user/bob/ack", Duration::from_millis(100))
        .await;

    // Forward only: repeated read, and delivered after read, announce nothing.
    receipt(&bob, "bob", &[&x], "read").await;
    receipt(&bob, "bob", &[&x], "delivered").await;
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    bob.nothing_on("user/bob/ack", Duration::from_millis(100))
        .await;
    assert_eq!(
        history_statuses(&mut alice, "alice", "bob").await,
        vec![(x.clone(), "read".to_string())]
    );

    // A repeated delivered is not announced twice either.
    let y = send_received(&mut alice, "alice", "bob", "second", Some(&mut bob)).await;
    receipt(&bob, "bob", &[&y], "delivered").await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &y,
        "bob",
        "delivered",
    );
    receipt(&bob, "bob", &[&y], "delivered").await;
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;

    // All of alice's devices subscribed to receipts get them.
    let mut tablet = online(&s, "alice:tablet", "alice").await;
    receipt(&bob, "bob", &[&y], "read").await;
    assert_receipt(&next_receipt(&mut alice, "alice").await, &y, "bob", "read");
    assert_receipt(&next_receipt(&mut tablet, "alice").await, &y, "bob", "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_without_delivered_is_one_receipt() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let x = send_received(
        &mut alice,
        "alice",
        "bob",
        "straight to read",
        Some(&mut bob),
    )
    .await;
    receipt(&bob, "bob", &[&x], "read").await;
    assert_receipt(&next_receipt(&mut alice, "alice").await, &x, "bob", "read");
    receipt(&bob, "bob", &[&x], "delivered").await;
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    assert_eq!(
        history_statuses(&mut bob, "bob", "alice").await,
        vec![(x, "read".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_ids_in_one_publish() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(send_received(&mut alice, "alice", "bob", &format!("m{i}"), Some(&mut bob)).await);
    }
    let refs: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    receipt(&bob, "bob", &refs, "delivered").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = next_receipt(&mut alice, "alice").await;
        assert_eq!(r["status"], "delivered", "{r}");
        assert_eq!(r["by"], "bob", "{r}");
        got.push(r["id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ids, "receipts of one publish not in the order given");

    // read for the first two and one already-read-free new one: only changes are announced.
    receipt(&bob, "bob", &refs[..2], "read").await;
    for id in &refs[..2] {
        assert_receipt(&next_receipt(&mut alice, "alice").await, id, "bob", "read");
    }
    // delivered again for all four: nothing changes.
    receipt(&bob, "bob", &refs, "delivered").await;
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    let st = history_statuses(&mut alice, "alice", "bob").await;
    let want: Vec<(String, String)> = ids
        .iter()
        .zip(["read", "read", "delivered", "delivered"])
        .map(|(id, s)| (id.clone(), s.to_string()))
        .collect();
    assert_eq!(st, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_nothing_crashes() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;

    let to_bob = send_received(&mut alice, "alice", "bob", "for bob", Some(&mut bob)).await;
    let to_carol = send_received(&mut alice, "alice", "carol", "for carol", Some(&mut carol)).await;
    let bobs_own = send_received(&mut bob, "bob", "alice", "from bob", Some(&mut alice)).await;
    let unknown = "0000000000001-00001-00000";

    // forbidden: another pair's message, and bob's own message.
    receipt(&bob, "bob", &[&to_carol], "read").await;
    expect_refusal(&mut bob, "bob", &[&to_carol], "forbidden", "alice→carol").await;
    receipt(&bob, "bob", &[&bobs_own], "delivered").await;
    expect_refusal(&mut bob, "bob", &[&bobs_own], "forbidden", "own message").await;
    // not_found: a well-formed unknown id.
    receipt(&bob, "bob", &[unknown], "delivered").await;
    expect_refusal(&mut bob, "bob", &[unknown], "not_found", "unknown id").await;
    // bad_request: bad status, malformed id.
    receipt(&bob, "bob", &[&to_bob], "seen").await;
    expect_refusal(&mut bob, "bob", &[&to_bob], "bad_request", "status seen").await;
    receipt(&bob, "bob", &[&to_bob], "sent").await;
    expect_refusal(&mut bob, "bob", &[&to_bob], "bad_request", "status sent").await;
    receipt(&bob, "bob", &["not-an-id"], "read").await;
    expect_refusal(
        &mut bob,
        "bob",
        &["not-an-id"],
        "bad_request",
        "malformed id",
    )
    .await;

    // Payloads with no usable ids: bad JSON, unknown field, no ids, too many ids, wrong types.
    let too_many: Vec<String> = (0..101).map(|_| to_bob.clone()).collect();
    let bad_payloads: Vec<(&str, Vec<u8>)> = vec![
        ("bad JSON", b"{nope".to_vec()),
        ("not an object", b"[1]".to_vec()),
        ("empty payload", Vec::new()),
        (
            "unknown field",
            json!({"ids":[to_bob],"status":"read","extra":1})
                .to_string()
                .into_bytes(),
        ),
        ("no ids", json!({"status":"read"}).to_string().into_bytes()),
        (
            "empty ids",
            json!({"ids":[],"status":"read"}).to_string().into_bytes(),
        ),
        (
            "101 ids",
            json!({"ids":too_many,"status":"read"})
                .to_string()
                .into_bytes(),
        ),
        (
            "ids not a list",
            json!({"ids":to_bob,"status":"read"})
                .to_string()
                .into_bytes(),
        ),
        (
            "no status",
            json!({"ids":[to_bob]}).to_string().into_bytes(),
        ),
        (
            "status not a string",
            json!({"ids":[to_bob],"status":2}).to_string().into_bytes(),
        ),
    ];
    for (what, payload) in bad_payloads {
        bob.publish_bytes("chat/bob/receipt", QoS::AtLeastOnce, payload)
            .await;
        let ack = bob.next_on("user/bob/ack").await;
        assert_refusal(&ack, "bad_request", what);
        assert!(ack.get("cid").is_none(), "{what}: {ack}");
    }

    // Nothing was forwarded to anyone; no status changed.
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    bob.nothing_on("user/bob/receipt", Duration::from_millis(100))
        .await;
    bob.nothing_on("user/bob/ack", Duration::from_millis(100))
        .await;
    let st = history_statuses(&mut alice, "alice", "bob").await;
    assert!(
        st.iter().all(|(_, s)| s == "sent"),
        "status changed by refused receipts: {st:?}"
    );
    assert_eq!(
        history_statuses(&mut alice, "alice", "carol").await,
        vec![(to_carol.clone(), "sent".to_string())]
    );

    // Still working: a valid receipt and a normal send.
    receipt(&bob, "bob", &[&to_bob], "read").await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &to_bob,
        "bob",
        "read",
    );
    let ack = bob.send("bob", "alice", "after-bad", "still fine").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(
        alice
            .next_where("user/alice/inbox", "text", &json!("still fine"))
            .await["from"],
        "bob"
    );
    // And carol may still acknowledge her own message.
    receipt(&carol, "carol", &[&to_carol], "delivered").await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &to_carol,
        "carol",
        "delivered",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_valid_and_invalid_ids() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;
    let good1 = send_received(&mut alice, "alice", "bob", "g1", Some(&mut bob)).await;
    let good2 = send_received(&mut alice, "alice", "bob", "g2", Some(&mut bob)).await;
    let other = send_received(&mut alice, "alice", "carol", "c", Some(&mut carol)).await;
    let unknown = "0000000000001-00001-00000";

    receipt(&bob, "bob", &[&good1, &other, unknown, &good2], "read").await;
    let r1 = next_receipt(&mut alice, "alice").await;
    let r2 = next_receipt(&mut alice, "alice").await;
    assert_receipt(&r1, &good1, "bob", "read");
    assert_receipt(&r2, &good2, "bob", "read");
    let ack = bob
        .next_where("user/bob/ack", "receipt", &json!([other, unknown]))
        .await;
    // The first refused id decides the code.
    assert_refusal(&ack, "forbidden", "mixed ids");
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(500))
        .await;

    // Invalid first: code of the first refused one (not_found).
    let good3 = send_received(&mut alice, "alice", "bob", "g3", Some(&mut bob)).await;
    receipt(&bob, "bob", &[unknown, &good3, &other], "delivered").await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &good3,
        "bob",
        "delivered",
    );
    let ack = bob
        .next_where("user/bob/ack", "receipt", &json!([unknown, other]))
        .await;
    assert_refusal(&ack, "not_found", "unknown first");
    carol
        .nothing_on("user/carol/receipt", Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sender_gets_missed_receipts_in_order() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let x1 = send_received(&mut alice, "alice", "bob", "one", Some(&mut bob)).await;
    let x2 = send_received(&mut alice, "alice", "bob", "two", Some(&mut bob)).await;
    alice.disconnect().await;

    receipt(&bob, "bob", &[&x1], "delivered").await;
    receipt(&bob, "bob", &[&x1], "read").await;
    receipt(&bob, "bob", &[&x2], "read").await;
    // A message too, so alice's inbox has something queued as well.
    let back = bob.send("bob", "alice", "b-1", "answer").await;
    assert_eq!(back["status"], "sent", "{back}");
    // Wait until the receipts are stored (bob's history shows them).
    let want = [
        (x1.clone(), "read".to_string()),
        (x2.clone(), "read".to_string()),
    ];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let st = history_statuses(&mut bob, "bob", "alice").await;
        if st[..2] == want[..] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "statuses: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Receipts only: everything she missed, in order (the inbox item stays queued).
    let mut alice = connect(s.mqtt, "alice:phone", "alice", "alice-pw").await;
    alice
        .subscribe("user/alice/receipt", QoS::AtLeastOnce)
        .await;
    assert_receipt(
        &next_receipt(&mut alice, "alice").await,
        &x1,
        "bob",
        "delivered",
    );
    assert_receipt(&next_receipt(&mut alice, "alice").await, &x1, "bob", "read");
    assert_receipt(&next_receipt(&mut alice, "alice").await, &x2, "bob", "read");
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    alice.disconnect().await;
    // The message is still there for a device subscribing to the inbox.
    let mut alice = connect(s.mqtt, "alice:tablet", "alice", "alice-pw").await;
    alice.subscribe("user/alice/inbox", QoS::AtLeastOnce).await;
    assert_eq!(alice.next_on("user/alice/inbox").await["text"], "answer");

    // Delivered once (PUBACKed): a later device does not get them again.
    alice.disconnect().await;
    let mut again = online(&s, "alice:laptop", "alice").await;
    again
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_receipts_survive_a_restart() {
    let mut s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let x1 = send_received(&mut alice, "alice", "bob", "one", Some(&mut bob)).await;
    let x2 = send_received(&mut alice, "alice", "bob", "two", Some(&mut bob)).await;
    alice.disconnect().await;
    receipt(&bob, "bob", &[&x1, &x2], "delivered").await;
    receipt(&bob, "bob", &[&x2], "read").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let st = history_statuses(&mut bob, "bob", "alice").await;
        if st
            == vec![
                (x1.clone(), "delivered".into()),
                (x2.clone(), "read".into()),
            ]
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "statuses: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(bob);
    assert!(s.stop().success());
    s.restart();

    // MQTT 5 this time.
    let mut alice5 = connect5(s.mqtt, "alice:five", "alice", "alice-pw").await;
    alice5.subscribe("user/alice/#", QoS5::AtLeastOnce).await;
    let got: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(alice5.next_on("user/alice/receipt").await);
        }
        v
    };
    assert_receipt(&got[0], &x1, "bob", "delivered");
    assert_receipt(&got[1], &x2, "bob", "delivered");
    assert_receipt(&got[2], &x2, "bob", "read");
    alice5
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
    // History after the restart keeps the statuses.
    let mut alice = online(&s, "alice", "alice").await;
    assert_eq!(
        history_statuses(&mut alice, "alice", "bob").await,
        vec![(x1, "delivered".into()), (x2, "read".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_status_and_unread_counts() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(send_received(&mut alice, "alice", "bob", &format!("u{i}"), Some(&mut bob)).await);
    }
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 4);
    assert_eq!(unread_with(&mut alice, "alice", "bob").await, 0);

    // delivered does not change unread.
    receipt(&bob, "bob", &[&ids[0], &ids[1], &ids[2]], "delivered").await;
    for id in &ids[..3] {
        assert_receipt(
            &next_receipt(&mut alice, "alice").await,
            id,
            "bob",
            "delivered",
        );
    }
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 4);

    // read drops it.
    receipt(&bob, "bob", &[&ids[0], &ids[1]], "read").await;
    for id in &ids[..2] {
        assert_receipt(&next_receipt(&mut alice, "alice").await, id, "bob", "read");
    }
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 2);

    // Both sides' history show each message's status.
    let want: Vec<(String, String)> = ids
        .iter()
        .zip(["read", "read", "delivered", "sent"])
        .map(|(id, s)| (id.clone(), s.to_string()))
        .collect();
    assert_eq!(history_statuses(&mut alice, "alice", "bob").await, want);
    assert_eq!(history_statuses(&mut bob, "bob", "alice").await, want);

    // A read receipt repeated does not drop unread twice; reading the rest brings it to 0.
    receipt(&bob, "bob", &[&ids[0]], "read").await;
    receipt(&bob, "bob", &[&ids[2], &ids[3]], "read").await;
    for id in &ids[2..] {
        assert_receipt(&next_receipt(&mut alice, "alice").await, id, "bob", "read");
    }
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 0);

    // A new message counts again.
    let n = send_received(&mut alice, "alice", "bob", "new", Some(&mut bob)).await;
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 1);
    receipt(&bob, "bob", &[&n], "read").await;
    assert_receipt(&next_receipt(&mut alice, "alice").await, &n, "bob", "read");
    assert_eq!(unread_with(&mut bob, "bob", "alice").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_over_mqtt5() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob5 = connect5(s.mqtt, "bob:five", "bob", "bob-pw").await;
    bob5.subscribe("user/bob/#", QoS5::AtLeastOnce).await;
    let ack = alice.send("alice", "bob", "c5", "over five").await;
    let x = ack["id"].as_str().unwrap().to_string();
    let m = bob5.next_on("user/bob/inbox").await;
    assert_eq!(m["id"], x.as_str());

    let reason = bob5
        .publish_result(
            "chat/bob/receipt",
            json!({"ids":[x],"status":"read"}).to_string(),
        )
        .await;
    assert!(
        matches!(
            reason,
            rumqttc::v5::mqttbytes::v5::PubAckReason::Success
                | rumqttc::v5::mqttbytes::v5::PubAckReason::NoMatchingSubscribers
        ),
        "PUBACK {reason:?}"
    );
    assert_receipt(&next_receipt(&mut alice, "alice").await, &x, "bob", "read");

    // Refusal over 5.0.
    bob5.publish_json(
        "chat/bob/receipt",
        &json!({"ids":["0000000000001-00001-00000"],"status":"read"}),
    )
    .await;
    let ack = bob5
        .next_where(
            "user/bob/ack",
            "receipt",
            &json!(["0000000000001-00001-00000"]),
        )
        .await;
    assert_refusal(&ack, "not_found", "v5 unknown id");
}

/// Subscribing to the inbox and to receipts one after the other on the same connection: each
/// subscription gets what was queued for its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_items_reach_a_topic_subscribed_second() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let x1 = send_received(&mut alice, "alice", "bob", "one", Some(&mut bob)).await;
    alice.disconnect().await;
    receipt(&bob, "bob", &[&x1], "read").await;
    let back = bob.send("bob", "alice", "b-1", "answer").await;
    assert_eq!(back["status"], "sent", "{back}");
    let deadline = std::time::Instant::now() + WAIT;
    while history_statuses(&mut bob, "bob", "alice").await[0].1 != "read" {
        assert!(std::time::Instant::now() < deadline, "receipt never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Inbox first, then receipts.
    let mut a = connect(s.mqtt, "alice:phone", "alice", "alice-pw").await;
    a.subscribe("user/alice/inbox", QoS::AtLeastOnce).await;
    assert_eq!(a.next_on("user/alice/inbox").await["text"], "answer");
    a.subscribe("user/alice/receipt", QoS::AtLeastOnce).await;
    let r = a
        .next_publish_within("user/alice/receipt", WAIT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "queued receipt not delivered when user/alice/receipt is subscribed after \
                 user/alice/inbox on the same connection: {e}"
            )
        });
    let r: Value = serde_json::from_slice(&r.payload).unwrap();
    assert_receipt(&r, &x1, "bob", "read");
}
