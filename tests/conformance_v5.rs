//! MQTT 5.0 conformance: one test per normative statement (or small group of statements about
//! one exchange) of the session layer that chatd keeps, named after the statement's number, over
//! raw sockets. docs/mqtt-conformance.md lists every statement with its status and its test;
//! statements checked elsewhere (bad_input, transports, session_limits, and the modules of the
//! persistent-session and strict-error work) are cited there, not repeated here.

use std::time::Duration;

use crate::conformance_v311::{
    closed_silently, connect_flags_close_and_right_flags_serve, connect_only, inbox_gets,
    malformed_disconnect_publishes_the_will, next_of, packet_id, packets_with_u0000,
    packets_with_wrong_flags, refused_then_closed, replies_until, request, unsubscribe, user,
    will_message, with_flags, CLOSE_WAIT,
};
use crate::support;

use serde_json::json;
use support::raw::{self, Connect, Packet, Raw, ReadError, V};
use support::Server;

/// The properties of a 5.0 packet whose property length starts at `at` in its body, as
/// (identifier, value bytes) pairs; panics on an identifier this test does not know.
fn properties(p: &Packet, at: usize) -> Vec<(u8, Vec<u8>)> {
    let rest = &p.body[at..];
    let (len, n) = varint(rest);
    let mut props = &rest[n..n + len];
    let mut out = Vec::new();
    while let Some((&id, tail)) = props.split_first() {
        let size = match id {
            // Byte.
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            // Two Byte Integer.
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            // Four Byte Integer.
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            // UTF-8 string or binary data: a two-byte length first.
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                2 + u16::from_be_bytes([tail[0], tail[1]]) as usize
            }
            // A string pair.
            0x26 => {
                let first = 2 + u16::from_be_bytes([tail[0], tail[1]]) as usize;
                first + 2 + u16::from_be_bytes([tail[first], tail[first + 1]]) as usize
            }
            other => panic!("unexpected property {other:#x} in {p:?}"),
        };
        out.push((id, tail[..size].to_vec()));
        props = &tail[size..];
    }
    out
}

/// A variable byte integer at the front of `data`: (value, bytes it took).
fn varint(data: &[u8]) -> (usize, usize) {
    let decoded = chatd_wire::mqtt::varint::decode(data)
        .expect("a well-formed variable byte integer")
        .expect("a whole variable byte integer");
    (decoded.value, decoded.len)
}

/// Whole size of a packet as it was on the wire.
fn wire_size(p: &Packet) -> usize {
    1 + raw::varint(p.body.len()).len() + p.body.len()
}

/// A 5.0 PUBLISH with `props` (encoded, without their length).
fn publish_with(topic: &str, payload: &[u8], qos: u8, pkid: u16, props: &[u8]) -> Vec<u8> {
    let mut body = raw::string(topic);
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    body.extend(raw::varint(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    raw::frame((raw::PUBLISH << 4) | (qos << 1), &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_0_1_3_2_2_1_3_2_2_9_3_1_2_28_connack_comes_first_with_what_it_must_say() {
    let srv = Server::start();
    let me = user(&srv, "connack5");
    let mut connect = Connect::new(V::V5, &me, &me, "pw");
    // Request Response Information 0 and Request Problem Information 0.
    connect.properties.extend([0x19, 0x00, 0x17, 0x00]);
    let mut bytes = connect.encode();
    bytes.extend(raw::pingreq());
    let mut r = Raw::open(srv.mqtt, V::V5).await;
    r.send(&bytes).await;
    let connack = r
        .read_packet(Duration::from_secs(20))
        .await
        .expect("an answer to CONNECT");
    assert_eq!(connack.first, 0x20, "first packet: {connack:?}");
    // Reserved bits and session present 0 (Clean Start 1), reason code 0.
    assert_eq!(&connack.body[..2], &[0x00, 0x00], "CONNACK: {connack:?}");
    let props = properties(&connack, 2);
    let get = |id: u8| props.iter().find(|(i, _)| *i == id).map(|(_, v)| v.clone());
    assert_eq!(
        get(0x24),
        Some(vec![1]),
        "Maximum QoS: QoS 2 is not supported"
    );
    assert_eq!(get(0x22), Some(vec![0, 0]), "Topic Alias Maximum");
    // Nothing the client did not ask for or must not get: no Response Information (it asked for
    // none), no Authentication Method (it sent none), no Server Keep Alive (the client's own
    // keep-alive is used), no Assigned Client Identifier (it gave one).
    for (id, what) in [
        (0x1A, "Response Information"),
        (0x15, "Authentication Method"),
        (0x16, "Authentication Data"),
        (0x13, "Server Keep Alive"),
        (0x12, "Assigned Client Identifier"),
    ] {
        assert_eq!(get(id), None, "CONNACK carries {what}: {props:?}");
    }
    let pingresp = r
        .read_packet(Duration::from_secs(20))
        .await
        .expect("an answer to PINGREQ");
    assert_eq!(
        (pingresp.first, pingresp.body.len()),
        (0xD0, 0),
        "PINGRESP after CONNACK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_1_a_foreign_protocol_name_is_not_served() {
    let srv = Server::start();
    let me = user(&srv, "name5");
    let mut connect = Connect::new(V::V5, &me, &me, "pw");
    connect.protocol_name = "MQTX".into();
    let mut r = connect_only(&srv, &connect).await;
    closed_silently(&mut r, "protocol name MQTX").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_11_3_1_2_12_3_1_2_13_bad_will_flags_close() {
    let srv = Server::start();
    let me = user(&srv, "willflags5");
    let plain = Connect::new(V::V5, &me, &me, "pw");
    for (bits, what) in [(0x08, "will QoS 1"), (0x20, "will retain")] {
        let mut r = Raw::open(srv.mqtt, V::V5).await;
        r.send(&with_flags(&plain, |f| f | bits)).await;
        closed_silently(&mut r, &format!("{what} without the will flag")).await;
    }
    let with_will = plain
        .clone()
        .will(&format!("chat/{me}/typing"), br#"{"to":"x"}"#);
    let mut r = Raw::open(srv.mqtt, V::V5).await;
    r.send(&with_flags(&with_will, |f| f | 0x18)).await;
    closed_silently(&mut r, "will QoS 3").await;
    // Without the bad bits both are accepted.
    Raw::login_with(srv.mqtt, &plain).await;
    Raw::login_with(srv.mqtt, &with_will).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_5_short_alphanumeric_client_ids_are_allowed() {
    let srv = Server::start();
    for id in ["W", "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss"] {
        assert!(id.len() <= 23);
        srv.add_user(id, "pw");
        let (_r, code) = Raw::connect_with(srv.mqtt, &Connect::new(V::V5, id, id, "pw")).await;
        assert_eq!(code, Ok(0), "client id {id:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_8_3_2_2_6_3_2_2_7_3_14_0_1_refused_client_ids_get_0x85_then_close() {
    let srv = Server::start();
    let me = user(&srv, "cid5");
    let other = user(&srv, "cid5other");
    // The server assigns no client id (it may refuse an empty one), nor takes another user's.
    for (client_id, what) in [
        ("", "empty client id"),
        (other.as_str(), "another user's id"),
    ] {
        let mut r = connect_only(&srv, &Connect::new(V::V5, client_id, &me, "pw")).await;
        // Exactly one CONNACK (no DISCONNECT after a refusing CONNACK), then the close.
        refused_then_closed(&mut r, V::V5, 0x85, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_4_6_nothing_after_a_refused_connect_is_processed() {
    let srv = Server::start();
    let me = user(&srv, "refused5");
    let mut bytes = Connect::new(V::V5, &me, &me, "wrong").encode();
    bytes.extend(raw::subscribe(V::V5, 1, &[(&format!("user/{me}/#"), 1)]));
    bytes.extend(raw::pingreq());
    let mut r = Raw::open(srv.mqtt, V::V5).await;
    r.send(&bytes).await;
    refused_then_closed(&mut r, V::V5, 0x86, "wrong password").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_8_4_1_3_8_4_2_3_8_4_6_3_8_4_7_3_9_3_1_3_2_2_10_suback_codes_in_order() {
    let srv = Server::start();
    let me = user(&srv, "suback5");
    let other = user(&srv, "suback5o");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    let filters = [
        (format!("user/{me}/inbox"), 1),
        (format!("user/{other}/inbox"), 1),
        (format!("user/{me}/rpc"), 0),
        (format!("user/{me}/ack"), 2),
    ];
    let filters: Vec<(&str, u8)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    r.send(&raw::subscribe(V::V5, 0x4321, &filters)).await;
    let suback = next_of(&mut r, raw::SUBACK).await;
    assert_eq!(suback.first, 0x90);
    assert_eq!(packet_id(&suback), 0x4321, "SUBACK packet id");
    // QoS 2 asked: accepted and granted 1 (the server's Maximum QoS); another user's: 0x87.
    assert_eq!(suback.suback_codes(V::V5), vec![1, 0x87, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_4_4_3_10_4_5_3_11_3_1_unsuback_codes_in_order_with_the_packet_id() {
    let srv = Server::start();
    let me = user(&srv, "unsub5");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    let (rpc, ack) = (format!("user/{me}/rpc"), format!("user/{me}/ack"));
    r.subscribe(1, &[(&rpc, 1)]).await;
    r.send(&unsubscribe(V::V5, 0x0C0D, &[&ack, &rpc, &rpc]))
        .await;
    let unsuback = next_of(&mut r, raw::UNSUBACK).await;
    assert_eq!(unsuback.first, 0xB0);
    assert_eq!(packet_id(&unsuback), 0x0C0D, "UNSUBACK packet id");
    let (len, n) = varint(&unsuback.body[2..]);
    // Not held, held (removed), no longer held.
    assert_eq!(&unsuback.body[2 + n + len..], &[0x11, 0x00, 0x11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_1_4_3_2_4_3_4_2_1_puback_has_the_packet_id_and_a_puback_reason() {
    let srv = Server::start();
    let me = user(&srv, "puback5");
    let other = user(&srv, "puback5o");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    r.subscribe(1, &[(&format!("user/{me}/rpc"), 1)]).await;
    let cases = [
        (format!("chat/{me}/rpc"), 0xABCD, 0x00),
        // Another user's topic: refused, answered 0x87, and the connection goes on.
        (format!("chat/{other}/rpc"), 0x0102, 0x87),
        (format!("chat/{me}/rpc"), 0xABCD, 0x00),
    ];
    for (topic, pkid, code) in cases {
        r.send(&raw::publish(V::V5, &topic, &request("x"), 1, pkid))
            .await;
        let puback = next_of(&mut r, raw::PUBACK).await;
        assert_eq!(puback.first, 0x40);
        assert_eq!(puback.puback(), (pkid, code), "PUBACK for {topic}");
    }
    assert!(r.ping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_12_4_13_1_1_a_topic_alias_is_refused_with_0x94() {
    let srv = Server::start();
    let me = user(&srv, "alias5");
    // The server's Topic Alias Maximum is 0, so any alias is one it never accepted.
    for alias in [1u16, 0] {
        let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
        let mut props = vec![0x23];
        props.extend(alias.to_be_bytes());
        r.send(&publish_with(
            &format!("chat/{me}/rpc"),
            &request("alias"),
            1,
            9,
            &props,
        ))
        .await;
        let seen = r
            .expect_closed(CLOSE_WAIT, &format!("topic alias {alias}"))
            .await;
        // A DISCONNECT 0x94 with no properties (so no Session Expiry Interval), then the close.
        let last = seen.last().expect("a DISCONNECT before the close");
        assert_eq!((last.first, last.body.clone()), (0xE0, vec![0x94, 0x00]));
        assert!(
            seen.iter().all(|p| p.kind() != raw::PUBACK),
            "the PUBLISH was acknowledged: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_24_3_1_2_25_no_packet_exceeds_the_client_maximum_packet_size() {
    const MAX: usize = 160;
    let srv = Server::start();
    let me = user(&srv, "mps5");
    let connect = Connect::new(V::V5, &me, &me, "pw").maximum_packet_size(MAX as u32);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    r.subscribe(1, &[(&format!("user/{me}/rpc"), 1)]).await;
    let send = format!("chat/{me}/rpc");
    // A reply that cannot fit (its rid alone is 120 bytes), then one that fits.
    let big = "b".repeat(120);
    r.send(&raw::publish(V::V5, &send, &request(&big), 0, 0))
        .await;
    r.send(&raw::publish(V::V5, &send, &request("small"), 0, 0))
        .await;
    r.send(&raw::pingreq()).await;
    let mut replies = Vec::new();
    let mut pinged = false;
    while !pinged || replies.is_empty() {
        let p = r
            .read_packet(Duration::from_secs(20))
            .await
            .expect("the reply that fits, and PINGRESP");
        assert!(wire_size(&p) <= MAX, "{} bytes: {p:?}", wire_size(&p));
        match p.kind() {
            raw::PINGRESP => pinged = true,
            raw::PUBLISH => {
                let publish = p.publish(V::V5);
                r.send(&raw::puback(publish.pkid)).await;
                replies.push(publish.json()["rid"].clone());
            }
            _ => panic!("unexpected {p:?}"),
        }
    }
    // The large one was left out as if sent: the connection went on to the next.
    assert_eq!(replies, vec![json!("small")]);
    assert!(r.ping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_9_3_3_4_10_4_9_0_2_4_9_0_3_receive_maximum_holds_publishes_not_other_packets() {
    let srv = Server::start();
    let me = user(&srv, "rm5");
    let connect = Connect::new(V::V5, &me, &me, "pw").receive_maximum(1);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    r.subscribe(1, &[(&format!("user/{me}/rpc"), 1)]).await;
    let send = format!("chat/{me}/rpc");
    for rid in ["r1", "r2", "r3"] {
        r.send(&raw::publish(V::V5, &send, &request(rid), 0, 0))
            .await;
    }
    for rid in ["r1", "r2", "r3"] {
        // Read by hand: nothing is acknowledged until the test says so.
        let p = r
            .read_packet(Duration::from_secs(20))
            .await
            .expect("a reply");
        let publish = p.publish(V::V5);
        assert_eq!(
            (publish.qos, publish.json()["rid"].clone()),
            (1, json!(rid))
        );
        assert_ne!(publish.pkid, 0, "a QoS 1 PUBLISH with packet id 0");
        assert_eq!(p.first & 0x08, 0, "DUP set on a first delivery");
        // The quota is used up: PINGREQ is still answered at once, and no PUBLISH comes.
        r.send(&raw::pingreq()).await;
        let next = r
            .read_packet(Duration::from_secs(20))
            .await
            .expect("PINGRESP while the quota is 0");
        assert_eq!(next.kind(), raw::PINGRESP, "{next:?} with the quota at 0");
        assert_eq!(
            r.read_packet(Duration::from_millis(700)).await,
            Err(ReadError::Timeout),
            "a second QoS 1 PUBLISH beyond Receive Maximum 1"
        );
        r.send(&raw::puback(publish.pkid)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_2_3_3_2_3_3_1_2_27_qos0_deliveries_match_the_filter_without_dup_or_alias() {
    let srv = Server::start();
    let me = user(&srv, "qos0");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    let filter = format!("user/{me}/+");
    r.subscribe(1, &[(&filter, 0)]).await;
    r.send(&raw::publish(
        V::V5,
        &format!("chat/{me}/rpc"),
        &request("q0"),
        0,
        0,
    ))
    .await;
    let p = r
        .read_until(Duration::from_secs(20), |p| p.kind() == raw::PUBLISH)
        .await
        .expect("the reply");
    // QoS 0, DUP 0, RETAIN 0; the topic one the filter matches; no properties, so no alias.
    assert_eq!(p.first, 0x30, "{p:?}");
    let publish = p.publish(V::V5);
    assert_eq!(publish.topic, format!("user/{me}/rpc"));
    let topic_end = 2 + publish.topic.len();
    assert_eq!(properties(&p, topic_end), vec![], "properties on {p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_2_overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let srv = Server::start();
    let me = user(&srv, "overlap5");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    let codes = r
        .subscribe(
            1,
            &[(&format!("user/{me}/#"), 0), (&format!("user/{me}/rpc"), 1)],
        )
        .await;
    assert_eq!(codes, vec![0, 1]);
    let send = format!("chat/{me}/rpc");
    for rid in ["o1", "o2"] {
        r.send(&raw::publish(V::V5, &send, &request(rid), 0, 0))
            .await;
    }
    let topic = format!("user/{me}/rpc");
    let got = replies_until(&mut r, &topic, "o2").await;
    assert_eq!(got, vec![(1, json!("o1")), (1, json!("o2"))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_14_4_3_3_1_2_10_disconnect_0x00_discards_the_will() {
    let srv = Server::start();
    let me = user(&srv, "will5");
    let peer = user(&srv, "will5peer");
    let mut inbox = Raw::login(srv.mqtt, V::V5, &peer, &peer, "pw").await;
    inbox
        .subscribe(1, &[(&format!("user/{peer}/inbox"), 1)])
        .await;

    let (topic, payload) = will_message(&me, &peer, "will after DISCONNECT");
    let connect = Connect::new(V::V5, &me, &me, "pw").will(&topic, &payload);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    // DISCONNECT with reason 0x00 (normal disconnection) and no properties.
    r.send(&[0xE0, 0x02, 0x00, 0x00]).await;
    r.expect_closed(CLOSE_WAIT, "after DISCONNECT").await;
    let mut sender = Raw::login(srv.mqtt, V::V5, &format!("{me}:s"), &me, "pw").await;
    let control =
        json!({"cid": support::unique("c"), "to": peer, "type": "text", "text": "control"});
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

    // Without DISCONNECT the same will is published: the discarding above was the DISCONNECT's.
    let (topic, payload) = will_message(&me, &peer, "will after a drop");
    let connect = Connect::new(V::V5, &me, &me, "pw").will(&topic, &payload);
    drop(Raw::login_with(srv.mqtt, &connect).await);
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
async fn mqtt_1_5_4_1_ill_formed_utf8_closes_the_connection() {
    let srv = Server::start();
    let me = user(&srv, "surrogate5");
    let mut topic = format!("chat/{me}/").into_bytes();
    topic.extend([0xED, 0xA0, 0x80]);
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    r.send(&raw::publish_bytes(V::V5, &topic, b"{}", 1, 1))
        .await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "surrogate in a topic name")
        .await;
    let last = seen.last().expect("a DISCONNECT before the close");
    assert_eq!(last.kind(), raw::DISCONNECT, "{seen:?}");
    // Malformed Packet, or its more precise form for a topic.
    assert!([0x81, 0x90].contains(&last.disconnect_reason()), "{seen:?}");
    assert!(seen.iter().all(|p| p.kind() != raw::PUBACK), "{seen:?}");
}

/// Logs `me` in on a new 5.0 connection, sends `bytes`, and asserts that the server answers
/// them with nothing but DISCONNECT `reason`, then closes the connection.
async fn disconnected_with(srv: &Server, me: &str, bytes: &[u8], reason: u8, what: &str) {
    let mut r = Raw::login(srv.mqtt, V::V5, me, me, "pw").await;
    r.send(bytes).await;
    let seen = r.expect_closed(CLOSE_WAIT, what).await;
    assert_eq!(
        seen.len(),
        1,
        "{what}: expected one DISCONNECT, got {seen:?}"
    );
    assert_eq!(
        (seen[0].first, seen[0].body.clone()),
        (0xE0, vec![reason, 0x00]),
        "{what}: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_6_1_1_3_8_1_1_3_10_1_1_3_14_1_1_wrong_fixed_header_flags_get_0x81() {
    let srv = Server::start();
    let me = user(&srv, "flags5");
    for (bytes, what) in packets_with_wrong_flags(V::V5, &me) {
        disconnected_with(&srv, &me, &bytes, 0x81, what).await;
    }
    connect_flags_close_and_right_flags_serve(&srv, V::V5, &me).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_14_1_1_a_disconnect_with_flags_gets_0x81_and_the_will_is_published() {
    malformed_disconnect_publishes_the_will(V::V5, |seen| {
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].disconnect_reason(), 0x81, "{seen:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_3_3_1_4_1_the_reserved_connect_flag_closes() {
    let srv = Server::start();
    let me = user(&srv, "reserved5");
    let connect = Connect::new(V::V5, &me, &me, "pw");
    let mut r = Raw::open(srv.mqtt, V::V5).await;
    r.send(&with_flags(&connect, |f| f | 0x01)).await;
    closed_silently(&mut r, "reserved connect flag set").await;
    Raw::login_with(srv.mqtt, &connect).await;
    // 5.0, unlike 3.1.1, allows a password without a user name: a well-formed CONNECT, refused
    // because chatd needs the user name.
    let mut connect = connect;
    connect.username = None;
    let mut r = connect_only(&srv, &connect).await;
    refused_then_closed(&mut r, V::V5, 0x86, "password without user name").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_8_3_5_reserved_subscription_option_bits_get_0x81() {
    let srv = Server::start();
    let me = user(&srv, "subopts5");
    let filter = format!("user/{me}/rpc");
    // Bits 6 and 7 are reserved: malformed.
    for options in [0x41u8, 0x81, 0xC0] {
        let bytes = raw::subscribe(V::V5, 1, &[(&filter, options)]);
        let what = format!("subscription options {options:#04x}");
        disconnected_with(&srv, &me, &bytes, 0x81, &what).await;
    }
    // Maximum QoS 3 and Retain Handling 3 are protocol errors (section 3.8.3.1).
    for options in [0x03u8, 0x31] {
        let bytes = raw::subscribe(V::V5, 1, &[(&filter, options)]);
        let what = format!("subscription options {options:#04x}");
        disconnected_with(&srv, &me, &bytes, 0x82, &what).await;
    }
    // Every option that is allowed at once: No Local, Retain As Published, Retain Handling 2.
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    assert_eq!(r.subscribe(1, &[(&filter, 0x2D)]).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_3_2_an_unsubscribe_without_filters_gets_0x82() {
    let srv = Server::start();
    let me = user(&srv, "unsubnone5");
    let bytes = unsubscribe(V::V5, 7, &[]);
    disconnected_with(&srv, &me, &bytes, 0x82, "UNSUBSCRIBE without filters").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_4_2_u0000_in_a_topic_filter_or_name_gets_0x81() {
    let srv = Server::start();
    let me = user(&srv, "nul5");
    for (bytes, what) in packets_with_u0000(V::V5, &me) {
        disconnected_with(&srv, &me, &bytes, 0x81, &format!("U+0000 {what}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_12_0_1_an_authentication_method_gets_0x8c_then_close() {
    let srv = Server::start();
    let me = user(&srv, "authm5");
    // Authentication Method "SCRAM-SHA-1" with the right password.
    let mut connect = Connect::new(V::V5, &me, &me, "pw");
    connect.properties.extend([0x15, 0x00, 0x0B]);
    connect.properties.extend(b"SCRAM-SHA-1");
    let mut r = connect_only(&srv, &connect).await;
    refused_then_closed(&mut r, V::V5, 0x8C, "Authentication Method").await;
}
