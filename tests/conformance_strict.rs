//! MQTT as the specifications say, where chatd refuses (issue 17, "strict errors"): what an MQTT 5
//! CONNACK announces (Maximum QoS 1, Retain Available 0, Receive Maximum 64, no Subscription
//! Identifiers, no Shared Subscriptions, Maximum Packet Size) is enforced with the reason codes
//! MQTT 5.0 names; the packet size limit counts whole packets; Retain Handling decides when a
//! `presence/{user}` state is sent; an rpc request's Correlation Data and Response Topic shape
//! its reply. Each test is named after the normative statement (or, for rules without a number,
//! the section) it checks, and talks raw MQTT so that the exact codes are seen. 3.1.1, which
//! announces nothing, keeps its behaviour: where a test checks that too, it says so.

use crate::support;

use std::time::Duration;

use chatd_wire::mqtt;
use serde_json::json;
use support::raw::{self, Connect, Packet, Raw, V};
use support::{server_with_users, unique, Server, WAIT};

/// How long a test waits for something that must not come, once the server has answered a
/// PINGREQ sent after it (so anything due was written before): a little, for the socket.
const QUIET: Duration = Duration::from_millis(300);

/// A server with one fresh user; returns the server and the user (password `{user}-pw`).
fn server_with_user(extra_toml: &str) -> (Server, String) {
    let user = unique("st");
    let srv = server_with_users(&[&user], extra_toml);
    (srv, user)
}

/// A logged-in raw connection of `user` (client id `{user}:{device}`).
async fn login(srv: &Server, v: V, user: &str, device: &str) -> Raw {
    Raw::login(
        srv.mqtt,
        v,
        &format!("{user}:{device}"),
        user,
        &format!("{user}-pw"),
    )
    .await
}

/// `connect` encoded with its will's QoS and Will Retain flag set as given ([`Connect`] writes
/// wills at QoS 0, not retained).
fn with_will_flags(connect: &Connect, qos: u8, retain: bool) -> Vec<u8> {
    let mut bytes = connect.encode();
    let header = mqtt::frame::read_header(&bytes)
        .expect("a CONNECT's header")
        .expect("a whole header");
    // After the fixed header: protocol name (2 + 4 bytes), protocol level, connect flags.
    let flags = header.header_len + 7;
    bytes[flags] |= (qos << 3) | ((retain as u8) << 5);
    bytes
}

/// Reads until the server's DISCONNECT and then its close; returns the reason code.
async fn disconnect_reason(raw: &mut Raw, what: &str) -> u8 {
    let p = raw
        .read_until(WAIT, |p| p.kind() == raw::DISCONNECT)
        .await
        .unwrap_or_else(|e| panic!("{what}: no DISCONNECT ({e:?})"));
    raw.expect_closed(WAIT, what).await;
    p.disconnect_reason()
}

/// An MQTT 5 SUBSCRIBE with encoded `properties` and filters with their whole subscription
/// options byte (QoS in bits 0-1, Retain As Published bit 3, Retain Handling bits 4-5).
fn subscribe5(pkid: u16, properties: &[u8], filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend(raw::varint(properties.len()));
    body.extend_from_slice(properties);
    for (filter, options) in filters {
        body.extend(raw::string(filter));
        body.push(*options);
    }
    raw::frame((raw::SUBSCRIBE << 4) | 0x02, &body)
}

/// Sends an MQTT 5 SUBSCRIBE with one filter and its options byte; returns its SUBACK codes.
async fn subscribe_with_options(raw: &mut Raw, pkid: u16, filter: &str, options: u8) -> Vec<u8> {
    raw.send(&subscribe5(pkid, &[], &[(filter, options)])).await;
    let p = raw
        .read_until(WAIT, |p| p.kind() == raw::SUBACK)
        .await
        .unwrap_or_else(|e| panic!("no SUBACK for {filter}: {e:?}"));
    p.suback_codes(V::V5)
}

/// An MQTT 5 PUBLISH carrying encoded `properties`.
fn publish5(topic: &str, properties: &[u8], payload: &[u8], qos: u8, pkid: u16) -> Vec<u8> {
    let mut body = raw::string(topic);
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    body.extend(raw::varint(properties.len()));
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    raw::frame((raw::PUBLISH << 4) | (qos << 1), &body)
}

/// A Response Topic property.
fn response_topic(topic: &str) -> Vec<u8> {
    let mut out = vec![0x08];
    out.extend(raw::string(topic));
    out
}

/// A Correlation Data property.
fn correlation_data(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x09];
    out.extend(raw::bin(data));
    out
}

/// The topic, properties (encoded, without their length) and payload of an MQTT 5 PUBLISH.
fn publish_parts(p: &Packet) -> (String, Vec<u8>, Vec<u8>) {
    let publish = p.publish(V::V5);
    let mut at = 2 + publish.topic.len() + if publish.qos > 0 { 2 } else { 0 };
    let decoded = mqtt::varint::decode(&p.body[at..])
        .expect("property length")
        .expect("a whole property length");
    at += decoded.len;
    let properties = p.body[at..at + decoded.value].to_vec();
    (publish.topic, properties, publish.payload)
}

/// The MQTT 5 CONNACK property `id` with a four-byte value, if present.
fn connack_u32_property(connack: &Packet, id: u8) -> Option<u32> {
    let decoded = mqtt::varint::decode(&connack.body[2..])
        .expect("CONNACK property length")
        .expect("a whole property length");
    let start = 2 + decoded.len;
    let mut props = &connack.body[start..start + decoded.value];
    while let Some((&key, rest)) = props.split_first() {
        let len = match key {
            0x11 | 0x27 => 4,
            0x21 | 0x22 | 0x13 => 2,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2a => 1,
            other => panic!("CONNACK property 0x{other:02x} not expected here"),
        };
        if key == id && len == 4 {
            return Some(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        }
        props = &rest[len..];
    }
    None
}

/// Sends a PINGREQ and waits for its PINGRESP: whatever the server wrote before it has arrived
/// (publishes on the way are kept for [`Raw::publishes_for`]).
async fn sync(raw: &mut Raw) {
    assert!(raw.ping().await, "no PINGRESP");
}

// ---------------------------------------------------------------------------------------------
// CONNECT: wills beyond Maximum QoS and Retain Available
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-12]: a Will QoS above the announced Maximum QoS (1) refuses the connection with
/// CONNACK 0x9B "QoS not supported", then the connection is closed. 3.1.1 accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_12_will_qos_2_refused_with_0x9b() {
    let (srv, user) = server_with_user("");
    let pw = format!("{user}-pw");
    let will_topic = format!("chat/{user}/typing");
    let connect = Connect::new(V::V5, &format!("{user}:w5"), &user, &pw).will(&will_topic, b"{}");
    let mut raw = Raw::open(srv.mqtt, V::V5).await;
    raw.send(&with_will_flags(&connect, 2, false)).await;
    let connack = raw.read_packet(WAIT).await.expect("CONNACK");
    assert_eq!(connack.connack_code(), 0x9b, "{connack:?}");
    raw.expect_closed(WAIT, "after CONNACK 0x9B").await;

    // 3.1.1: accepted as before.
    let connect = Connect::new(V::V4, &format!("{user}:w4"), &user, &pw).will(&will_topic, b"{}");
    let mut raw = Raw::open(srv.mqtt, V::V4).await;
    raw.send(&with_will_flags(&connect, 2, false)).await;
    let connack = raw.read_packet(WAIT).await.expect("CONNACK");
    assert_eq!(connack.connack_code(), 0, "3.1.1 will QoS 2: {connack:?}");
    sync(&mut raw).await;
}

/// [MQTT-3.2.2-13]: a Will Retain of 1 while Retain Available is 0 refuses the connection with
/// CONNACK 0x9A "Retain not supported", then the connection is closed. 3.1.1 accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_13_will_retain_refused_with_0x9a() {
    let (srv, user) = server_with_user("");
    let pw = format!("{user}-pw");
    let will_topic = format!("chat/{user}/typing");
    for qos in [0, 1] {
        let connect =
            Connect::new(V::V5, &format!("{user}:r5"), &user, &pw).will(&will_topic, b"{}");
        let mut raw = Raw::open(srv.mqtt, V::V5).await;
        raw.send(&with_will_flags(&connect, qos, true)).await;
        let connack = raw.read_packet(WAIT).await.expect("CONNACK");
        assert_eq!(connack.connack_code(), 0x9a, "will QoS {qos}: {connack:?}");
        raw.expect_closed(WAIT, "after CONNACK 0x9A").await;
    }

    let connect = Connect::new(V::V4, &format!("{user}:r4"), &user, &pw).will(&will_topic, b"{}");
    let mut raw = Raw::open(srv.mqtt, V::V4).await;
    raw.send(&with_will_flags(&connect, 1, true)).await;
    let connack = raw.read_packet(WAIT).await.expect("CONNACK");
    assert_eq!(
        connack.connack_code(),
        0,
        "3.1.1 retained will: {connack:?}"
    );
    sync(&mut raw).await;
}

// ---------------------------------------------------------------------------------------------
// PUBLISH: QoS, RETAIN and Receive Maximum
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-11] with section 3.3.1.2: a PUBLISH above the announced Maximum QoS is a protocol
/// error answered with DISCONNECT 0x9B "QoS not supported". 3.1.1 QoS 2 is still answered with
/// PUBREC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_11_qos_2_publish_closes_with_0x9b() {
    let (srv, user) = server_with_user("");
    let topic = format!("chat/{user}/typing");
    let mut raw = login(&srv, V::V5, &user, "q5").await;
    raw.send(&raw::publish(V::V5, &topic, b"{}", 2, 7)).await;
    assert_eq!(disconnect_reason(&mut raw, "5.0 QoS 2 PUBLISH").await, 0x9b);

    let mut raw = login(&srv, V::V4, &user, "q4").await;
    raw.send(&raw::publish(V::V4, &topic, b"{}", 2, 7)).await;
    let pubrec = raw
        .read_until(WAIT, |p| p.kind() == raw::PUBREC)
        .await
        .expect("3.1.1 QoS 2 PUBLISH answered with PUBREC");
    assert_eq!(pubrec.body[..2], 7u16.to_be_bytes());
}

/// [MQTT-3.2.2-14] with section 3.3.1.3: a PUBLISH with RETAIN 1 while Retain Available is 0 is
/// a protocol error answered with DISCONNECT 0x9A "Retain not supported".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_14_retained_publish_closes_with_0x9a() {
    let (srv, user) = server_with_user("");
    let mut raw = login(&srv, V::V5, &user, "r").await;
    let mut publish = raw::publish(V::V5, &format!("chat/{user}/typing"), b"{}", 1, 3);
    publish[0] |= 0x01;
    raw.send(&publish).await;
    assert_eq!(disconnect_reason(&mut raw, "retained PUBLISH").await, 0x9a);
}

/// [MQTT-3.3.4-7]: a client with more QoS 1 PUBLISHes unacknowledged than the server's Receive
/// Maximum (64) is disconnected with 0x93 "Receive Maximum exceeded"; 64 at once are fine. The
/// publishes go in one write, so the server reads them before it can acknowledge any. 3.1.1
/// clients are slowed down instead (the server stops reading): all of theirs are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_4_7_receive_maximum_exceeded_closes_with_0x93() {
    let (srv, user) = server_with_user("");
    let topic = format!("chat/{user}/typing");
    let burst = |v: V, n: u16| -> Vec<u8> {
        (1..=n)
            .flat_map(|pkid| raw::publish(v, &topic, b"{}", 1, pkid))
            .collect()
    };

    let mut raw = login(&srv, V::V5, &user, "64").await;
    raw.send(&burst(V::V5, 64)).await;
    for _ in 0..64 {
        raw.read_until(WAIT, |p| p.kind() == raw::PUBACK)
            .await
            .expect("a PUBACK for each of 64 publishes");
    }
    sync(&mut raw).await;

    let mut raw = login(&srv, V::V5, &user, "65").await;
    raw.send(&burst(V::V5, 65)).await;
    assert_eq!(disconnect_reason(&mut raw, "65 publishes").await, 0x93);

    let mut raw = login(&srv, V::V4, &user, "v4").await;
    raw.send(&burst(V::V4, 200)).await;
    for _ in 0..200 {
        raw.read_until(WAIT, |p| p.kind() == raw::PUBACK)
            .await
            .expect("3.1.1: a PUBACK for each of 200 publishes");
    }
    sync(&mut raw).await;
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE: Subscription Identifiers and Shared Subscriptions
// ---------------------------------------------------------------------------------------------

/// Section 3.2.2.3.12: a SUBSCRIBE with a Subscription Identifier while CONNACK said they are not
/// available is a protocol error answered with DISCONNECT 0xA1 "Subscription Identifiers not
/// supported" (no SUBACK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_3_12_subscription_identifier_closes_with_0xa1() {
    let (srv, user) = server_with_user("");
    let mut raw = login(&srv, V::V5, &user, "sid").await;
    let filter = format!("user/{user}/inbox");
    // Subscription Identifier 0x0B = 5.
    raw.send(&subscribe5(3, &[0x0b, 0x05], &[(&filter, 1)]))
        .await;
    let seen = raw
        .expect_closed(WAIT, "SUBSCRIBE with an identifier")
        .await;
    assert!(
        !seen.iter().any(|p| p.kind() == raw::SUBACK),
        "answered with SUBACK: {seen:?}"
    );
    let disconnect = seen
        .iter()
        .find(|p| p.kind() == raw::DISCONNECT)
        .unwrap_or_else(|| panic!("no DISCONNECT: {seen:?}"));
    assert_eq!(disconnect.disconnect_reason(), 0xa1);
}

/// Section 3.2.2.3.13: a SUBSCRIBE with a shared subscription's filter while CONNACK said they
/// are not available is a protocol error answered with DISCONNECT 0x9E "Shared Subscriptions not
/// supported". 3.1.1 has no shared subscriptions: `$share/…` is a filter outside the caller's
/// space, refused in SUBACK (0x80) as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_3_13_shared_subscription_closes_with_0x9e() {
    let (srv, user) = server_with_user("");
    let shared = format!("$share/g/user/{user}/inbox");
    let mut raw = login(&srv, V::V5, &user, "sh5").await;
    raw.send(&subscribe5(
        4,
        &[],
        &[(&format!("user/{user}/ack"), 1), (&shared, 1)],
    ))
    .await;
    let seen = raw.expect_closed(WAIT, "shared SUBSCRIBE").await;
    assert!(
        !seen.iter().any(|p| p.kind() == raw::SUBACK),
        "answered with SUBACK: {seen:?}"
    );
    let disconnect = seen
        .iter()
        .find(|p| p.kind() == raw::DISCONNECT)
        .unwrap_or_else(|| panic!("no DISCONNECT: {seen:?}"));
    assert_eq!(disconnect.disconnect_reason(), 0x9e);

    let mut raw = login(&srv, V::V4, &user, "sh4").await;
    assert_eq!(raw.subscribe(5, &[(&shared, 1)]).await, vec![0x80]);
    sync(&mut raw).await;
}

// ---------------------------------------------------------------------------------------------
// Packet size
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-15] with section 3.2.2.3.6: the packet size is the whole packet, fixed header
/// included. With `limits.max_packet_size = 4096` (announced as Maximum Packet Size 4096), a
/// PUBLISH of 4096 bytes is taken and one of 4097 is refused: MQTT 5 with DISCONNECT 0x95
/// "packet too large", 3.1.1 by closing. (4097 bytes have a remaining length of 4094.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_15_packet_size_counts_the_whole_packet() {
    let (srv, user) = server_with_user("[limits]\nmax_packet_size = 4096\nmax_text_bytes = 1000\n");
    let topic = format!("chat/{user}/typing");
    let sized = |v: V, total: usize| -> Vec<u8> {
        let empty = raw::publish(v, &topic, b"", 1, 1).len();
        // Both sizes take 2 remaining length bytes, as the empty one does not: one more.
        let publish = raw::publish(v, &topic, &vec![b' '; total - empty - 1], 1, 1);
        assert_eq!(publish.len(), total);
        publish
    };

    let pw = format!("{user}-pw");
    let connect = Connect::new(V::V5, &format!("{user}:ps5"), &user, &pw);
    let mut raw = Raw::open(srv.mqtt, V::V5).await;
    raw.send(&connect.encode()).await;
    let connack = raw.read_packet(WAIT).await.expect("CONNACK");
    assert_eq!(connack.connack_code(), 0);
    assert_eq!(connack_u32_property(&connack, 0x27), Some(4096));
    raw.send(&sized(V::V5, 4096)).await;
    raw.read_until(WAIT, |p| p.kind() == raw::PUBACK)
        .await
        .expect("a PUBLISH of exactly 4096 bytes is taken");
    raw.send(&sized(V::V5, 4097)).await;
    assert_eq!(disconnect_reason(&mut raw, "4097 bytes").await, 0x95);

    let mut raw = login(&srv, V::V4, &user, "ps4").await;
    raw.send(&sized(V::V4, 4096)).await;
    raw.read_until(WAIT, |p| p.kind() == raw::PUBACK)
        .await
        .expect("3.1.1: a PUBLISH of exactly 4096 bytes is taken");
    raw.send(&sized(V::V4, 4097)).await;
    let seen = raw.expect_closed(WAIT, "3.1.1: 4097 bytes").await;
    assert!(
        !seen.iter().any(|p| p.kind() == raw::PUBACK),
        "3.1.1: 4097 bytes acknowledged: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Retain Handling and Retain As Published on presence/{user}
// ---------------------------------------------------------------------------------------------

/// How many presence states on `topic` arrived up to a PINGRESP sent now.
async fn states_on(raw: &mut Raw, topic: &str) -> usize {
    sync(raw).await;
    raw.publishes_for(QUIET)
        .await
        .iter()
        .filter(|p| p.topic == topic)
        .count()
}

/// [MQTT-3.3.1-9], [MQTT-3.3.1-10]: Retain Handling 0 sends the current state (chatd's retained
/// message on `presence/{user}`) on every SUBSCRIBE; 1 sends it only when the subscription did
/// not exist yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_10_retain_handling_1_sends_the_state_for_a_new_subscription_only() {
    let (srv, user) = server_with_user("");
    let (watched, other) = (unique("wa"), unique("wb"));
    let mut raw = login(&srv, V::V5, &user, "rh1").await;

    let topic = format!("presence/{watched}");
    // Retain Handling 1 (bits 4-5), QoS 1.
    assert_eq!(
        subscribe_with_options(&mut raw, 1, &topic, 0x11).await,
        vec![1]
    );
    assert_eq!(states_on(&mut raw, &topic).await, 1, "new: state sent");
    assert_eq!(
        subscribe_with_options(&mut raw, 2, &topic, 0x11).await,
        vec![1]
    );
    assert_eq!(states_on(&mut raw, &topic).await, 0, "existing: no state");
    // Retain Handling 0 on the same subscription: sent again, every time.
    for pkid in [3, 4] {
        assert_eq!(
            subscribe_with_options(&mut raw, pkid, &topic, 0x01).await,
            vec![1]
        );
        assert_eq!(
            states_on(&mut raw, &topic).await,
            1,
            "handling 0: state sent"
        );
    }
    let other_topic = format!("presence/{other}");
    assert_eq!(
        subscribe_with_options(&mut raw, 5, &other_topic, 0x11).await,
        vec![1]
    );
    assert_eq!(states_on(&mut raw, &other_topic).await, 1);
}

/// [MQTT-3.3.1-11]: Retain Handling 2 sends no state at subscribe time; the changes that follow
/// still come, with RETAIN 0 — as [MQTT-3.3.1-12] asks, and as [MQTT-3.3.1-13] does with
/// Retain As Published set (here), since no client published them retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_1_11_retain_handling_2_sends_no_state_at_subscribe() {
    let watched = unique("wc");
    let user = unique("st");
    let srv = server_with_users(&[&user, &watched], "");
    let mut raw = login(&srv, V::V5, &user, "rh2").await;
    let topic = format!("presence/{watched}");
    // Retain Handling 2, Retain As Published (bit 3), QoS 1.
    assert_eq!(
        subscribe_with_options(&mut raw, 1, &topic, 0x29).await,
        vec![1]
    );
    assert_eq!(
        states_on(&mut raw, &topic).await,
        0,
        "state sent at subscribe"
    );

    let _online = login(&srv, V::V4, &watched, "phone").await;
    let change = raw
        .read_until(WAIT, |p| {
            p.kind() == raw::PUBLISH && p.publish(V::V5).topic == topic
        })
        .await
        .expect("the change to online");
    assert_eq!(change.first & 0x01, 0, "a change with RETAIN 1: {change:?}");
    assert_eq!(change.publish(V::V5).json()["status"], json!("online"));
}

// ---------------------------------------------------------------------------------------------
// Request / response on chat/{me}/rpc
// ---------------------------------------------------------------------------------------------

/// An rpc request that needs nothing but a valid caller.
fn rpc_request(rid: &str) -> Vec<u8> {
    json!({"rid": rid, "op": "conversations"})
        .to_string()
        .into_bytes()
}

/// Section 4.10.1: an rpc request's Correlation Data comes back unchanged on its reply (on
/// `user/{me}/rpc`, as the request had no Response Topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_10_1_rpc_reply_carries_the_correlation_data() {
    let (srv, user) = server_with_user("");
    let mut raw = login(&srv, V::V5, &user, "cd").await;
    let reply_topic = format!("user/{user}/rpc");
    assert_eq!(raw.subscribe(1, &[(&reply_topic, 1)]).await, vec![1]);
    let data = [0u8, 1, 2, 0xff, b'x'];
    let props = correlation_data(&data);
    raw.send(&publish5(
        &format!("chat/{user}/rpc"),
        &props,
        &rpc_request("r1"),
        1,
        9,
    ))
    .await;
    let reply = raw
        .read_until(WAIT, |p| {
            p.kind() == raw::PUBLISH && p.publish(V::V5).topic == reply_topic
        })
        .await
        .expect("the rpc reply");
    let (_, properties, payload) = publish_parts(&reply);
    assert_eq!(properties, props, "reply properties");
    let answer: serde_json::Value = serde_json::from_slice(&payload).expect("JSON reply");
    assert_eq!(answer["rid"], "r1");
    assert_eq!(answer["ok"], true, "{answer}");

    // Without the property: no properties on the reply.
    raw.send(&publish5(
        &format!("chat/{user}/rpc"),
        &[],
        &rpc_request("r2"),
        1,
        10,
    ))
    .await;
    let reply = raw
        .read_until(WAIT, |p| {
            p.kind() == raw::PUBLISH && p.publish(V::V5).topic == reply_topic
        })
        .await
        .expect("the second rpc reply");
    assert_eq!(publish_parts(&reply).1, Vec::<u8>::new());
}

/// Section 4.10.1: a Response Topic in the caller's own `user/{me}/…` space that the session is
/// subscribed to receives the reply (with the Correlation Data, without a Response Topic); one
/// elsewhere is not written to, and the reply comes on `user/{me}/rpc` as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_10_1_rpc_reply_goes_to_the_response_topic_in_the_callers_space() {
    let (srv, user) = server_with_user("");
    let mut raw = login(&srv, V::V5, &user, "rt").await;
    let rpc_topic = format!("user/{user}/rpc");
    let own = format!("user/{user}/answers/1");
    assert_eq!(
        raw.subscribe(
            1,
            &[(&rpc_topic, 1), (&format!("user/{user}/answers/+"), 1)]
        )
        .await,
        vec![1, 1]
    );
    // Its own space: the reply goes there.
    let (topic, payload) = ask_with_response_topic(&mut raw, &user, &own, "own", 3).await;
    assert_eq!(topic, own, "reply topic");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["rid"],
        "own"
    );
    // Another user's space: the usual topic.
    let elsewhere = "user/someone-else/answers";
    let (topic, _) = ask_with_response_topic(&mut raw, &user, elsewhere, "other", 4).await;
    assert_eq!(topic, rpc_topic, "reply topic");
}

/// Sends rpc `rid` with Response Topic `to` and Correlation Data `c-{rid}`; checks that the
/// reply carries that Correlation Data (and nothing else) and returns its topic and payload.
async fn ask_with_response_topic(
    raw: &mut Raw,
    user: &str,
    to: &str,
    rid: &str,
    pkid: u16,
) -> (String, Vec<u8>) {
    let correlation = correlation_data(format!("c-{rid}").as_bytes());
    let mut props = response_topic(to);
    props.extend(correlation.clone());
    raw.send(&publish5(
        &format!("chat/{user}/rpc"),
        &props,
        &rpc_request(rid),
        1,
        pkid,
    ))
    .await;
    let reply = raw
        .read_until(WAIT, |p| p.kind() == raw::PUBLISH)
        .await
        .expect("the rpc reply");
    let (topic, properties, payload) = publish_parts(&reply);
    assert_eq!(properties, correlation, "{rid}: reply properties");
    (topic, payload)
}

/// [MQTT-3.3.2-14]: a Response Topic must not contain wildcard characters; one that does is a
/// protocol error answered with DISCONNECT 0x82.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_14_response_topic_with_wildcards_closes_with_0x82() {
    let (srv, user) = server_with_user("");
    let mut raw = login(&srv, V::V5, &user, "wc").await;
    let props = response_topic(&format!("user/{user}/#"));
    raw.send(&publish5(
        &format!("chat/{user}/rpc"),
        &props,
        &rpc_request("w"),
        1,
        3,
    ))
    .await;
    assert_eq!(
        disconnect_reason(&mut raw, "wildcard Response Topic").await,
        0x82
    );
}
