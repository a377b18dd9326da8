//! MQTT conformance, continued: tests for the statements docs/mqtt-conformance.md listed as
//! holding without a test (what chatd never sends, what it never rewrites, what a connection
//! keeps while it is open, MQTT over WebSocket framing). Named after the statements, over raw
//! sockets (and raw WebSocket frames) so that the exact bytes of each answer are checked.

use crate::conformance_v311::{
    packet_id, pubrel, replies_until, request, unsubscribe, user, CLOSE_WAIT,
};
use crate::support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::raw::{self, Connect, Packet, Raw, ReadError, V};
use support::{unique, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const READ_WAIT: Duration = Duration::from_secs(20);

/// Property identifiers a server must not send here: Reason String, User Property, Response
/// Information, Server Reference.
const REASON_STRING: u8 = 0x1F;
const USER_PROPERTY: u8 = 0x26;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;

/// Where the property length of a 5.0 packet from the server starts in its body, or None when
/// the packet has no properties (a PINGRESP, or an acknowledgement short enough to leave them
/// out, which MQTT 5.0 allows).
fn properties_at(p: &Packet) -> Option<usize> {
    match p.kind() {
        raw::CONNACK => (p.body.len() > 2).then_some(2),
        raw::PUBLISH => {
            let topic_len = u16::from_be_bytes([p.body[0], p.body[1]]) as usize;
            let pkid_len = if (p.first >> 1) & 3 > 0 { 2 } else { 0 };
            Some(2 + topic_len + pkid_len)
        }
        raw::PUBACK | raw::PUBREC | raw::PUBREL | raw::PUBCOMP => (p.body.len() > 3).then_some(3),
        raw::SUBACK | raw::UNSUBACK => Some(2),
        raw::DISCONNECT => (p.body.len() > 1).then_some(1),
        raw::PINGRESP => None,
        _ => panic!("a packet a server does not send: {p:?}"),
    }
}

/// The identifiers of the properties of a 5.0 packet from the server, in order.
fn property_ids(p: &Packet) -> Vec<u8> {
    let Some(at) = properties_at(p) else {
        return Vec::new();
    };
    let decoded = chatd_wire::mqtt::varint::decode(&p.body[at..])
        .unwrap_or_else(|e| panic!("property length of {p:?}: {e:?}"))
        .unwrap_or_else(|| panic!("property length of {p:?} cut short"));
    let start = at + decoded.len;
    let mut props = &p.body[start..start + decoded.value];
    let two = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]) as usize;
    let mut ids = Vec::new();
    while let Some((&id, tail)) = props.split_first() {
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => 2 + two(tail, 0),
            0x26 => {
                let name = 2 + two(tail, 0);
                name + 2 + two(tail, name)
            }
            other => panic!("unknown property {other:#x} in {p:?}"),
        };
        ids.push(id);
        props = &tail[size..];
    }
    ids
}

/// Reads packets until one of `kind` comes; every packet read goes to `seen`, and QoS 1
/// PUBLISHes are acknowledged.
async fn until(r: &mut Raw, seen: &mut Vec<Packet>, kind: u8) -> Packet {
    loop {
        let p = r
            .read_packet(READ_WAIT)
            .await
            .unwrap_or_else(|e| panic!("no packet of type {kind} after {seen:?}: {e:?}"));
        seen.push(p.clone());
        if p.kind() == raw::PUBLISH && (p.first >> 1) & 3 == 1 {
            r.send(&raw::puback(p.publish(r.v).pkid)).await;
        }
        if p.kind() == kind {
            return p;
        }
    }
}

/// A chat message from `from` to `to`, sent over a connection of its own and acknowledged.
async fn send_message(srv: &Server, from: &str, to: &str, text: &str) {
    let mut s = Raw::login(srv.mqtt, V::V4, &unique(&format!("{from}:s")), from, "pw").await;
    let msg = json!({"to": to, "cid": unique("c"), "type": "text", "text": text});
    let code = s
        .publish_qos1(&format!("chat/{from}/send"), msg.to_string().as_bytes(), 1)
        .await;
    assert_eq!(code, 0, "the message to {to} was refused");
    s.send(&raw::disconnect()).await;
}

/// A SUBSCRIBE answered, read without acknowledging anything (unlike [`Raw::subscribe`]): the
/// SUBACK must be the next packet.
async fn subscribe_raw(r: &mut Raw, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    r.send(&raw::subscribe(r.v, pkid, filters)).await;
    let suback = r.read_packet(READ_WAIT).await.expect("SUBACK");
    assert_eq!(suback.kind(), raw::SUBACK, "{suback:?}");
    suback.suback_codes(r.v)
}

/// The next PUBLISH, left unacknowledged; nothing else may come first.
async fn next_publish_raw(r: &mut Raw) -> raw::Pub {
    let p = r.read_packet(READ_WAIT).await.expect("a PUBLISH");
    assert_eq!(p.kind(), raw::PUBLISH, "{p:?}");
    p.publish(r.v)
}

/// Reads `inbox` until `text` arrives, asserting that none of `absent` comes before it or
/// within `quiet` after it.
async fn inbox_until(r: &mut Raw, me: &str, text: &str, absent: &[&str], quiet: Duration) {
    let topic = format!("user/{me}/inbox");
    loop {
        let m = r.next_json_on(&topic).await;
        let got = m["text"].as_str().unwrap_or_default();
        assert!(!absent.contains(&got), "{got:?} was delivered again");
        if got == text {
            break;
        }
    }
    for p in r.publishes_for(quiet).await {
        if p.topic == topic {
            let m = p.json();
            let got = m["text"].as_str().unwrap_or_default();
            assert!(!absent.contains(&got), "{got:?} was delivered again");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_7_1_3_1_2_29_3_2_2_19_3_2_2_20_3_4_2_2_3_4_2_3_3_7_2_1_3_7_2_2_3_7_2_3_3_9_2_1_3_9_2_2_3_11_2_1_3_11_2_2_3_14_2_3_3_14_2_4_no_reason_string_or_user_property_is_ever_sent(
) {
    let srv = Server::start();
    let me = user(&srv, "props");
    let other = user(&srv, "propso");
    // Request Problem Information 0, Request Response Information 1, Maximum Packet Size 4096:
    // the server may send neither Reason String nor User Property outside PUBLISH, CONNACK and
    // DISCONNECT, and Response Information only when it fits (chatd sends none of them at all).
    let connect = |id: &str, pw: &str| {
        let mut c = Connect::new(V::V5, id, &me, pw).maximum_packet_size(4096);
        c.properties.extend([0x17, 0x00, 0x19, 0x01]);
        c
    };
    let mut seen = Vec::new();

    // A refusing CONNACK (0x86).
    let mut r = Raw::open(srv.mqtt, V::V5).await;
    r.send(&connect(&me, "wrong").encode()).await;
    let refused = r.expect_closed(CLOSE_WAIT, "wrong password").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].connack_code(), 0x86);
    seen.extend(refused);

    // A successful CONNACK.
    let id = format!("{me}:props");
    let (mut r, connack) = Raw::connack(srv.mqtt, &connect(&id, "pw")).await;
    assert_eq!(connack.connack_code(), 0);
    seen.push(connack);

    // SUBACK with a granted QoS and a failure (another user's topic: 0x87).
    let rpc = format!("user/{me}/rpc");
    let filters = [(rpc.as_str(), 1), (&format!("user/{other}/inbox"), 1)];
    r.send(&raw::subscribe(V::V5, 1, &filters)).await;
    let suback = until(&mut r, &mut seen, raw::SUBACK).await;
    assert_eq!(suback.suback_codes(V::V5), vec![1, 0x87]);

    // PUBACK 0x00 and the reply it causes (a QoS 1 PUBLISH), then PUBACK 0x87.
    let mine = format!("chat/{me}/rpc");
    r.send(&raw::publish(V::V5, &mine, &request("p"), 1, 2))
        .await;
    // The reply may come before the PUBACK or after it.
    assert_eq!(until(&mut r, &mut seen, raw::PUBACK).await.puback(), (2, 0));
    if !seen.iter().any(|p| p.kind() == raw::PUBLISH) {
        until(&mut r, &mut seen, raw::PUBLISH).await;
    }
    let reply = seen
        .iter()
        .find(|p| p.kind() == raw::PUBLISH)
        .expect("the reply");
    assert_eq!(reply.publish(V::V5).json()["rid"], "p");
    let theirs = format!("chat/{other}/rpc");
    r.send(&raw::publish(V::V5, &theirs, &request("q"), 1, 3))
        .await;
    assert_eq!(
        until(&mut r, &mut seen, raw::PUBACK).await.puback(),
        (3, 0x87)
    );

    // UNSUBACK with 0x11 (no such subscription) and 0x00.
    r.send(&unsubscribe(V::V5, 4, &[&format!("user/{me}/ack"), &rpc]))
        .await;
    let unsuback = until(&mut r, &mut seen, raw::UNSUBACK).await;
    assert_eq!(&unsuback.body[unsuback.body.len() - 2..], &[0x11, 0x00]);

    // PUBCOMP: a 5.0 client cannot start a QoS 2 flow (Maximum QoS 1), but a PUBREL is still
    // answered, with a code of the PUBCOMP table (0x00; absent means 0x00 too).
    r.send(&pubrel(0x0777)).await;
    let pubcomp = until(&mut r, &mut seen, raw::PUBCOMP).await;
    assert_eq!(pubcomp.first, 0x70, "{pubcomp:?}");
    assert_eq!(packet_id(&pubcomp), 0x0777);
    assert_eq!(
        pubcomp.body.get(2).copied().unwrap_or(0),
        0x00,
        "{pubcomp:?}"
    );

    // DISCONNECT 0x8E: the same client id connects again.
    let (mut second, connack) = Raw::connack(srv.mqtt, &connect(&id, "pw")).await;
    seen.push(connack);
    let taken = r.expect_closed(CLOSE_WAIT, "taken over").await;
    assert_eq!(
        taken.last().map(|p| p.disconnect_reason()),
        Some(0x8E),
        "{taken:?}"
    );
    seen.extend(taken);

    // DISCONNECT 0x94: a protocol error (a topic alias, which the server never allowed).
    let mut body = raw::string(&mine);
    body.extend([0x03, 0x23, 0x00, 0x01]);
    body.extend(request("alias"));
    second.send(&raw::frame(raw::PUBLISH << 4, &body)).await;
    let ended = second.expect_closed(CLOSE_WAIT, "topic alias").await;
    assert_eq!(
        ended.last().map(|p| p.disconnect_reason()),
        Some(0x94),
        "{ended:?}"
    );
    seen.extend(ended);

    for kind in [
        raw::CONNACK,
        raw::SUBACK,
        raw::PUBLISH,
        raw::PUBACK,
        raw::UNSUBACK,
        raw::PUBCOMP,
        raw::DISCONNECT,
    ] {
        assert!(
            seen.iter().any(|p| p.kind() == kind),
            "no packet of type {kind}"
        );
    }
    for p in &seen {
        let ids = property_ids(p);
        for (id, what) in [
            (REASON_STRING, "Reason String"),
            (USER_PROPERTY, "User Property"),
            (RESPONSE_INFORMATION, "Response Information"),
            (SERVER_REFERENCE, "Server Reference"),
        ] {
            assert!(!ids.contains(&id), "{what} in {p:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_12_a_connection_without_a_will_publishes_nothing_when_it_drops() {
    let srv = Server::start();
    let me = user(&srv, "nowill");
    let peer = user(&srv, "nowillpeer");
    let connections = |srv: &Server| srv.metric("chatd_connections").unwrap_or(-1.0);
    // What a will could cause: a message to the peer, an acknowledgement or a copy to the user's
    // other devices.
    let mut inbox = Raw::login(srv.mqtt, V::V4, &peer, &peer, "pw").await;
    inbox.subscribe(1, &[(&format!("user/{peer}/#"), 1)]).await;
    let mut watcher = Raw::login(srv.mqtt, V::V4, &format!("{me}:w"), &me, "pw").await;
    watcher.subscribe(1, &[(&format!("user/{me}/#"), 1)]).await;
    let before = connections(&srv);

    let connect = Connect::new(V::V4, &format!("{me}:nowill"), &me, "pw");
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    r.subscribe(1, &[(&format!("user/{me}/#"), 1)]).await;
    assert!(raw::eventually(CLOSE_WAIT, || connections(&srv) == before + 1.0).await);
    // Dropped without DISCONNECT: a will, if there were one, would be published now.
    drop(r);
    assert!(
        raw::eventually(CLOSE_WAIT, || connections(&srv) == before).await,
        "the server did not see the drop"
    );

    // Then a message of the user's own: it must be the first thing either observer sees.
    let text = unique("control");
    send_message(&srv, &me, &peer, &text).await;
    let first = inbox.next_json_on(&format!("user/{peer}/inbox")).await;
    assert_eq!(
        first["text"],
        text.as_str(),
        "something came before: {first}"
    );
    // The acknowledgement and any copy of this message carry its id.
    let id = first["id"].as_str().expect("the message's id").to_string();
    for (who, r) in [("peer", &mut inbox), ("other device", &mut watcher)] {
        for p in r.publishes_for(Duration::from_secs(2)).await {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            assert!(
                payload.contains(&id),
                "the {who} got something else on {}: {payload}",
                p.topic
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_4_3_a_delivery_in_flight_at_unsubscribe_is_completed() {
    let srv = Server::start();
    let peer = user(&srv, "unsubpeer");
    for v in [V::V4, V::V5] {
        let me = user(&srv, "unsubflight");
        let inbox = format!("user/{me}/inbox");
        let mut r = Raw::login(srv.mqtt, v, &format!("{me}:a"), &me, "pw").await;
        assert_eq!(subscribe_raw(&mut r, 1, &[(&inbox, 1)]).await, vec![1]);
        send_message(&srv, &peer, &me, "in flight").await;
        let delivery = next_publish_raw(&mut r).await;
        assert_eq!(delivery.json()["text"], "in flight");
        assert_eq!(delivery.qos, 1);
        // UNSUBSCRIBE while the delivery is unacknowledged, then its PUBACK.
        r.send(&unsubscribe(v, 2, &[&inbox])).await;
        let unsuback = r.read_packet(READ_WAIT).await.expect("UNSUBACK");
        assert_eq!(unsuback.kind(), raw::UNSUBACK, "{v:?}: {unsuback:?}");
        r.send(&raw::puback(delivery.pkid)).await;
        assert!(r.ping().await);
        r.send(&raw::disconnect()).await;
        r.expect_closed(CLOSE_WAIT, "after DISCONNECT").await;

        // Acknowledged, so done: the next connection gets only what comes after.
        let mut next = Raw::login(srv.mqtt, v, &format!("{me}:b"), &me, "pw").await;
        assert_eq!(next.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
        send_message(&srv, &peer, &me, "after").await;
        inbox_until(
            &mut next,
            &me,
            "after",
            &["in flight"],
            Duration::from_secs(1),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_1_0_1_4_1_0_2_subscriptions_and_deliveries_in_flight_last_with_the_connection() {
    let srv = Server::start();
    let peer = user(&srv, "keptpeer");
    for v in [V::V4, V::V5] {
        let me = user(&srv, "kept");
        let inbox = format!("user/{me}/inbox");
        // In 5.0 a Session Expiry Interval of 1 s, which the open connection outlives: the
        // interval counts from the close, never while connected.
        let mut connect = Connect::new(v, &format!("{me}:a"), &me, "pw");
        if v == V::V5 {
            connect = connect.session_expiry(1);
        }
        let mut r = Raw::login_with(srv.mqtt, &connect).await;
        assert_eq!(subscribe_raw(&mut r, 1, &[(&inbox, 1)]).await, vec![1]);
        send_message(&srv, &peer, &me, "first").await;
        let first = next_publish_raw(&mut r).await;
        assert_eq!(first.json()["text"], "first");
        // Three seconds with the delivery unacknowledged; the connection is kept alive.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            r.send(&raw::pingreq()).await;
            let p = r.read_packet(READ_WAIT).await.expect("PINGRESP");
            assert_eq!(p.kind(), raw::PINGRESP, "{v:?}: {p:?}");
        }
        // The subscription still delivers, and the old delivery is still one to acknowledge.
        send_message(&srv, &peer, &me, "second").await;
        let second = next_publish_raw(&mut r).await;
        assert_eq!(second.json()["text"], "second");
        assert_ne!(
            second.pkid, first.pkid,
            "{v:?}: the packet id in flight was reused"
        );
        r.send(&raw::puback(first.pkid)).await;
        r.send(&raw::puback(second.pkid)).await;
        assert!(r.ping().await);
        r.send(&raw::disconnect()).await;
        r.expect_closed(CLOSE_WAIT, "after DISCONNECT").await;

        // Both acknowledgements were taken: neither message comes to the next connection.
        let mut next = Raw::login(srv.mqtt, v, &format!("{me}:b"), &me, "pw").await;
        assert_eq!(next.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
        send_message(&srv, &peer, &me, "third").await;
        inbox_until(
            &mut next,
            &me,
            "third",
            &["first", "second"],
            Duration::from_secs(1),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_7_3_4_filters_are_matched_without_normalisation() {
    let srv = Server::start();
    let peer = user(&srv, "normpeer");
    for v in [V::V4, V::V5] {
        let me = user(&srv, "norm");
        let mut r = Raw::login(srv.mqtt, v, &me, &me, "pw").await;
        // `inbox` in other case, and in fullwidth letters (the same word after NFKC).
        let variants = [
            format!("user/{me}/INBOX"),
            format!("user/{me}/Inbox"),
            format!("user/{me}/\u{FF49}\u{FF4E}\u{FF42}\u{FF4F}\u{FF58}"),
        ];
        let rpc = format!("user/{me}/rpc");
        let mut filters: Vec<(&str, u8)> = variants.iter().map(|f| (f.as_str(), 1)).collect();
        filters.push((&rpc, 1));
        // Real subscriptions, each granted: only matching decides.
        assert_eq!(r.subscribe(1, &filters).await, vec![1, 1, 1, 1]);
        send_message(&srv, &peer, &me, "not for those filters").await;
        // A reply after the message was taken, then a while: nothing but the reply arrives.
        r.send(&raw::publish(
            v,
            &format!("chat/{me}/rpc"),
            &request("n"),
            0,
            0,
        ))
        .await;
        let reply = r.next_publish_on(&rpc, READ_WAIT).await.expect("the reply");
        assert_eq!(reply.json()["rid"], "n");
        let got = r.publishes_for(Duration::from_secs(2)).await;
        assert!(
            got.is_empty(),
            "{v:?}: delivered to a filter that only looks alike: {got:?}"
        );
        // The message was there to deliver: the exact filter gets it.
        r.subscribe(2, &[(&format!("user/{me}/inbox"), 1)]).await;
        let m = r.next_json_on(&format!("user/{me}/inbox")).await;
        assert_eq!(m["text"], "not for those filters");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_3_3_1_5_4_3_a_leading_bom_is_kept_not_stripped() {
    const BOM: &str = "\u{FEFF}";
    let srv = Server::start();
    for v in [V::V4, V::V5] {
        let me = user(&srv, "bom");
        let (bad_login, bad_id, refused) = match v {
            V::V4 => (4, 2, 0x80),
            V::V5 => (0x86, 0x85, 0x87),
        };
        // A user name and a client id behind a BOM are not the user's (stripped, they would be).
        let bom_user = format!("{BOM}{me}");
        // With it in the user name, the client id `{me}` no longer belongs to the user either:
        // whichever check comes first refuses.
        let (_r, code) = Raw::connect_with(srv.mqtt, &Connect::new(v, &me, &bom_user, "pw")).await;
        assert!(
            code == Ok(bad_login) || code == Ok(bad_id),
            "{v:?}: user name with a BOM: {code:?}"
        );
        let (_r, code) = Raw::connect_with(srv.mqtt, &Connect::new(v, &bom_user, &me, "pw")).await;
        assert_eq!(code, Ok(bad_id), "{v:?}: client id with a BOM");

        let mut r = Raw::login(srv.mqtt, v, &me, &me, "pw").await;
        let rpc = format!("user/{me}/rpc");
        let (leading, inside) = (format!("{BOM}{rpc}"), format!("user/{me}/{BOM}rpc"));
        // A filter starting with a BOM is no filter of the user's; one with a BOM inside is, but
        // does not match `rpc`: the reply comes once, at the QoS of the exact filter (0), where
        // a stripped BOM would make an overlap delivered at QoS 1.
        let codes = r
            .subscribe(1, &[(&leading, 1), (&inside, 1), (&rpc, 0)])
            .await;
        assert_eq!(codes, vec![refused, 1, 0], "{v:?}");
        r.send(&raw::publish(
            v,
            &format!("chat/{me}/rpc"),
            &request("b"),
            0,
            0,
        ))
        .await;
        assert_eq!(
            replies_until(&mut r, &rpc, "b").await,
            vec![(0, json!("b"))]
        );

        // A topic name starting with a BOM is no topic the user may publish to: refused (5.0)
        // or the connection closed (3.1.1), where the same name without it is served.
        let topic = format!("{BOM}chat/{me}/rpc");
        match v {
            V::V5 => {
                assert_eq!(r.publish_qos1(&topic, &request("c"), 5).await, 0x87);
                assert!(r.ping().await);
            }
            V::V4 => {
                r.send(&raw::publish(v, &topic, &request("c"), 1, 5)).await;
                let seen = r.expect_closed(CLOSE_WAIT, "topic with a BOM").await;
                assert!(seen.iter().all(|p| p.kind() != raw::PUBACK), "{seen:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_10_3_1_an_ill_formed_unsubscribe_filter_closes_the_connection() {
    let srv = Server::start();
    let me = user(&srv, "unsubutf5");
    let mut r = Raw::login(srv.mqtt, V::V5, &me, &me, "pw").await;
    let filter = format!("user/{me}/rpc");
    r.subscribe(1, &[(&filter, 1)]).await;
    // U+D800 encoded as UTF-8 (ED A0 80): ill-formed.
    let mut bad = filter.into_bytes();
    bad.extend([0xED, 0xA0, 0x80]);
    let mut body = vec![0, 2, 0];
    body.extend(raw::bin(&bad));
    r.send(&raw::frame((raw::UNSUBSCRIBE << 4) | 0x02, &body))
        .await;
    let seen = r
        .expect_closed(CLOSE_WAIT, "surrogate in an UNSUBSCRIBE filter")
        .await;
    assert!(seen.iter().all(|p| p.kind() != raw::UNSUBACK), "{seen:?}");
    let last = seen.last().expect("a DISCONNECT before the close");
    assert_eq!(last.disconnect_reason(), 0x81, "{seen:?}");
}

/// One packet from the server as it was on the wire: its first byte, the bytes of its
/// remaining length, its body.
#[derive(Debug)]
struct Wire {
    first: u8,
    length: Vec<u8>,
    body: Vec<u8>,
}

impl Wire {
    fn packet(&self) -> Packet {
        Packet {
            first: self.first,
            body: self.body.clone(),
        }
    }
}

/// Takes one whole packet off the front of `buf`, decoding its remaining length by hand (not
/// with the server's decoder, which the length bytes are checked against).
fn take_wire(buf: &mut Vec<u8>) -> Option<Wire> {
    let mut value = 0usize;
    let mut at = 1;
    loop {
        let byte = *buf.get(at)?;
        value += usize::from(byte & 0x7F) << (7 * (at - 1));
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        assert!(
            at <= 4,
            "a remaining length of more than four bytes: {buf:02x?}"
        );
    }
    if buf.len() < at + value {
        return None;
    }
    let wire = Wire {
        first: buf[0],
        length: buf[1..at].to_vec(),
        body: buf[at..at + value].to_vec(),
    };
    buf.drain(..at + value);
    Some(wire)
}

/// The fewest bytes a variable byte integer of `n` takes (MQTT 5.0 section 1.5.5).
fn fewest_bytes(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A TCP connection read packet by packet with the bytes of each fixed header kept.
struct Framed {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Framed {
    async fn next(&mut self) -> Wire {
        loop {
            if let Some(wire) = take_wire(&mut self.buf) {
                return wire;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(READ_WAIT, self.stream.read(&mut chunk))
                .await
                .expect("a packet in time")
                .expect("a read");
            assert!(n > 0, "closed with {:02x?} unread", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("a write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_1_5_5_1_remaining_lengths_take_the_fewest_bytes() {
    let srv = Server::start();
    // Short names keep the smallest PUBLISH below 127 bytes.
    let (me, peer) = ("v", "p");
    srv.add_user(me, "pw");
    srv.add_user(peer, "pw");
    let stream = TcpStream::connect(srv.mqtt).await.expect("connect");
    let mut b = Framed {
        stream,
        buf: Vec::new(),
    };
    b.send(&Connect::new(V::V5, me, me, "pw").encode()).await;
    let connack = b.next().await;
    assert_eq!(connack.packet().connack_code(), 0);
    // The length bytes of every packet read, checked at the end.
    let mut lengths = vec![connack.length];
    let (rpc, inbox) = (format!("user/{me}/rpc"), format!("user/{me}/inbox"));
    b.send(&raw::subscribe(V::V5, 1, &[(&rpc, 0), (&inbox, 1)]))
        .await;
    lengths.push(b.next().await.length);
    let mut sender = Raw::login(srv.mqtt, V::V4, &format!("{peer}:s"), peer, "pw").await;

    // (remaining length, its bytes): the edges of one, two and three bytes.
    let cases: [(usize, &[u8]); 4] = [
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
    ];
    for (i, (target, bytes)) in cases.into_iter().enumerate() {
        // An rpc reply (its rid, 1 to 128 characters) for the short ones, a message (its text)
        // for the long ones; the padding is adjusted until the PUBLISH has the size wanted.
        let small = target < 1000;
        let mut pad = if small { 20 } else { target - 400 };
        let mut tries = Vec::new();
        let got = loop {
            assert!(tries.len() < 6, "{target}: sizes met {tries:?}");
            assert!((1..=if small { 128 } else { 16_384 }).contains(&pad));
            let filler = "a".repeat(pad);
            let topic = if small {
                b.send(&raw::publish(
                    V::V5,
                    &format!("chat/{me}/rpc"),
                    &request(&filler),
                    0,
                    0,
                ))
                .await;
                &rpc
            } else {
                let msg = json!({"to": me, "cid": unique("c"), "type": "text", "text": filler});
                let code = sender
                    .publish_qos1(&format!("chat/{peer}/send"), msg.to_string().as_bytes(), 1)
                    .await;
                assert_eq!(code, 0);
                &inbox
            };
            let wire = loop {
                let wire = b.next().await;
                lengths.push(wire.length.clone());
                let p = wire.packet();
                if p.kind() == raw::PUBLISH {
                    let publish = p.publish(V::V5);
                    if publish.qos == 1 {
                        b.send(&raw::puback(publish.pkid)).await;
                    }
                    if &publish.topic == topic {
                        break wire;
                    }
                }
            };
            let len = wire.body.len();
            tries.push(len);
            if len == target {
                break wire;
            }
            pad = (pad + target)
                .checked_sub(len)
                .unwrap_or_else(|| panic!("{target} is out of reach: {tries:?}"));
        };
        assert_eq!(got.length, bytes, "case {i}: remaining length {target}");
    }
    // And every packet read on the way, whatever its size.
    for length in &lengths {
        let value = length
            .iter()
            .enumerate()
            .map(|(i, b)| usize::from(b & 0x7F) << (7 * i))
            .sum::<usize>();
        assert_eq!(length.len(), fewest_bytes(value), "{length:02x?}");
    }
}

/// MQTT over WebSocket, frame by frame.
struct Ws {
    ws: WebSocketStream<TcpStream>,
    buf: Vec<u8>,
}

impl Ws {
    async fn open(srv: &Server) -> Ws {
        let stream = TcpStream::connect(srv.ws).await.expect("connect");
        let mut req = format!("ws://{}/mqtt", srv.ws)
            .into_client_request()
            .expect("a WebSocket request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, _) = tokio::time::timeout(READ_WAIT, tokio_tungstenite::client_async(req, stream))
            .await
            .expect("WebSocket handshake in time")
            .expect("WebSocket handshake");
        Ws {
            ws,
            buf: Vec::new(),
        }
    }

    /// Sends `bytes` as one binary message.
    async fn binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec()))
            .await
            .expect("a binary message");
    }

    /// The next packet, from however many messages it takes; `Closed` when the connection ends.
    async fn packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(wire) = take_wire(&mut self.buf) {
                return Ok(wire.packet());
            }
            match tokio::time::timeout(READ_WAIT, self.ws.next()).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(ReadError::Closed)
                }
                Ok(Some(Ok(Message::Binary(data)))) => self.buf.extend_from_slice(&data),
                Ok(Some(Ok(other))) => assert!(
                    !matches!(other, Message::Text(_)),
                    "a text message from the server: {other:?}"
                ),
            }
        }
    }

    /// Reads one packet per entry of `kinds`, asserting they are of those kinds (in any order).
    async fn packets(&mut self, kinds: &[u8]) -> Vec<Packet> {
        let mut got = Vec::new();
        while got.len() < kinds.len() {
            let p = self
                .packet()
                .await
                .unwrap_or_else(|e| panic!("waiting for {kinds:?} after {got:?}: {e:?}"));
            got.push(p);
        }
        let mut kinds_got: Vec<u8> = got.iter().map(Packet::kind).collect();
        kinds_got.sort_unstable();
        let mut wanted = kinds.to_vec();
        wanted.sort_unstable();
        assert_eq!(kinds_got, wanted, "{got:?}");
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_6_0_0_2_packets_need_not_line_up_with_websocket_frames() {
    let srv = Server::start();
    for v in [V::V4, V::V5] {
        let me = user(&srv, "wsframes");
        let mut ws = Ws::open(&srv).await;
        // CONNECT one byte per message for its fixed header, then the rest in two messages.
        let connect = Connect::new(v, &me, &me, "pw").encode();
        for byte in &connect[..2] {
            ws.binary(&[*byte]).await;
        }
        let half = 2 + (connect.len() - 2) / 2;
        ws.binary(&connect[2..half]).await;
        ws.binary(&connect[half..]).await;
        let connack = ws.packet().await.expect("CONNACK");
        assert_eq!(connack.connack_code(), 0, "{v:?}");

        // SUBSCRIBE, an rpc request and PINGREQ in one message: all three are answered.
        let rpc = format!("user/{me}/rpc");
        let send = format!("chat/{me}/rpc");
        let mut three = raw::subscribe(v, 1, &[(&rpc, 0)]);
        three.extend(raw::publish(v, &send, &request("one"), 0, 0));
        three.extend(raw::pingreq());
        ws.binary(&three).await;
        let first = ws.packet().await.expect("SUBACK");
        assert_eq!(first.suback_codes(v), vec![0], "{v:?}");
        let rest = ws.packets(&[raw::PUBLISH, raw::PINGRESP]).await;
        let reply = rest
            .iter()
            .find(|p| p.kind() == raw::PUBLISH)
            .expect("reply");
        assert_eq!(reply.publish(v).json()["rid"], "one");

        // A message ending one packet and starting the next.
        let publish = raw::publish(v, &send, &request("two"), 0, 0);
        let ping = raw::pingreq();
        let cut = publish.len() / 3;
        ws.binary(&publish[..cut]).await;
        let mut middle = publish[cut..].to_vec();
        middle.push(ping[0]);
        ws.binary(&middle).await;
        ws.binary(&ping[1..]).await;
        let rest = ws.packets(&[raw::PUBLISH, raw::PINGRESP]).await;
        let reply = rest
            .iter()
            .find(|p| p.kind() == raw::PUBLISH)
            .expect("reply");
        assert_eq!(reply.publish(v).json()["rid"], "two");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_6_0_0_1_a_websocket_text_message_closes_the_connection() {
    let srv = Server::start();
    for v in [V::V4, V::V5] {
        let me = user(&srv, "wstext");
        let mut ws = Ws::open(&srv).await;
        ws.binary(&Connect::new(v, &me, &me, "pw").encode()).await;
        assert_eq!(ws.packet().await.expect("CONNACK").connack_code(), 0);
        let rpc = format!("user/{me}/rpc");
        ws.binary(&raw::subscribe(v, 1, &[(&rpc, 0)])).await;
        assert_eq!(ws.packet().await.expect("SUBACK").suback_codes(v), vec![0]);
        // An rpc request whose bytes are all ASCII, so it can go in a text message too.
        let publish = raw::publish(v, &format!("chat/{me}/rpc"), &request("t"), 0, 0);
        assert!(publish.iter().all(u8::is_ascii), "{publish:02x?}");
        let text = String::from_utf8(publish.clone()).expect("ASCII");
        // In a binary message it is served.
        ws.binary(&publish).await;
        let reply = ws.packet().await.expect("the reply");
        assert_eq!(reply.publish(v).json()["rid"], "t");
        // In a text message it is not: the connection ends, unanswered.
        ws.ws
            .send(Message::Text(text))
            .await
            .expect("a text message");
        match ws.packet().await {
            Err(ReadError::Closed) => {}
            other => panic!("{v:?}: a text message was answered: {other:?}"),
        }
    }
}
