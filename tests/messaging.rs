//! 1:1 messaging end to end: acks, delivery to every device, cid retries, the authenticated
//! sender, validation errors, history and conversations, ids, session take-over.

use crate::support;

use support::{now_ms, online};

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

/// A server with alice, bob and carol (password `{user}-pw`), and a send rate that bulk sends
/// (105 pipelined messages) never reach.
fn server_abc() -> Server {
    let s = Server::start_with("[limits]\nsends_per_sec = 100000\nsends_burst = 1000000\n");
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

/// The MQTT 5 counterpart of [`online`].
async fn online5(s: &Server, client_id: &str, user: &str) -> Client5 {
    let c = connect5(s.mqtt, client_id, user, &format!("{user}-pw")).await;
    let codes = c
        .subscribe(&format!("user/{user}/#"), QoS5::AtLeastOnce)
        .await;
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
            QoS5::AtLeastOnce
        )]
    );
    c
}

/// `{milliseconds:13}-{node:05}-{sequence:05}`.
fn assert_id_format(id: &str) {
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "message id {id:?} is not ms-node-seq");
    for (part, len) in parts.iter().zip([13, 5, 5]) {
        assert!(
            part.len() == len && part.bytes().all(|b| b.is_ascii_digit()),
            "message id {id:?}: part {part:?} should be {len} digits"
        );
    }
}

fn assert_sent_ack(ack: &Value, cid: &str) -> String {
    assert_eq!(ack["cid"], cid, "ack: {ack}");
    assert_eq!(ack["status"], "sent", "ack: {ack}");
    assert!(ack.get("error").is_none(), "ack: {ack}");
    let id = ack["id"]
        .as_str()
        .unwrap_or_else(|| panic!("ack without id: {ack}"));
    assert_id_format(id);
    let ts = ack["ts"]
        .as_i64()
        .unwrap_or_else(|| panic!("ack without numeric ts: {ack}"));
    assert!(
        (ts - now_ms()).abs() < 10 * 60 * 1000,
        "ack ts {ts} is far from now"
    );
    let id_ms: i64 = id[..13].parse().unwrap();
    assert!((id_ms - ts).abs() < 60_000, "id {id} and ts {ts} disagree");
    id.to_string()
}

fn assert_error_ack(ack: &Value, cid: Option<&str>, code: &str) {
    if let Some(cid) = cid {
        assert_eq!(ack["cid"], cid, "ack: {ack}");
    }
    assert_eq!(ack["error"]["code"], code, "ack: {ack}");
    assert!(
        ack["error"]["message"].is_string(),
        "error without message: {ack}"
    );
    assert!(ack.get("id").is_none(), "error ack carries an id: {ack}");
    assert!(ack.get("status").is_none(), "error ack has a status: {ack}");
}

/// The inbox message must be exactly `{id,from,to,type,text,ts}`.
fn assert_inbox(m: &Value, id: &str, from: &str, to: &str, text: &str) {
    assert_eq!(m["id"], id, "inbox: {m}");
    assert_eq!(m["from"], from, "inbox: {m}");
    assert_eq!(m["to"], to, "inbox: {m}");
    assert_eq!(m["type"], "text", "inbox: {m}");
    assert_eq!(m["text"], text, "inbox: {m}");
    assert!(m["ts"].is_i64(), "inbox: {m}");
    let keys: BTreeSet<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let want: BTreeSet<&str> = ["id", "from", "to", "type", "text", "ts"].into();
    assert_eq!(keys, want, "inbox fields: {m}");
}

async fn history(c: &mut Client, me: &str, args: Value) -> Value {
    let mut req = json!({"rid": unique("r"), "op": "history"});
    for (k, v) in args.as_object().unwrap() {
        req[k] = v.clone();
    }
    let reply = c.rpc(me, req.clone()).await;
    assert_eq!(reply["ok"], true, "history {req} → {reply}");
    reply["result"].clone()
}

fn ids_of(result: &Value) -> Vec<String> {
    result["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array: {result}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_acked_and_delivered() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob:phone", "bob").await;

    let ack = alice.send("alice", "bob", "c-1", "hi bob").await;
    let id = assert_sent_ack(&ack, "c-1");
    let m = bob.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", "hi bob");
    assert_eq!(m["ts"], ack["ts"], "inbox ts differs from ack ts");
    let p = bob
        .next_publish_within("user/bob/inbox", Duration::from_millis(500))
        .await;
    assert!(p.is_err(), "second delivery: {p:?}");

    // The ack goes to the sender only, the message to the recipient only.
    alice
        .nothing_on("user/alice/inbox", Duration::from_millis(300))
        .await;
    bob.nothing_on("user/bob/ack", Duration::from_millis(300))
        .await;

    // And back.
    let ack = bob.send("bob", "alice", "c-1", "hi alice").await;
    let id2 = assert_sent_ack(&ack, "c-1");
    assert!(id2 > id, "second id {id2} not after {id}");
    let m = alice.next_on("user/alice/inbox").await;
    assert_inbox(&m, &id2, "bob", "alice", "hi alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_with_mqtt5() {
    let s = server_abc();
    let mut alice = online5(&s, "alice:v5", "alice").await;
    let mut bob5 = online5(&s, "bob:v5", "bob").await;
    let mut bob3 = online(&s, "bob:v3", "bob").await;

    let ack = alice.send("alice", "bob", "c5-1", "over five").await;
    let id = assert_sent_ack(&ack, "c5-1");
    let m = bob5.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", "over five");
    let m = bob3.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", "over five");

    // The PUBACK of a send is a success (the result is in the ack topic).
    let reason = alice
        .publish_result(
            "chat/alice/send",
            json!({"cid":"c5-2","to":"bob","type":"text","text":"two"}).to_string(),
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
    let ack = alice
        .next_where("user/alice/ack", "cid", &json!("c5-2"))
        .await;
    let id2 = assert_sent_ack(&ack, "c5-2");
    let m = bob5.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id2, "alice", "bob", "two");

    let ack = bob5.send("bob", "alice", "back", "reply").await;
    let id3 = assert_sent_ack(&ack, "back");
    let m = alice.next_on("user/alice/inbox").await;
    assert_inbox(&m, &id3, "bob", "alice", "reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_from_is_ignored() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    let ack = alice
        .send_json(
            "alice",
            &json!({"cid":"f-1","to":"bob","type":"text","text":"it's carol, honest","from":"carol"}),
        )
        .await;
    let id = assert_sent_ack(&ack, "f-1");
    let m = bob.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", "it's carol, honest");

    // Nothing lands in carol's conversation with bob.
    let mut carol = online(&s, "carol", "carol").await;
    let h = history(&mut carol, "carol", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), Vec::<String>::new(), "carol↔bob history: {h}");
    let h = history(&mut bob, "bob", json!({"with":"alice"})).await;
    assert_eq!(ids_of(&h), vec![id.clone()]);
    assert_eq!(h["messages"][0]["from"], "alice");

    // Same over MQTT 5.
    let mut alice5 = online5(&s, "alice:five", "alice").await;
    let ack = alice5
        .send_json(
            "alice",
            &json!({"cid":"f-2","to":"bob","type":"text","text":"again","from":"bob"}),
        )
        .await;
    let id2 = assert_sent_ack(&ack, "f-2");
    let m = bob.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id2, "alice", "bob", "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_cid_returns_the_first_ack() {
    let mut s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    let first = alice.send("alice", "bob", "dup-1", "only once").await;
    let id = assert_sent_ack(&first, "dup-1");
    let again = alice.send("alice", "bob", "dup-1", "only once").await;
    assert_eq!(again, first, "retry ack differs from the first");
    // A retry with a different body still creates nothing.
    let other = alice.send("alice", "bob", "dup-1", "changed my mind").await;
    assert_eq!(other["id"], first["id"], "retry with another text: {other}");

    let m = bob.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", "only once");
    bob.nothing_on("user/bob/inbox", Duration::from_millis(800))
        .await;

    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), vec![id.clone()], "history: {h}");

    // From another device of alice, and after a restart: still the first ack.
    let mut alice2 = online5(&s, "alice:tablet", "alice").await;
    let from_tablet = alice2.send("alice", "bob", "dup-1", "only once").await;
    assert_eq!(from_tablet["id"], first["id"], "{from_tablet}");
    drop(alice);
    drop(alice2);
    drop(bob);
    assert!(s.stop().success());
    s.restart();
    let mut alice = online(&s, "alice", "alice").await;
    let after = alice.send("alice", "bob", "dup-1", "only once").await;
    assert_eq!(after, first, "retry after restart");
    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), vec![id], "history after restart: {h}");

    // The cid is per sender: bob may use the same one.
    let mut bob = online(&s, "bob", "bob").await;
    let bobs = bob.send("bob", "alice", "dup-1", "mine").await;
    let bid = assert_sent_ack(&bobs, "dup-1");
    assert_ne!(json!(bid), first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_is_not_found() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let ack = alice.send("alice", "nobody", "nf-1", "hello?").await;
    assert_error_ack(&ack, Some("nf-1"), "not_found");
    // An invalid user id is a bad request.
    let ack = alice.send("alice", "not a user!", "nf-2", "hello?").await;
    assert_error_ack(&ack, Some("nf-2"), "bad_request");
    // After the account exists the same recipient works (a failed cid is not remembered as sent).
    s.add_user("nobody", "nobody-pw");
    let ack = alice.send("alice", "nobody", "nf-3", "hello!").await;
    assert_sent_ack(&ack, "nf-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_to_every_connected_device() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut phone = online(&s, "bob:phone", "bob").await;
    let mut laptop = online(&s, "bob:laptop", "bob").await;
    let mut tablet = online5(&s, "bob:tablet", "bob").await;

    for i in 0..3 {
        let cid = format!("md-{i}");
        let text = format!("to all devices {i}");
        let ack = alice.send("alice", "bob", &cid, &text).await;
        let id = assert_sent_ack(&ack, &cid);
        assert_inbox(
            &phone.next_on("user/bob/inbox").await,
            &id,
            "alice",
            "bob",
            &text,
        );
        assert_inbox(
            &laptop.next_on("user/bob/inbox").await,
            &id,
            "alice",
            "bob",
            &text,
        );
        assert_inbox(
            &tablet.next_on("user/bob/inbox").await,
            &id,
            "alice",
            "bob",
            &text,
        );
    }
    let ack = alice.send("alice", "bob", "md-x", "x").await;
    assert_sent_ack(&ack, "md-x");
    // A device that left does not stop the others from getting messages.
    laptop.disconnect().await;
    let ack = alice.send("alice", "bob", "md-y", "y").await;
    let id = assert_sent_ack(&ack, "md-y");
    // md-x then md-y for the phone.
    assert_eq!(phone.next_on("user/bob/inbox").await["text"], "x");
    assert_inbox(
        &phone.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "y",
    );
    assert_eq!(tablet.next_on("user/bob/inbox").await["text"], "x");
    assert_inbox(
        &tablet.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "y",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_oldest_first() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    // 10 messages, alternating senders in runs: a a b a a b a a b a
    let mut sent: Vec<(String, String, String)> = Vec::new(); // (id, from, text)
    for i in 0..10 {
        let text = format!("m{i}");
        let cid = format!("h-{i}");
        let (from, ack) = if i % 3 == 2 {
            ("bob", bob.send("bob", "alice", &cid, &text).await)
        } else {
            ("alice", alice.send("alice", "bob", &cid, &text).await)
        };
        let id = assert_sent_ack(&ack, &cid);
        sent.push((id, from.to_string(), text));
    }
    let all: Vec<String> = sent.iter().map(|(id, _, _)| id.clone()).collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ids do not sort in send order");

    // Default: everything (≤ 50), oldest first, with status, more = false.
    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), all, "full history: {h}");
    assert_eq!(h["more"], false, "{h}");
    for (m, (id, from, text)) in h["messages"].as_array().unwrap().iter().zip(&sent) {
        assert_eq!(m["id"], id.as_str());
        assert_eq!(m["from"], from.as_str(), "{m}");
        let to = if from == "alice" { "bob" } else { "alice" };
        assert_eq!(m["to"], to, "{m}");
        assert_eq!(m["type"], "text", "{m}");
        assert_eq!(m["text"], text.as_str(), "{m}");
        assert!(m["ts"].is_i64(), "{m}");
        assert_eq!(m["status"], "sent", "{m}");
    }
    // Bob sees the same conversation.
    let hb = history(&mut bob, "bob", json!({"with":"alice"})).await;
    assert_eq!(ids_of(&hb), all);

    // Newest `limit`, then page backwards with `before`.
    let p1 = history(&mut alice, "alice", json!({"with":"bob","limit":4})).await;
    assert_eq!(ids_of(&p1), all[6..10].to_vec(), "page 1: {p1}");
    assert_eq!(p1["more"], true, "page 1: {p1}");
    let p2 = history(
        &mut alice,
        "alice",
        json!({"with":"bob","limit":4,"before":all[6]}),
    )
    .await;
    assert_eq!(ids_of(&p2), all[2..6].to_vec(), "page 2: {p2}");
    assert_eq!(p2["more"], true, "page 2: {p2}");
    let p3 = history(
        &mut alice,
        "alice",
        json!({"with":"bob","limit":4,"before":all[2]}),
    )
    .await;
    assert_eq!(ids_of(&p3), all[0..2].to_vec(), "page 3: {p3}");
    assert_eq!(p3["more"], false, "page 3: {p3}");

    // Forwards with `after`: the oldest `limit` newer than it.
    let f1 = history(
        &mut bob,
        "bob",
        json!({"with":"alice","limit":3,"after":all[0]}),
    )
    .await;
    assert_eq!(ids_of(&f1), all[1..4].to_vec(), "after page 1: {f1}");
    assert_eq!(f1["more"], true, "after page 1: {f1}");
    let f2 = history(
        &mut bob,
        "bob",
        json!({"with":"alice","limit":10,"after":all[4]}),
    )
    .await;
    assert_eq!(ids_of(&f2), all[5..10].to_vec(), "after page 2: {f2}");
    assert_eq!(f2["more"], false, "after page 2: {f2}");
    let f3 = history(&mut bob, "bob", json!({"with":"alice","after":all[9]})).await;
    assert_eq!(ids_of(&f3), Vec::<String>::new(), "after the newest: {f3}");
    assert_eq!(f3["more"], false);
    let b0 = history(&mut bob, "bob", json!({"with":"alice","before":all[0]})).await;
    assert_eq!(ids_of(&b0), Vec::<String>::new(), "before the oldest: {b0}");
    assert_eq!(b0["more"], false);

    // limit bounds: 1 is fine, 0 and 101 are refused.
    let one = history(&mut alice, "alice", json!({"with":"bob","limit":1})).await;
    assert_eq!(ids_of(&one), all[9..].to_vec());
    assert_eq!(one["more"], true);
    for bad in [json!(0), json!(101), json!("ten")] {
        let r = alice
            .rpc(
                "alice",
                json!({"rid":unique("r"),"op":"history","with":"bob","limit":bad}),
            )
            .await;
        assert_eq!(r["ok"], false, "limit {bad}: {r}");
        assert_eq!(r["error"]["code"], "bad_request", "limit {bad}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_default_is_50_and_max_100() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    // 105 messages, pipelined: publish all, then collect the acks.
    let mut cids = Vec::new();
    for i in 0..105 {
        let cid = format!("b-{i}");
        alice
            .publish_json(
                "chat/alice/send",
                &json!({"cid":cid,"to":"bob","type":"text","text":format!("bulk {i}")}),
            )
            .await;
        cids.push(cid);
    }
    let mut ids = Vec::new();
    for cid in &cids {
        let ack = alice.next_where("user/alice/ack", "cid", &json!(cid)).await;
        ids.push(assert_sent_ack(&ack, cid));
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "pipelined sends got ids out of order");

    let d = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&d), ids[55..].to_vec(), "default limit");
    assert_eq!(d["more"], true);
    let m = history(&mut alice, "alice", json!({"with":"bob","limit":100})).await;
    assert_eq!(ids_of(&m), ids[5..].to_vec(), "limit 100");
    assert_eq!(m["more"], true);
    let rest = history(
        &mut alice,
        "alice",
        json!({"with":"bob","limit":100,"before":ids[5]}),
    )
    .await;
    assert_eq!(ids_of(&rest), ids[..5].to_vec());
    assert_eq!(rest["more"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_limited_to_own_conversations() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;

    let bc1 = assert_sent_ack(&bob.send("bob", "carol", "bc-1", "secret 1").await, "bc-1");
    let bc2 = assert_sent_ack(
        &carol.send("carol", "bob", "cb-1", "secret 2").await,
        "cb-1",
    );
    // Nothing between alice and carol yet.
    let h = history(&mut alice, "alice", json!({"with":"carol"})).await;
    assert_eq!(
        ids_of(&h),
        Vec::<String>::new(),
        "alice sees bob↔carol: {h}"
    );
    assert_eq!(h["more"], false);
    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(
        ids_of(&h),
        Vec::<String>::new(),
        "alice sees bob↔carol: {h}"
    );

    let ac = assert_sent_ack(
        &alice.send("alice", "carol", "ac-1", "hi carol").await,
        "ac-1",
    );
    let h = history(&mut alice, "alice", json!({"with":"carol"})).await;
    assert_eq!(ids_of(&h), vec![ac.clone()], "alice↔carol: {h}");
    for m in h["messages"].as_array().unwrap() {
        assert!(!m["text"].as_str().unwrap().starts_with("secret"), "{m}");
    }
    // Paging with an id of someone else's conversation does not leak it either.
    let h = history(&mut alice, "alice", json!({"with":"carol","after":bc1})).await;
    for m in h["messages"].as_array().unwrap() {
        assert_ne!(m["id"], bc2.as_str(), "leaked through after: {h}");
        assert_ne!(m["from"], "bob", "leaked through after: {h}");
    }
    let h = history(&mut carol, "carol", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), vec![bc1, bc2]);
    // History with oneself is empty (no such conversation), not someone else's.
    let r = alice
        .rpc("alice", json!({"rid":"self","op":"history","with":"alice"}))
        .await;
    if r["ok"] == true {
        assert_eq!(ids_of(&r["result"]), Vec::<String>::new(), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_with_unread_counts() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut carol = online(&s, "carol", "carol").await;

    for i in 0..3 {
        assert_sent_ack(
            &alice
                .send("alice", "bob", &format!("a{i}"), &format!("from alice {i}"))
                .await,
            &format!("a{i}"),
        );
    }
    let mut last_carol = String::new();
    for i in 0..2 {
        last_carol = assert_sent_ack(
            &carol
                .send("carol", "bob", &format!("c{i}"), &format!("from carol {i}"))
                .await,
            &format!("c{i}"),
        );
    }
    let reply = bob
        .rpc("bob", json!({"rid":"conv-1","op":"conversations"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let convs = reply["result"]["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("no conversations array: {reply}"))
        .clone();
    assert_eq!(convs.len(), 2, "{reply}");
    // Newest first: carol wrote last.
    assert_eq!(convs[0]["with"], "carol", "{reply}");
    assert_eq!(convs[0]["unread"], 2, "{reply}");
    assert_eq!(convs[0]["last"]["id"], last_carol.as_str(), "{reply}");
    assert_eq!(convs[0]["last"]["text"], "from carol 1", "{reply}");
    assert_eq!(convs[0]["last"]["from"], "carol", "{reply}");
    assert_eq!(convs[1]["with"], "alice", "{reply}");
    assert_eq!(convs[1]["unread"], 3, "{reply}");
    assert_eq!(convs[1]["last"]["text"], "from alice 2", "{reply}");

    // Alice only sent: her conversation with bob has nothing unread; then bob answers.
    let reply = alice
        .rpc("alice", json!({"rid":"conv-2","op":"conversations"}))
        .await;
    let convs = reply["result"]["conversations"].as_array().unwrap().clone();
    assert_eq!(convs.len(), 1, "{reply}");
    assert_eq!(convs[0]["with"], "bob");
    assert_eq!(convs[0]["unread"], 0, "{reply}");
    assert_eq!(convs[0]["last"]["from"], "alice", "{reply}");

    let back = assert_sent_ack(&bob.send("bob", "alice", "b0", "answer").await, "b0");
    let reply = alice
        .rpc("alice", json!({"rid":"conv-3","op":"conversations"}))
        .await;
    let convs = reply["result"]["conversations"].as_array().unwrap().clone();
    assert_eq!(convs[0]["with"], "bob", "{reply}");
    assert_eq!(convs[0]["unread"], 1, "{reply}");
    assert_eq!(convs[0]["last"]["id"], back.as_str(), "{reply}");

    // Bob's answer moves the alice conversation to the top of his list.
    let reply = bob
        .rpc("bob", json!({"rid":"conv-4","op":"conversations"}))
        .await;
    let convs = reply["result"]["conversations"].as_array().unwrap().clone();
    assert_eq!(convs[0]["with"], "alice", "{reply}");
    assert_eq!(convs[0]["last"]["id"], back.as_str(), "{reply}");
    assert_eq!(convs[1]["with"], "carol", "{reply}");

    // A user with no messages has no conversations.
    s.add_user("dave", "dave-pw");
    let mut dave = online5(&s, "dave", "dave").await;
    let reply = dave
        .rpc("dave", json!({"rid":"conv-5","op":"conversations"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["conversations"], json!([]), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_sort_in_send_order_across_senders() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut carol = online5(&s, "carol", "carol").await;
    let mut bob = online(&s, "bob", "bob").await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let (ack, from) = if i % 2 == 0 {
            (
                alice
                    .send("alice", "bob", &format!("o{i}"), &format!("o{i}"))
                    .await,
                "alice",
            )
        } else {
            (
                carol
                    .send("carol", "bob", &format!("o{i}"), &format!("o{i}"))
                    .await,
                "carol",
            )
        };
        acked.push((assert_sent_ack(&ack, &format!("o{i}")), from));
    }
    for w in acked.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "ids out of order: {} then {}",
            w[0].0,
            w[1].0
        );
    }
    // Bob receives them in the same order.
    for (id, from) in &acked {
        let m = bob.next_on("user/bob/inbox").await;
        assert_eq!(m["id"], id.as_str(), "{m}");
        assert_eq!(m["from"], *from);
    }
    let unique_ids: BTreeSet<&String> = acked.iter().map(|(id, _)| id).collect();
    assert_eq!(unique_ids.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_id_takes_over() {
    let s = server_abc();
    let mut first = online(&s, "bob:phone", "bob").await;
    let mut second = online(&s, "bob:phone", "bob").await;
    assert!(first.closed().await, "the first connection stayed open");
    let mut alice = online(&s, "alice", "alice").await;
    let ack = alice.send("alice", "bob", "t-1", "to the new one").await;
    let id = assert_sent_ack(&ack, "t-1");
    assert_inbox(
        &second.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "to the new one",
    );
    // The new connection stays usable.
    let ack = second.send("bob", "alice", "t-2", "still here").await;
    assert_sent_ack(&ack, "t-2");

    // MQTT 5: the first one is told why (0x8E session taken over).
    let mut first5 = online5(&s, "bob:tablet", "bob").await;
    let mut second5 = online5(&s, "bob:tablet", "bob").await;
    assert!(first5.closed().await, "the first v5 connection stayed open");
    let ack = alice.send("alice", "bob", "t-3", "v5 takeover").await;
    let id = assert_sent_ack(&ack, "t-3");
    assert_inbox(
        &second5.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "v5 takeover",
    );
    // A different device of the same user is not affected.
    assert_inbox(
        &second.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "v5 takeover",
    );
    assert_eq!(
        first5.disconnect_reason().await,
        Some(DisconnectReasonCode::SessionTakenOver),
        "close: {:?}",
        first5.close_reason().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_text_is_refused() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    let ack = alice
        .send("alice", "bob", "big-1", &"x".repeat(16 * 1024 + 1))
        .await;
    assert_error_ack(&ack, Some("big-1"), "too_large");
    // The limit is in bytes, not characters.
    let ack = alice
        .send("alice", "bob", "big-2", &"é".repeat(8 * 1024 + 1))
        .await;
    assert_error_ack(&ack, Some("big-2"), "too_large");
    // Exactly the limit is fine.
    let text = "y".repeat(16 * 1024);
    let ack = alice.send("alice", "bob", "big-3", &text).await;
    let id = assert_sent_ack(&ack, "big-3");
    let m = bob.next_on("user/bob/inbox").await;
    assert_inbox(&m, &id, "alice", "bob", &text);
    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_follows_the_configured_limit() {
    let s = Server::start_with("[limits]\nmax_text_bytes = 10\n");
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let mut alice = online5(&s, "alice", "alice").await;
    let ack = alice.send("alice", "bob", "l-1", "12345678901").await;
    assert_error_ack(&ack, Some("l-1"), "too_large");
    let ack = alice.send("alice", "bob", "l-2", "1234567890").await;
    assert_sent_ack(&ack, "l-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_are_bad_requests() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;
    for (i, t) in ["image", "video", "audio", "file"].iter().enumerate() {
        let cid = format!("media-{i}");
        let ack = alice
            .send_json(
                "alice",
                &json!({"cid":cid,"to":"bob","type":t,"media":"m_9c1e","text":"caption"}),
            )
            .await;
        assert_error_ack(&ack, Some(&cid), "bad_request");
    }
    let ack = alice
        .send_json(
            "alice",
            &json!({"cid":"st","to":"bob","type":"sticker","text":"x"}),
        )
        .await;
    assert_error_ack(&ack, Some("st"), "bad_request");
    bob.nothing_on("user/bob/inbox", Duration::from_millis(500))
        .await;
    let h = history(&mut alice, "alice", json!({"with":"bob"})).await;
    assert_eq!(ids_of(&h), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_gets_a_bad_request_ack() {
    let s = server_abc();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    alice
        .publish_bytes("chat/alice/send", QoS::AtLeastOnce, b"{not json".to_vec())
        .await;
    let ack = alice.next_on("user/alice/ack").await;
    assert_error_ack(&ack, None, "bad_request");
    assert!(ack.get("cid").is_none(), "cid invented: {ack}");

    alice
        .publish_bytes("chat/alice/send", QoS::AtLeastOnce, b"[1,2,3]".to_vec())
        .await;
    let ack = alice.next_on("user/alice/ack").await;
    assert_error_ack(&ack, None, "bad_request");

    // Readable cid, invalid rest: the error names the cid.
    for (cid, msg) in [
        ("j-1", json!({"cid":"j-1","to":"bob","text":"no type"})),
        (
            "j-2",
            json!({"cid":"j-2","type":"text","text":"no recipient"}),
        ),
        ("j-3", json!({"cid":"j-3","to":"bob","type":"text"})),
        (
            "j-4",
            json!({"cid":"j-4","to":"bob","type":"text","text":""}),
        ),
        (
            "j-5",
            json!({"cid":"j-5","to":"bob","type":"text","text":42}),
        ),
        (
            "j-6",
            json!({"cid":"j-6","to":"bob","type":"text","text":"hi","colour":"red"}),
        ),
        (
            "j-7",
            json!({"cid":"j-7","to":"bob","type":"text","text":"hi","group":"g1"}),
        ),
    ] {
        let ack = alice.send_json("alice", &msg).await;
        assert_error_ack(&ack, Some(cid), "bad_request");
    }
    let ack = alice
        .send_json("alice", &json!({"to":"bob","type":"text","text":"no cid"}))
        .await;
    assert_error_ack(&ack, None, "bad_request");

    bob.nothing_on("user/bob/inbox", Duration::from_millis(500))
        .await;
    // The connection survives all of that.
    let ack = alice.send("alice", "bob", "j-ok", "fine").await;
    let id = assert_sent_ack(&ack, "j-ok");
    assert_inbox(
        &bob.next_on("user/bob/inbox").await,
        &id,
        "alice",
        "bob",
        "fine",
    );
}
