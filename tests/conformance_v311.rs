//! MQTT 3.1.1 conformance: one test per normative statement (or small group of statements about
//! one exchange) of the session layer that chatd keeps, named after the statement's number, over
//! raw sockets so that the exact bytes of each answer are checked. docs/mqtt-conformance.md lists
//! every statement with its status and the test that checks it; statements already checked by
//! other modules (bad_input, transports, session_limits, ...) are cited there, not repeated here.
//!
//! The `pub(crate)` helpers are shared with `conformance_v5`.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::raw::{self, Connect, Packet, Raw, V};
use support::{unique, Server};

/// How long a test waits for the server to close a connection it must close.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// A new user with password "pw".
pub(crate) fn user(srv: &Server, prefix: &str) -> String {
    let u = unique(prefix);
    srv.add_user(&u, "pw");
    u
}

/// `connect` encoded, with its Connect Flags byte passed through `change` (to set bits that
/// [`Connect`] never sets: the reserved bit, a will QoS without a will, ...).
pub(crate) fn with_flags(connect: &Connect, change: impl Fn(u8) -> u8) -> Vec<u8> {
    let mut bytes = connect.encode();
    let header = chatd_wire::mqtt::frame::read_header(&bytes)
        .expect("a CONNECT the test built")
        .expect("a whole CONNECT")
        .header_len;
    // Protocol name (two length bytes and the name), then the level, then the flags.
    let at = header + 2 + connect.protocol_name.len() + 1;
    bytes[at] = change(bytes[at]);
    bytes
}

/// An UNSUBSCRIBE (shared with the 5.0 module under this name).
pub(crate) use support::raw::unsubscribe;

/// A PUBREL for `pkid` (fixed header flags 0010, as the protocol wants).
pub(crate) fn pubrel(pkid: u16) -> Vec<u8> {
    raw::frame((raw::PUBREL << 4) | 0x02, &pkid.to_be_bytes())
}

/// A request on `chat/{me}/rpc` that the server answers on `user/{me}/rpc` with the same
/// `rid` (an unknown op: refused, but answered, and cheap).
pub(crate) fn request(rid: &str) -> Vec<u8> {
    json!({"rid": rid, "op": "conformance.echo"})
        .to_string()
        .into_bytes()
}

/// The next reply on `user/{me}/rpc`, as JSON.
pub(crate) async fn reply(r: &mut Raw, me: &str) -> Value {
    r.next_json_on(&format!("user/{me}/rpc")).await
}

/// The packet id at the front of an acknowledgement's body.
pub(crate) fn packet_id(p: &Packet) -> u16 {
    u16::from_be_bytes([p.body[0], p.body[1]])
}

/// The next packet of `kind`; other packets met on the way are acknowledged (QoS 1 PUBLISH)
/// and kept (PUBLISH) or dropped.
pub(crate) async fn next_of(r: &mut Raw, kind: u8) -> Packet {
    r.read_until(Duration::from_secs(20), |p| p.kind() == kind)
        .await
        .unwrap_or_else(|e| panic!("no packet of type {kind}: {e:?}"))
}

/// Asserts that the server closes `r` having sent nothing at all (no CONNACK either).
pub(crate) async fn closed_silently(r: &mut Raw, what: &str) {
    let seen = r.expect_closed(CLOSE_WAIT, what).await;
    assert!(seen.is_empty(), "{what}: the server answered {seen:?}");
}

/// Asserts that the server answers `r` with exactly one CONNACK of `code` (session present 0)
/// and then closes the connection.
pub(crate) async fn refused_then_closed(r: &mut Raw, v: V, code: u8, what: &str) {
    let seen = r.expect_closed(CLOSE_WAIT, what).await;
    assert_eq!(seen.len(), 1, "{what}: expected one CONNACK, got {seen:?}");
    let connack = &seen[0];
    assert_eq!(connack.kind(), raw::CONNACK, "{what}: {seen:?}");
    assert_eq!(connack.body[0], 0, "{what}: session present with a refusal");
    assert_eq!(connack.connack_code(), code, "{what}: CONNACK code");
    if v == V::V4 {
        assert_eq!(connack.body.len(), 2, "{what}: 3.1.1 CONNACK length");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_1_a_foreign_protocol_name_is_not_served() {
    let srv = Server::start();
    let me = user(&srv, "name");
    for name in ["MQTX", "mqtt", "MQT"] {
        let mut connect = Connect::new(V::V4, &me, &me, "pw");
        connect.protocol_name = name.into();
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        r.send(&connect.encode()).await;
        closed_silently(&mut r, &format!("protocol name {name:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_11_3_1_2_13_3_1_2_15_will_fields_without_a_will_close() {
    let srv = Server::start();
    let me = user(&srv, "nowill");
    let connect = Connect::new(V::V4, &me, &me, "pw");
    // Will QoS 1, will QoS 2, will retain: each without the will flag.
    for (bits, what) in [
        (0x08, "will QoS 1"),
        (0x10, "will QoS 2"),
        (0x20, "will retain"),
    ] {
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        r.send(&with_flags(&connect, |f| f | bits)).await;
        closed_silently(&mut r, &format!("{what} without the will flag")).await;
    }
    // The same CONNECT without those bits is accepted: the bits alone made the difference.
    Raw::login_with(srv.mqtt, &connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_14_will_qos_3_closes() {
    let srv = Server::start();
    let me = user(&srv, "willq3");
    let connect = Connect::new(V::V4, &me, &me, "pw").will(&format!("chat/{me}/typing"), b"{}");
    let mut r = Raw::open(srv.mqtt, V::V4).await;
    r.send(&with_flags(&connect, |f| f | 0x18)).await;
    closed_silently(&mut r, "will QoS 3").await;
    Raw::login_with(srv.mqtt, &connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_5_short_alphanumeric_client_ids_are_allowed() {
    let srv = Server::start();
    // chatd ties a client id to its user (`{user}` or `{user}:{device}`), so the ids are users.
    for id in ["Q", "A1b2C3d4E5f6G7h8I9j0K1L"] {
        assert!(id.len() <= 23);
        srv.add_user(id, "pw");
        let (_r, code) = Raw::connect_with(srv.mqtt, &Connect::new(V::V4, id, id, "pw")).await;
        assert_eq!(code, Ok(0), "client id {id:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_8_3_1_3_9_refused_client_ids_get_code_2_then_close() {
    let srv = Server::start();
    let me = user(&srv, "cid");
    let other = user(&srv, "cidother");
    // A zero-byte client id with CleanSession 0.
    let mut connect = Connect::new(V::V4, "", &me, "pw");
    connect.clean = false;
    let mut r = connect_only(&srv, &connect).await;
    refused_then_closed(&mut r, V::V4, 2, "zero-byte client id, CleanSession 0").await;
    // A client id the server rejects: another user's.
    let connect = Connect::new(V::V4, &other, &me, "pw");
    let mut r = connect_only(&srv, &connect).await;
    refused_then_closed(&mut r, V::V4, 2, "another user's client id").await;
}

/// Sends `connect` on a new connection without reading the answer.
pub(crate) async fn connect_only(srv: &Server, connect: &Connect) -> Raw {
    let v = if connect.level == 5 { V::V5 } else { V::V4 };
    let mut r = Raw::open(srv.mqtt, v).await;
    r.send(&connect.encode()).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_5_3_2_2_4_3_2_2_5_nothing_after_a_refused_connect_is_processed() {
    let srv = Server::start();
    let me = user(&srv, "refused");
    // A wrong password, and in the same write a SUBSCRIBE and a PINGREQ: neither may be answered.
    let mut bytes = Connect::new(V::V4, &me, &me, "wrong").encode();
    bytes.extend(raw::subscribe(V::V4, 1, &[(&format!("user/{me}/#"), 1)]));
    bytes.extend(raw::pingreq());
    let mut r = Raw::open(srv.mqtt, V::V4).await;
    r.send(&bytes).await;
    refused_then_closed(&mut r, V::V4, 4, "wrong password").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_0_1_3_2_2_1_connack_comes_first_with_session_present_0() {
    let srv = Server::start();
    let me = user(&srv, "connack");
    let mut r = Raw::open(srv.mqtt, V::V4).await;
    // CONNECT and a PINGREQ at once: the CONNACK must still come first.
    let mut bytes = Connect::new(V::V4, &me, &me, "pw").encode();
    bytes.extend(raw::pingreq());
    r.send(&bytes).await;
    let first = r
        .read_packet(Duration::from_secs(20))
        .await
        .expect("an answer to CONNECT");
    // Type 2 with no flags, remaining length 2, reserved bits and session present 0, code 0.
    assert_eq!(first.first, 0x20, "first packet: {first:?}");
    assert_eq!(first.body, vec![0x00, 0x00], "CONNACK: {first:?}");
    let second = r
        .read_packet(Duration::from_secs(20))
        .await
        .expect("an answer to PINGREQ");
    assert_eq!(second.kind(), raw::PINGRESP, "after CONNACK: {second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_12_4_1_pingreq_gets_pingresp() {
    let srv = Server::start();
    let me = user(&srv, "ping");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    for _ in 0..3 {
        r.send(&raw::pingreq()).await;
        let p = r
            .read_packet(Duration::from_secs(20))
            .await
            .expect("PINGRESP");
        assert_eq!(
            (p.first, p.body.len()),
            (0xD0, 0),
            "answer to PINGREQ: {p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_8_4_1_3_8_4_2_3_8_4_4_3_8_4_5_3_9_3_1_suback_one_code_per_filter_in_order() {
    let srv = Server::start();
    let me = user(&srv, "suback");
    let other = user(&srv, "subother");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    let filters = [
        (format!("user/{me}/inbox"), 1),
        (format!("user/{other}/inbox"), 1),
        (format!("user/{me}/rpc"), 0),
        (format!("presence/{other}"), 2),
        (format!("user/{me}/ack"), 2),
    ];
    let filters: Vec<(&str, u8)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    r.send(&raw::subscribe(V::V4, 0x1234, &filters)).await;
    let suback = next_of(&mut r, raw::SUBACK).await;
    assert_eq!(suback.first, 0x90, "SUBACK fixed header");
    assert_eq!(packet_id(&suback), 0x1234, "SUBACK packet id");
    // Granted QoS is at most 1; another user's topic fails (0x80); order as in the SUBSCRIBE.
    assert_eq!(suback.suback_codes(V::V4), vec![1, 0x80, 0, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_8_4_3_a_repeated_filter_replaces_the_subscription() {
    let srv = Server::start();
    let me = user(&srv, "resub");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    let rpc = format!("user/{me}/rpc");
    let send = format!("chat/{me}/rpc");
    for (i, qos) in [1u8, 0, 1].into_iter().enumerate() {
        assert_eq!(r.subscribe(i as u16 + 1, &[(&rpc, qos)]).await, vec![qos]);
        let rid = format!("r{i}");
        r.send(&raw::publish(V::V4, &send, &request(&rid), 0, 0))
            .await;
        let p = r
            .next_publish_on(&rpc, Duration::from_secs(20))
            .await
            .expect("a reply");
        assert_eq!(p.json()["rid"], rid.as_str());
        assert_eq!(p.qos, qos, "reply QoS after subscribing at {qos}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_4_4_3_10_4_5_unsuback_has_the_packet_id_even_without_a_subscription() {
    let srv = Server::start();
    let me = user(&srv, "unsub");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    let rpc = format!("user/{me}/rpc");
    // Not subscribed: still answered.
    r.send(&unsubscribe(V::V4, 0x0A0B, &[&rpc])).await;
    let unsuback = next_of(&mut r, raw::UNSUBACK).await;
    assert_eq!(
        (unsuback.first, unsuback.body.clone()),
        (0xB0, vec![0x0A, 0x0B])
    );
    // Subscribed, and two filters at once: one UNSUBACK.
    r.subscribe(1, &[(&rpc, 1)]).await;
    r.send(&unsubscribe(
        V::V4,
        0xFFFF,
        &[&rpc, &format!("user/{me}/ack")],
    ))
    .await;
    let unsuback = next_of(&mut r, raw::UNSUBACK).await;
    assert_eq!(
        (unsuback.first, unsuback.body.clone()),
        (0xB0, vec![0xFF, 0xFF])
    );
    assert!(r.ping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_4_2_nothing_new_is_sent_after_unsubscribe() {
    let srv = Server::start();
    let me = user(&srv, "unsubnew");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    let rpc = format!("user/{me}/rpc");
    let send = format!("chat/{me}/rpc");
    r.subscribe(1, &[(&rpc, 1)]).await;
    assert_eq!(r.publish_qos1(&send, &request("before"), 1).await, 0);
    assert_eq!(reply(&mut r, &me).await["rid"], "before");
    r.send(&unsubscribe(V::V4, 2, &[&rpc])).await;
    next_of(&mut r, raw::UNSUBACK).await;
    // Answered after the UNSUBSCRIBE: its reply must not come (it would be kept by the reads
    // below and come out first).
    assert_eq!(r.publish_qos1(&send, &request("between"), 3).await, 0);
    r.subscribe(4, &[(&rpc, 1)]).await;
    assert_eq!(r.publish_qos1(&send, &request("after"), 5).await, 0);
    assert_eq!(reply(&mut r, &me).await["rid"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_1_4_3_2_2_puback_carries_the_packet_id_which_is_then_free() {
    let srv = Server::start();
    let me = user(&srv, "puback");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    r.subscribe(1, &[(&format!("user/{me}/rpc"), 1)]).await;
    let send = format!("chat/{me}/rpc");
    for (pkid, rid) in [(0xBEEF, "first"), (0x0001, "second"), (0xBEEF, "again")] {
        r.send(&raw::publish(V::V4, &send, &request(rid), 1, pkid))
            .await;
        let puback = next_of(&mut r, raw::PUBACK).await;
        // 3.1.1 PUBACK: type 4, no flags, exactly the packet id.
        assert_eq!(
            (puback.first, puback.body.clone()),
            (0x40, pkid.to_be_bytes().to_vec())
        );
        // An id acknowledged before is a new publication when used again: acted on again.
        assert_eq!(reply(&mut r, &me).await["rid"], rid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_1_4_3_3_2_qos2_publish_is_answered_pubrec_pubrel_pubcomp_and_acted_on_once() {
    let srv = Server::start();
    let me = user(&srv, "qos2");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    r.subscribe(1, &[(&format!("user/{me}/rpc"), 1)]).await;
    let send = format!("chat/{me}/rpc");
    r.send(&raw::publish(V::V4, &send, &request("once"), 2, 7))
        .await;
    let pubrec = next_of(&mut r, raw::PUBREC).await;
    assert_eq!((pubrec.first, pubrec.body.clone()), (0x50, vec![0, 7]));
    assert_eq!(reply(&mut r, &me).await["rid"], "once");
    // The same packet id again before PUBREL (a retransmission, DUP set): PUBREC again, and the
    // publication is not acted on a second time (its different rid would be answered).
    let mut dup = raw::publish(V::V4, &send, &request("duplicate"), 2, 7);
    dup[0] |= 0x08;
    r.send(&dup).await;
    let pubrec = next_of(&mut r, raw::PUBREC).await;
    assert_eq!(packet_id(&pubrec), 7);
    r.send(&pubrel(7)).await;
    let pubcomp = next_of(&mut r, raw::PUBCOMP).await;
    assert_eq!((pubcomp.first, pubcomp.body.clone()), (0x70, vec![0, 7]));
    // After PUBCOMP the id starts a new publication, which is acted on.
    r.send(&raw::publish(V::V4, &send, &request("new"), 2, 7))
        .await;
    assert_eq!(packet_id(&next_of(&mut r, raw::PUBREC).await), 7);
    assert_eq!(
        reply(&mut r, &me).await["rid"],
        "new",
        "the retransmission was acted on"
    );
    r.send(&pubrel(7)).await;
    assert_eq!(packet_id(&next_of(&mut r, raw::PUBCOMP).await), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_5_1_overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let srv = Server::start();
    let me = user(&srv, "overlap");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    let (all, rpc) = (format!("user/{me}/#"), format!("user/{me}/rpc"));
    assert_eq!(r.subscribe(1, &[(&all, 0), (&rpc, 1)]).await, vec![0, 1]);
    let send = format!("chat/{me}/rpc");
    for rid in ["o1", "o2"] {
        r.send(&raw::publish(V::V4, &send, &request(rid), 0, 0))
            .await;
    }
    let got = replies_until(&mut r, &rpc, "o2").await;
    assert_eq!(got, vec![(1, json!("o1")), (1, json!("o2"))]);
}

/// The (QoS, rid) of the replies on `topic` up to the one for `last_rid`, and of any that come
/// within a second after it: a second copy of a reply would come right behind the first.
pub(crate) async fn replies_until(r: &mut Raw, topic: &str, last_rid: &str) -> Vec<(u8, Value)> {
    let mut got = Vec::new();
    loop {
        let p = r
            .next_publish_on(topic, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("no reply on {topic} after {got:?}: {e:?}"));
        let rid = p.json()["rid"].clone();
        got.push((p.qos, rid.clone()));
        if rid == last_rid {
            break;
        }
    }
    for p in r.publishes_for(Duration::from_secs(1)).await {
        if p.topic == topic {
            got.push((p.qos, p.json()["rid"].clone()));
        }
    }
    got
}

/// A will that sends `text` from `me` to `to`.
pub(crate) fn will_message(me: &str, to: &str, text: &str) -> (String, Vec<u8>) {
    let payload = json!({"cid": unique("will"), "to": to, "type": "text", "text": text});
    (format!("chat/{me}/send"), payload.to_string().into_bytes())
}

/// Waits for `text` in `inbox`'s inbox; then, for `quiet`, checks that `absent` does not come.
pub(crate) async fn inbox_gets(
    inbox: &mut Raw,
    to: &str,
    text: &str,
    absent: &str,
    quiet: Duration,
) {
    let topic = format!("user/{to}/inbox");
    loop {
        let m = inbox.next_json_on(&topic).await;
        assert_ne!(m["text"], absent, "a discarded will was published");
        if m["text"] == text {
            break;
        }
    }
    for p in inbox.publishes_for(quiet).await {
        assert_ne!(p.json()["text"], absent, "a discarded will was published");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_8_3_1_2_10_3_14_4_3_the_will_is_published_on_a_drop_and_discarded_on_disconnect(
) {
    let srv = Server::start();
    let me = user(&srv, "will");
    let peer = user(&srv, "willpeer");
    let mut inbox = Raw::login(srv.mqtt, V::V4, &peer, &peer, "pw").await;
    inbox
        .subscribe(1, &[(&format!("user/{peer}/inbox"), 1)])
        .await;

    // DISCONNECT first: the will is discarded. A message sent afterwards arrives, the will not.
    let (topic, payload) = will_message(&me, &peer, "will after DISCONNECT");
    let connect = Connect::new(V::V4, &me, &me, "pw").will(&topic, &payload);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    r.send(&raw::disconnect()).await;
    r.expect_closed(CLOSE_WAIT, "after DISCONNECT").await;
    let mut sender = Raw::login(srv.mqtt, V::V4, &format!("{me}:s"), &me, "pw").await;
    let control = json!({"cid": unique("c"), "to": peer, "type": "text", "text": "control"});
    let send = format!("chat/{me}/send");
    assert_eq!(
        sender
            .publish_qos1(&send, control.to_string().as_bytes(), 1)
            .await,
        0
    );
    inbox_gets(
        &mut inbox,
        &peer,
        "control",
        "will after DISCONNECT",
        Duration::from_secs(3),
    )
    .await;

    // The connection dropped without DISCONNECT: the will is published, once.
    let (topic, payload) = will_message(&me, &peer, "will after a drop");
    let connect = Connect::new(V::V4, &me, &me, "pw").will(&topic, &payload);
    let r = Raw::login_with(srv.mqtt, &connect).await;
    drop(r);
    inbox_gets(
        &mut inbox,
        &peer,
        "will after a drop",
        "will after DISCONNECT",
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_3_1_3_10_3_1_ill_formed_utf8_closes_the_connection() {
    let srv = Server::start();
    let me = user(&srv, "surrogate");
    // U+D800 encoded as UTF-8 (ED A0 80): ill-formed, although each byte looks in place.
    let surrogate = [0xED, 0xA0, 0x80];
    let mut topic = format!("chat/{me}/").into_bytes();
    topic.extend(surrogate);
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    r.send(&raw::publish_bytes(V::V4, &topic, b"{}", 1, 1))
        .await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "surrogate in a topic name")
        .await;
    assert!(seen.iter().all(|p| p.kind() != raw::PUBACK), "{seen:?}");

    let mut filter = format!("user/{me}/").into_bytes();
    filter.extend(surrogate);
    let mut body = vec![0, 1];
    body.extend(raw::bin(&filter));
    body.push(1);
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    r.send(&raw::frame(0x82, &body)).await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "surrogate in a topic filter")
        .await;
    assert!(seen.iter().all(|p| p.kind() != raw::SUBACK), "{seen:?}");

    // And in an UNSUBSCRIBE's filter.
    let mut body = vec![0, 2];
    body.extend(raw::bin(&filter));
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    r.send(&raw::frame(0xA2, &body)).await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "surrogate in an UNSUBSCRIBE")
        .await;
    assert!(seen.iter().all(|p| p.kind() != raw::UNSUBACK), "{seen:?}");
}

/// `packet` with its first byte (type and flag bits) replaced by `first`.
pub(crate) fn with_first(mut packet: Vec<u8>, first: u8) -> Vec<u8> {
    packet[0] = first;
    packet
}

/// Packets of every type a client sends with flag bits other than the ones the specification
/// requires, each with a name for the assertion; `v` decides their bodies.
pub(crate) fn packets_with_wrong_flags(v: V, me: &str) -> Vec<(Vec<u8>, &'static str)> {
    let filter = format!("user/{me}/rpc");
    let subscribe = raw::subscribe(v, 1, &[(&filter, 1)]);
    let unsubscribe = unsubscribe(v, 2, &[&filter]);
    vec![
        (vec![0xC1, 0x00], "PINGREQ with flags 0001"),
        (raw::frame(0x42, &[0, 1]), "PUBACK with flags 0010"),
        (raw::frame(0x58, &[0, 1]), "PUBREC with flags 1000"),
        (raw::frame(0x60, &[0, 1]), "PUBREL with flags 0000"),
        (raw::frame(0x63, &[0, 1]), "PUBREL with flags 0011"),
        (raw::frame(0x74, &[0, 1]), "PUBCOMP with flags 0100"),
        (
            with_first(subscribe.clone(), 0x80),
            "SUBSCRIBE with flags 0000",
        ),
        (with_first(subscribe, 0x83), "SUBSCRIBE with flags 0011"),
        (with_first(unsubscribe, 0xA0), "UNSUBSCRIBE with flags 0000"),
        (vec![0xE1, 0x00], "DISCONNECT with flags 0001"),
    ]
}

/// Logs `me` in on a new 3.1.1 connection, sends `bytes`, and asserts that the server closes
/// the connection without answering them.
async fn closes_unanswered(srv: &Server, me: &str, bytes: &[u8], what: &str) {
    let mut r = Raw::login(srv.mqtt, V::V4, me, me, "pw").await;
    r.send(bytes).await;
    closed_silently(&mut r, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_2_2_2_2_3_6_1_1_3_8_1_1_3_10_1_1_3_14_1_1_wrong_fixed_header_flags_close() {
    let srv = Server::start();
    let me = user(&srv, "flags");
    for (bytes, what) in packets_with_wrong_flags(V::V4, &me) {
        closes_unanswered(&srv, &me, &bytes, what).await;
    }
    connect_flags_close_and_right_flags_serve(&srv, V::V4, &me).await;
}

/// A CONNECT with flags 0001 is closed without CONNACK; with the right flags, the packets
/// the flag tests broke (SUBSCRIBE, UNSUBSCRIBE, PUBREL, PINGREQ) are served.
pub(crate) async fn connect_flags_close_and_right_flags_serve(srv: &Server, v: V, me: &str) {
    let connect = with_first(Connect::new(v, me, me, "pw").encode(), 0x11);
    let mut r = Raw::open(srv.mqtt, v).await;
    r.send(&connect).await;
    closed_silently(&mut r, "CONNECT with flags 0001").await;
    let mut r = Raw::login(srv.mqtt, v, me, me, "pw").await;
    let filter = format!("user/{me}/rpc");
    assert_eq!(r.subscribe(1, &[(&filter, 1)]).await, vec![1]);
    r.send(&unsubscribe(v, 2, &[&filter])).await;
    next_of(&mut r, raw::UNSUBACK).await;
    r.send(&pubrel(3)).await;
    assert_eq!(packet_id(&next_of(&mut r, raw::PUBCOMP).await), 3);
    assert!(r.ping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_14_1_1_a_disconnect_with_flags_is_malformed_and_the_will_is_published() {
    malformed_disconnect_publishes_the_will(V::V4, |seen| {
        assert!(seen.is_empty(), "the server answered {seen:?}");
    })
    .await;
}

/// A connection with a will sends DISCONNECT with flags 0001; `check` looks at what the
/// server sent before closing. Not a DISCONNECT: the connection ended without one, so the
/// will is published.
pub(crate) async fn malformed_disconnect_publishes_the_will(v: V, check: impl Fn(&[Packet])) {
    let srv = Server::start();
    let me = user(&srv, "baddisc");
    let peer = user(&srv, "baddiscpeer");
    let mut inbox = Raw::login(srv.mqtt, v, &peer, &peer, "pw").await;
    inbox
        .subscribe(1, &[(&format!("user/{peer}/inbox"), 1)])
        .await;
    let text = "will after a malformed DISCONNECT";
    let (topic, payload) = will_message(&me, &peer, text);
    let connect = Connect::new(v, &me, &me, "pw").will(&topic, &payload);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    r.send(&[0xE1, 0x00]).await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "DISCONNECT with flags 0001")
        .await;
    check(&seen);
    inbox_gets(&mut inbox, &peer, text, "-", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_3_3_1_4_1_the_reserved_connect_flag_closes_without_connack() {
    let srv = Server::start();
    let me = user(&srv, "reserved");
    let connect = Connect::new(V::V4, &me, &me, "pw");
    let mut r = Raw::open(srv.mqtt, V::V4).await;
    r.send(&with_flags(&connect, |f| f | 0x01)).await;
    closed_silently(&mut r, "reserved connect flag set").await;
    // The same CONNECT without the bit is accepted.
    Raw::login_with(srv.mqtt, &connect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_22_3_1_4_1_a_password_without_a_user_name_closes_without_connack() {
    let srv = Server::start();
    let me = user(&srv, "nouser");
    let mut connect = Connect::new(V::V4, &me, &me, "pw");
    connect.username = None;
    let mut r = connect_only(&srv, &connect).await;
    closed_silently(&mut r, "password flag without user name flag").await;
    // Neither flag: a well-formed CONNECT, refused for its missing credentials.
    connect.password = None;
    let mut r = connect_only(&srv, &connect).await;
    refused_then_closed(&mut r, V::V4, 4, "no user name, no password").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_8_3_4_reserved_bits_of_the_requested_qos_or_qos_3_close() {
    let srv = Server::start();
    let me = user(&srv, "subopts");
    let filter = format!("user/{me}/rpc");
    for options in [0x04u8, 0x41, 0x80, 0xFD, 0x03] {
        let bytes = raw::subscribe(V::V4, 1, &[(&filter, options)]);
        let what = format!("requested QoS byte {options:#04x}");
        closes_unanswered(&srv, &me, &bytes, &what).await;
    }
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    assert_eq!(r.subscribe(1, &[(&filter, 1)]).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_3_2_an_unsubscribe_without_filters_closes() {
    let srv = Server::start();
    let me = user(&srv, "unsubnone");
    closes_unanswered(
        &srv,
        &me,
        &unsubscribe(V::V4, 7, &[]),
        "UNSUBSCRIBE without filters",
    )
    .await;
}

/// A SUBSCRIBE, an UNSUBSCRIBE and a PUBLISH with U+0000 in their filter or topic name.
pub(crate) fn packets_with_u0000(v: V, me: &str) -> [(Vec<u8>, &'static str); 3] {
    let filter = format!("user/{me}/a\u{0}b");
    let topic = format!("chat/{me}/rpc\u{0}");
    [
        (
            raw::subscribe(v, 1, &[(&filter, 1)]),
            "in a SUBSCRIBE's filter",
        ),
        (unsubscribe(v, 2, &[&filter]), "in an UNSUBSCRIBE's filter"),
        (
            raw::publish(v, &topic, &request("nul"), 1, 3),
            "in a topic name",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_3_2_u0000_in_a_string_closes_the_connection() {
    let srv = Server::start();
    let me = user(&srv, "nul");
    for (bytes, what) in packets_with_u0000(V::V4, &me) {
        closes_unanswered(&srv, &me, &bytes, &format!("U+0000 {what}")).await;
    }
    // In the client id of a CONNECT: closed without CONNACK.
    let mut r = connect_only(&srv, &Connect::new(V::V4, &format!("{me}\u{0}"), &me, "pw")).await;
    closed_silently(&mut r, "U+0000 in the client id").await;
}
