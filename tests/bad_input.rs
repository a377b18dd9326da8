//! Hostile and broken input: garbage bytes, wrong first packets, unsupported protocol levels,
//! oversized and malformed packets, slow clients, and bad JSON on the chat topics. The server must
//! close what the contract says it closes, answer bad requests with the right error code, and go
//! on serving everyone else (checked at the end of every test).

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::raw::{self, Connect, Packet, Raw, V};
use support::{still_serves, unique, Server};

const BOTH: [V; 2] = [V::V4, V::V5];
const CLOSE_WAIT: Duration = Duration::from_secs(20);

fn no_accepting_connack(seen: &[Packet], what: &str) {
    assert!(
        !seen
            .iter()
            .any(|p| p.kind() == raw::CONNACK && p.body.get(1) == Some(&0)),
        "{what}: the server accepted the connection: {seen:?}"
    );
}

/// In MQTT 5 the connection must end with a DISCONNECT carrying one of `codes`.
fn assert_v5_disconnect(seen: &[Packet], codes: &[u8], what: &str) {
    let last = seen
        .iter()
        .rev()
        .find(|p| p.kind() == raw::DISCONNECT)
        .unwrap_or_else(|| panic!("{what}: no DISCONNECT before the close (got {seen:?})"));
    assert!(
        codes.contains(&last.disconnect_reason()),
        "{what}: DISCONNECT reason {:#x}, expected one of {codes:02x?}",
        last.disconnect_reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_connect_is_closed() {
    let mut srv = Server::start();
    let mut noise = Vec::with_capacity(4096);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push((x >> 24) as u8);
    }
    let mut garbage_then_connect = vec![0x42u8];
    garbage_then_connect.extend(Connect::new(V::V4, "x", "x", "x").encode());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("0xff bytes", vec![0xff; 16]),
        ("zero bytes", vec![0; 8]),
        ("random bytes", noise),
        ("a byte before CONNECT", garbage_then_connect),
        ("TLS client hello on plain TCP", {
            let mut h = vec![
                0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
            ];
            h.extend([7u8; 60]);
            h
        }),
    ];
    for (what, bytes) in cases {
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        r.send(&bytes).await;
        let seen = r.expect_closed(CLOSE_WAIT, what).await;
        no_accepting_connack(&seen, what);
    }
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_must_be_connect() {
    let mut srv = Server::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "PUBLISH",
            raw::publish(V::V4, "chat/x/send", br#"{"cid":"1"}"#, 0, 0),
        ),
        ("SUBSCRIBE", raw::subscribe(V::V4, 1, &[("#", 1)])),
        ("PINGREQ", raw::pingreq()),
        ("DISCONNECT", raw::disconnect()),
        ("CONNACK", vec![0x20, 0x02, 0x00, 0x00]),
        ("PUBACK", raw::puback(1)),
    ];
    for (what, bytes) in cases {
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        r.send(&bytes).await;
        let seen = r.expect_closed(CLOSE_WAIT, what).await;
        no_accepting_connack(&seen, what);
        assert!(
            seen.iter()
                .all(|p| p.kind() != raw::PINGRESP && p.kind() != raw::SUBACK),
            "{what} before CONNECT was answered: {seen:?}"
        );
    }
    // A second CONNECT on a live connection is a protocol violation.
    let user = unique("twice");
    srv.add_user(&user, "pw");
    for v in BOTH {
        let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
        r.send(&Connect::new(v, &user, &user, "pw").encode()).await;
        let seen = r.expect_closed(CLOSE_WAIT, "second CONNECT").await;
        no_accepting_connack(&seen, "second CONNECT");
        if v == V::V5 {
            assert_v5_disconnect(&seen, &[0x81, 0x82], "second CONNECT");
        }
    }
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_level_gets_code_1() {
    let mut srv = Server::start();
    let user = unique("old");
    srv.add_user(&user, "pw");
    // MQTT 3.1: protocol name MQIsdp, level 3.
    let mut connect = Connect::new(V::V4, &user, &user, "pw").level(3);
    connect.protocol_name = "MQIsdp".into();
    let (mut r, code) = Raw::connect_with(srv.mqtt, &connect).await;
    assert_eq!(code, Ok(1), "MQTT 3.1 CONNECT: CONNACK code");
    r.expect_closed(CLOSE_WAIT, "after CONNACK 1").await;
    // Level 3 with the 3.1.1 name, and an unknown future level, are not accepted either.
    for level in [3u8, 6, 0] {
        let connect = Connect::new(V::V4, &user, &user, "pw").level(level);
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        r.send(&connect.encode()).await;
        let seen = r
            .expect_closed(CLOSE_WAIT, &format!("protocol level {level}"))
            .await;
        no_accepting_connack(&seen, &format!("protocol level {level}"));
    }
    still_serves(&mut srv).await;
}

const SMALL_PACKETS: &str = "[limits]\nmax_packet_size = 4096\nmax_text_bytes = 1000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packet_disconnects() {
    let mut srv = Server::start_with(SMALL_PACKETS);
    let user = unique("big");
    let peer = unique("peer");
    srv.add_user(&user, "pw");
    srv.add_user(&peer, "pw");
    let text = "x".repeat(10 * 1024);
    let payload = json!({"cid": "big-1", "to": peer, "type": "text", "text": text}).to_string();
    for v in BOTH {
        let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
        assert_eq!(
            r.subscribe(1, &[(&format!("user/{user}/#"), 1)]).await,
            vec![1]
        );
        // A packet under the limit is fine.
        let small = json!({"cid": unique("s"), "to": peer, "type": "text", "text": "small"});
        assert_eq!(
            r.publish_qos1(
                &format!("chat/{user}/send"),
                small.to_string().as_bytes(),
                2
            )
            .await,
            0
        );
        r.send(&raw::publish(
            v,
            &format!("chat/{user}/send"),
            payload.as_bytes(),
            1,
            3,
        ))
        .await;
        let seen = r
            .expect_closed(CLOSE_WAIT, &format!("{v:?} 10 KB publish"))
            .await;
        assert!(
            !seen
                .iter()
                .any(|p| p.kind() == raw::PUBACK && p.body[..2] == [0, 3]),
            "{v:?} the oversized publish was acknowledged: {seen:?}"
        );
        if v == V::V5 {
            assert_v5_disconnect(&seen, &[0x95], "oversized publish");
        }
    }
    // A header announcing a huge packet is refused without waiting for its body.
    for v in BOTH {
        let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
        let mut header = vec![0x32];
        header.extend(raw::varint(200 * 1024 * 1024));
        r.send(&header).await;
        let seen = r
            .expect_closed(CLOSE_WAIT, &format!("{v:?} header of a 200 MB packet"))
            .await;
        if v == V::V5 {
            assert_v5_disconnect(&seen, &[0x95], "header of a 200 MB packet");
        }
    }
    // An oversized CONNECT (10 KB password) is not accepted.
    let mut r = Raw::open(srv.mqtt, V::V4).await;
    r.send(&Connect::new(V::V4, &user, &user, &"p".repeat(10 * 1024)).encode())
        .await;
    let seen = r.expect_closed(CLOSE_WAIT, "10 KB CONNECT").await;
    no_accepting_connack(&seen, "10 KB CONNECT");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_close_the_connection() {
    let mut srv = Server::start();
    let user = unique("mal");
    srv.add_user(&user, "pw");
    let topic_promising_more = vec![0x30, 0x02, 0x00, 0x10];
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "remaining length of 5 bytes",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00],
            &[0x81],
        ),
        ("reserved packet type 0", vec![0x00, 0x00], &[0x81, 0x82]),
        (
            "PUBLISH with QoS 3",
            raw::frame(0x36, &[0x00, 0x01, b't', 0x00, 0x01]),
            &[0x81, 0x82],
        ),
        (
            "topic length beyond the packet",
            topic_promising_more,
            &[0x81],
        ),
        (
            "SUBSCRIBE without filters",
            raw::frame(0x82, &[0x00, 0x07]),
            &[0x81, 0x82],
        ),
    ];
    for v in BOTH {
        for (what, bytes, codes) in &cases {
            let mut bytes = bytes.clone();
            if v == V::V5 && *what == "SUBSCRIBE without filters" {
                bytes = raw::frame(0x82, &[0x00, 0x07, 0x00]);
            }
            let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
            r.send(&bytes).await;
            let seen = r.expect_closed(CLOSE_WAIT, &format!("{v:?} {what}")).await;
            if v == V::V5 {
                assert_v5_disconnect(&seen, codes, what);
            }
        }
    }
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_topic_closes_the_connection() {
    let mut srv = Server::start();
    let user = unique("utf");
    srv.add_user(&user, "pw");
    let mut topic = format!("chat/{user}/").into_bytes();
    topic.extend([0xc3, 0x28, 0xff]);
    for v in BOTH {
        for qos in [0u8, 1] {
            let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
            r.send(&raw::publish_bytes(v, &topic, br#"{"x":1}"#, qos, 9))
                .await;
            let what = format!("{v:?} QoS {qos} publish on an invalid UTF-8 topic");
            let seen = r.expect_closed(CLOSE_WAIT, &what).await;
            if v == V::V5 {
                assert_v5_disconnect(&seen, &[0x81, 0x90], &what);
            }
        }
        // Invalid UTF-8 in a SUBSCRIBE filter as well.
        let mut r = Raw::login(srv.mqtt, v, &user, &user, "pw").await;
        let mut body = vec![0x00, 0x05];
        if v == V::V5 {
            body.push(0);
        }
        let mut filter = format!("user/{user}/").into_bytes();
        filter.push(0xff);
        body.extend(raw::bin(&filter));
        body.push(1);
        r.send(&raw::frame(0x82, &body)).await;
        let what = format!("{v:?} invalid UTF-8 filter");
        let seen = r.expect_closed(CLOSE_WAIT, &what).await;
        assert!(
            seen.iter().all(|p| p.kind() != raw::SUBACK),
            "{what} was answered with a SUBACK: {seen:?}"
        );
    }
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_socket_is_closed_after_connect_timeout() {
    let mut srv = Server::start_with("[limits]\nconnect_timeout_secs = 2\n");
    let user = unique("slow");
    srv.add_user(&user, "pw");
    let connect = Connect::new(V::V4, &user, &user, "pw").encode();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing", Vec::new()),
        ("half a CONNECT", connect[..connect.len() / 2].to_vec()),
        ("one byte", vec![0x10]),
    ];
    for (what, bytes) in cases {
        let start = Instant::now();
        let mut r = Raw::open(srv.mqtt, V::V4).await;
        if !bytes.is_empty() {
            r.send(&bytes).await;
        }
        let seen = r.expect_closed(Duration::from_secs(15), what).await;
        let took = start.elapsed();
        no_accepting_connack(&seen, what);
        assert!(
            took >= Duration::from_millis(1500),
            "{what}: closed after {took:?}, before the 2 s connect timeout"
        );
    }
    // The WebSocket listener applies the same timeout to a socket that never upgrades.
    let start = Instant::now();
    let mut r = Raw::open(srv.ws, V::V4).await;
    r.expect_closed(Duration::from_secs(15), "silent WebSocket socket")
        .await;
    assert!(start.elapsed() >= Duration::from_millis(1500));
    // A client that connects in time is not affected, even when it is quiet afterwards.
    let mut r = Raw::login(srv.mqtt, V::V4, &user, &user, "pw").await;
    let quiet = r.read_packet(Duration::from_secs(4)).await;
    assert_eq!(
        quiet,
        Err(raw::ReadError::Timeout),
        "a connected client was disturbed"
    );
    assert!(r.ping().await);
    still_serves(&mut srv).await;
}

/// Publishes `payload` on `chat/{me}/send` and returns the next ack.
async fn ack_for(r: &mut Raw, me: &str, payload: &[u8], pkid: u16) -> Value {
    let code = r
        .publish_qos1(&format!("chat/{me}/send"), payload, pkid)
        .await;
    assert_eq!(
        code, 0,
        "PUBACK of a send must be a success even for bad payloads"
    );
    r.next_json_on(&format!("user/{me}/ack")).await
}

fn error_code(ack: &Value) -> &str {
    ack["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("ack without error code: {ack}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_send_payloads_get_error_acks() {
    let mut srv = Server::start();
    let me = unique("snd");
    let bob = unique("rcv");
    srv.add_user(&me, "pw");
    srv.add_user(&bob, "pw");
    let mut r = Raw::login(srv.mqtt, V::V4, &me, &me, "pw").await;
    assert_eq!(
        r.subscribe(1, &[(&format!("user/{me}/#"), 1)]).await,
        vec![1]
    );
    let mut b = Raw::login(srv.mqtt, V::V5, &bob, &bob, "pw").await;
    assert_eq!(
        b.subscribe(1, &[(&format!("user/{bob}/inbox"), 1)]).await,
        vec![1]
    );

    let text_at_limit = "é".repeat(16384 / 2);
    let text_over_limit = "é".repeat(16384 / 2 + 1);
    let deep = "[".repeat(100_000);
    let msg = |cid: &str, text: &str| json!({"cid": cid, "to": bob, "type": "text", "text": text});
    // (what, payload, expected error code, cid the ack must carry)
    let cases: Vec<(&str, Vec<u8>, &str, Option<String>)> =
        vec![
        ("not UTF-8", vec![0xff, 0xfe, b'{', 0x00], "bad_request", None),
        ("not JSON", b"hello bob".to_vec(), "bad_request", None),
        ("JSON array", b"[1,2,3]".to_vec(), "bad_request", None),
        ("JSON string", b"\"hi\"".to_vec(), "bad_request", None),
        ("JSON null", b"null".to_vec(), "bad_request", None),
        ("empty payload", Vec::new(), "bad_request", None),
        ("deeply nested JSON", deep.into_bytes(), "bad_request", None),
        (
            "unknown field",
            json!({"cid": "c-unknown", "to": bob, "type": "text", "text": "hi", "colour": "red"})
                .to_string()
                .into_bytes(),
            "bad_request",
            Some("c-unknown".into()),
        ),
        (
            "text over max_text_bytes",
            msg("c-huge", &text_over_limit).to_string().into_bytes(),
            "too_large",
            Some("c-huge".into()),
        ),
        (
            "empty text",
            msg("c-empty-text", "").to_string().into_bytes(),
            "bad_request",
            Some("c-empty-text".into()),
        ),
        (
            "empty cid",
            msg("", "hi").to_string().into_bytes(),
            "bad_request",
            None,
        ),
        (
            "10 KB cid",
            msg(&"c".repeat(10 * 1024), "hi").to_string().into_bytes(),
            "bad_request",
            None,
        ),
        (
            "129-character cid",
            msg(&"k".repeat(129), "hi").to_string().into_bytes(),
            "bad_request",
            None,
        ),
        (
            "numeric cid",
            json!({"cid": 17, "to": bob, "type": "text", "text": "hi"})
                .to_string()
                .into_bytes(),
            "bad_request",
            None,
        ),
        (
            "missing to",
            json!({"cid": "c-no-to", "type": "text", "text": "hi"})
                .to_string()
                .into_bytes(),
            "bad_request",
            Some("c-no-to".into()),
        ),
        (
            "invalid to",
            json!({"cid": "c-bad-to", "to": "b o b", "type": "text", "text": "hi"})
                .to_string()
                .into_bytes(),
            "bad_request",
            Some("c-bad-to".into()),
        ),
        (
            "unknown recipient",
            json!({"cid": "c-nobody", "to": unique("nobody"), "type": "text", "text": "hi"})
                .to_string()
                .into_bytes(),
            "not_found",
            Some("c-nobody".into()),
        ),
        (
            "unknown type",
            json!({"cid": "c-type", "to": bob, "type": "sticker", "text": "hi"})
                .to_string()
                .into_bytes(),
            "bad_request",
            Some("c-type".into()),
        ),
        (
            "text not a string",
            json!({"cid": "c-num-text", "to": bob, "type": "text", "text": 5})
                .to_string()
                .into_bytes(),
            "bad_request",
            Some("c-num-text".into()),
        ),
    ];
    let mut pkid = 10;
    for (what, payload, code, cid) in &cases {
        pkid += 1;
        let ack = ack_for(&mut r, &me, payload, pkid).await;
        assert_eq!(error_code(&ack), *code, "{what}: {ack}");
        assert!(
            ack.get("id").is_none(),
            "{what}: error ack has an id: {ack}"
        );
        if let Some(cid) = cid {
            assert_eq!(ack["cid"], cid.as_str(), "{what}: ack cid");
        }
        if *what == "unknown field" {
            let message = ack["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains("colour"),
                "the error must name the field: {ack}"
            );
        }
    }
    // Boundaries that are allowed: text of exactly max_text_bytes bytes, a 128-character cid.
    let mut accepted = Vec::new();
    for (cid, text) in [
        ("c-at-limit".to_string(), text_at_limit.as_str()),
        ("q".repeat(128), "cid of 128"),
        ("c-final".to_string(), "final"),
    ] {
        pkid += 1;
        let ack = ack_for(&mut r, &me, msg(&cid, text).to_string().as_bytes(), pkid).await;
        assert_eq!(ack["status"], "sent", "cid {cid}: {ack}");
        assert_eq!(ack["cid"], cid.as_str());
        accepted.push(ack["id"].as_str().unwrap().to_string());
    }
    // bob receives exactly the accepted messages, in order.
    let mut got = Vec::new();
    for _ in 0..accepted.len() {
        let m = b.next_json_on(&format!("user/{bob}/inbox")).await;
        got.push(m["id"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(got, accepted, "bob's inbox");
    let extra = b.publishes_for(Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "bob received more: {extra:?}");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rpc_requests_get_error_replies() {
    let mut srv = Server::start();
    let me = unique("rpc");
    let bob = unique("peer");
    srv.add_user(&me, "pw");
    srv.add_user(&bob, "pw");
    let mut c = support::connect(srv.mqtt, &me, &me, "pw").await;
    c.subscribe(&format!("user/{me}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let cases = [
        json!({"rid": "r-unknown-op", "op": "nope"}),
        json!({"rid": "r-limit", "op": "history", "with": bob, "limit": 1000}),
        json!({"rid": "r-limit0", "op": "history", "with": bob, "limit": 0}),
        json!({"rid": "r-limit-neg", "op": "history", "with": bob, "limit": -1}),
        json!({"rid": "r-limit-str", "op": "history", "with": bob, "limit": "ten"}),
        json!({"rid": "r-no-with", "op": "history"}),
        json!({"rid": "r-bad-with", "op": "history", "with": "b o b"}),
        json!({"rid": "r-extra", "op": "history", "with": bob, "bogus": 1}),
        json!({"rid": "r-no-op"}),
        json!({"rid": "r-op-num", "op": 7}),
        json!({"rid": "r-before", "op": "history", "with": bob, "before": {"x": 1}}),
    ];
    for req in cases {
        let reply = c.rpc(&me, req.clone()).await;
        assert_eq!(reply["ok"], false, "{req}: {reply}");
        assert_eq!(reply["error"]["code"], "bad_request", "{req}: {reply}");
        assert_eq!(reply["rid"], req["rid"]);
    }
    // Payloads that are not requests at all still get an error reply.
    let topic = format!("user/{me}/rpc");
    for payload in [
        b"not json".to_vec(),
        b"[]".to_vec(),
        Vec::new(),
        vec![0xff, 0x00],
        json!({"rid": "r".repeat(200), "op": "conversations"})
            .to_string()
            .into_bytes(),
    ] {
        c.publish_wait(&format!("chat/{me}/rpc"), payload.clone())
            .await
            .expect("PUBACK for an rpc publish");
        let reply = c.next_on(&topic).await;
        assert_eq!(
            reply["ok"],
            false,
            "{:?}: {reply}",
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    }
    // A good request on the same connection works.
    let reply = c
        .rpc(
            &me,
            json!({"rid": "r-good", "op": "history", "with": bob, "limit": 100}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["result"]["messages"].is_array(), "{reply}");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_on_typing_and_receipt_topics() {
    let mut srv = Server::start();
    let me = unique("tr");
    srv.add_user(&me, "pw");
    for v in BOTH {
        let mut r = Raw::login(srv.mqtt, v, &me, &me, "pw").await;
        assert_eq!(
            r.subscribe(1, &[(&format!("user/{me}/#"), 1)]).await,
            vec![1]
        );
        let payloads: Vec<Vec<u8>> = vec![
            vec![0xff, 0xfe],
            b"not json".to_vec(),
            b"[1]".to_vec(),
            Vec::new(),
            "[".repeat(50_000).into_bytes(),
            json!({"to": "x".repeat(10_000)}).to_string().into_bytes(),
        ];
        let mut pkid = 10;
        for p in &payloads {
            pkid += 1;
            let code = r.publish_qos1(&format!("chat/{me}/typing"), p, pkid).await;
            assert_eq!(code, 0, "{v:?} typing PUBACK");
        }
        for p in &payloads {
            pkid += 1;
            let code = r.publish_qos1(&format!("chat/{me}/receipt"), p, pkid).await;
            assert_eq!(code, 0, "{v:?} receipt PUBACK");
            let ack = r.next_json_on(&format!("user/{me}/ack")).await;
            assert!(
                ack["error"]["code"].is_string(),
                "{v:?} receipt answer: {ack}"
            );
        }
        assert!(
            r.ping().await,
            "{v:?} connection closed by bad typing/receipt payloads"
        );
    }
    still_serves(&mut srv).await;
}
