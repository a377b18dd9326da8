//! What one connection may ask of its session, against the real binary over raw sockets: how
//! many filters one SUBSCRIBE and one session may hold, how many users' presence it may watch,
//! and the MQTT 5 limits a client declares in CONNECT — Receive Maximum (QoS 1 PUBLISHes it has
//! not acknowledged: replies, acks and presence count too) and Maximum Packet Size (nothing
//! larger is written; what happens instead is in docs/protocol.md).

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::raw::{self, Connect, Packet, Raw, ReadError, PUBLISH, SUBACK, V};
use support::{still_serves, unique, Server};

/// SUBACK code of a filter refused by a limit: 5.0 quota exceeded, 3.1.1 failure.
const V5_QUOTA: u8 = 0x97;
const V4_FAILURE: u8 = 0x80;

/// Generous bound for every positive wait.
const WAIT: Duration = Duration::from_secs(20);

/// A new user with password `pw`.
fn user(srv: &Server, prefix: &str) -> String {
    let u = unique(prefix);
    srv.add_user(&u, "pw");
    u
}

use support::raw::unsubscribe;

/// Whole size of a packet as it was on the wire.
fn wire_size(p: &Packet) -> usize {
    1 + raw::varint(p.body.len()).len() + p.body.len()
}

fn is_qos1_publish(p: &Packet) -> bool {
    p.kind() == PUBLISH && (p.first >> 1) & 3 == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_filters_past_the_packet_and_session_limits_are_refused() {
    // Defaults: 64 filters per SUBSCRIBE, 256 per session.
    let mut srv = Server::start();
    let u = user(&srv, "subs");
    let mut r = Raw::login(srv.mqtt, V::V5, &u, &u, "pw").await;

    // One SUBSCRIBE with 20,000 filters (the attack had 32k): the first 64 are
    // granted, every other one is refused in the SUBACK, and the answer is prompt.
    let names: Vec<String> = (0..20_000).map(|i| format!("user/{u}/f{i}")).collect();
    let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let codes = r.subscribe(1, &filters).await;
    assert_eq!(codes.len(), 20_000);
    assert!(codes[..64].iter().all(|&c| c == 1), "{:?}", &codes[..64]);
    assert!(
        codes[64..].iter().all(|&c| c == V5_QUOTA),
        "filters past the packet limit must be refused"
    );

    // Three more full packets of new filters reach the session limit of 256 …
    for batch in 0..3u16 {
        let names: Vec<String> = (0..64).map(|i| format!("user/{u}/g{batch}x{i}")).collect();
        let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let codes = r.subscribe(2 + batch, &filters).await;
        assert_eq!(codes, vec![1; 64], "batch {batch}");
    }
    // … past which a new filter is refused while one already held is granted again.
    let inbox = format!("user/{u}/inbox");
    let held = format!("user/{u}/f0");
    let codes = r
        .subscribe(9, &[(inbox.as_str(), 1), (held.as_str(), 0)])
        .await;
    assert_eq!(codes, vec![V5_QUOTA, 0]);

    // Letting one go makes room for another.
    r.send(&unsubscribe(V::V5, 10, &[&held])).await;
    r.read_until(WAIT, |p| p.kind() == raw::UNSUBACK)
        .await
        .expect("UNSUBACK");
    assert_eq!(r.subscribe(11, &[(inbox.as_str(), 1)]).await, vec![1]);
    assert!(r.ping().await, "the session serves on");
    assert!(
        srv.metric("chatd_subscriptions_over_quota_total")
            .unwrap_or(0.0)
            >= 19_937.0
    );

    // MQTT 3.1.1 has one failure code.
    let w = user(&srv, "subs4");
    let mut r4 = Raw::login(srv.mqtt, V::V4, &w, &w, "pw").await;
    let names: Vec<String> = (0..65).map(|i| format!("user/{w}/f{i}")).collect();
    let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let codes = r4.subscribe(1, &filters).await;
    assert_eq!(codes[..64], vec![1; 64][..]);
    assert_eq!(codes[64], V4_FAILURE);
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_watches_are_limited_per_session() {
    // Default: 1024 watches (a contact list), 64 per SUBSCRIBE.
    let mut srv = Server::start();
    let u = user(&srv, "watcher");
    let mut r = Raw::login(srv.mqtt, V::V5, &u, &u, "pw").await;
    for batch in 0..16u16 {
        let names: Vec<String> = (0..64).map(|i| format!("presence/w{batch}x{i}")).collect();
        let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 0)).collect();
        assert_eq!(r.subscribe(1 + batch, &filters).await, vec![0; 64]);
    }
    let codes = r
        .subscribe(20, &[("presence/one-more", 0), ("presence/w0x0", 1)])
        .await;
    assert_eq!(
        codes,
        vec![V5_QUOTA, 1],
        "watch 1025 refused, a held one granted"
    );
    assert_eq!(srv.metric("chatd_presence_watches"), Some(1024.0));
    assert!(r.ping().await);

    // A configured limit, and the 3.1.1 code.
    let mut small = Server::start_with("[limits]\nmax_presence_watches = 3\n");
    let w = user(&small, "watcher4");
    let mut r4 = Raw::login(small.mqtt, V::V4, &w, &w, "pw").await;
    let codes = r4
        .subscribe(
            1,
            &[
                ("presence/a", 1),
                ("presence/b", 1),
                ("presence/c", 0),
                ("presence/d", 0),
            ],
        )
        .await;
    assert_eq!(codes, vec![1, 1, 0, V4_FAILURE]);
    assert_eq!(small.metric("chatd_presence_watches"), Some(3.0));
    still_serves(&mut small).await;
    still_serves(&mut srv).await;
}

/// The next PUBLISH, not acknowledged (other packets are skipped).
async fn next_unacked(r: &mut Raw) -> Result<Packet, ReadError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = r.read_packet(left).await?;
        if p.kind() == PUBLISH {
            return Ok(p);
        }
    }
}

/// Reads packets for `hold` without acknowledging anything; returns the PUBLISHes.
async fn publishes_within(r: &mut Raw, hold: Duration) -> Vec<Packet> {
    let deadline = tokio::time::Instant::now() + hold;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match r.read_packet(left).await {
            Ok(p) if p.kind() == PUBLISH => seen.push(p),
            Ok(_) => {}
            Err(ReadError::Timeout) => return seen,
            Err(e) => panic!("connection failed: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_maximum_bounds_acks_replies_and_presence() {
    let srv = Server::start();
    let u = user(&srv, "rm");
    let friend = user(&srv, "rmf");
    let connect = Connect::new(V::V5, &u, &u, "pw").receive_maximum(1);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;

    // Three presence states, three rpc replies and one ack are due at once.
    let own = format!("user/{u}/#");
    let watched: Vec<String> = (0..3).map(|i| format!("presence/rmw{i}")).collect();
    let mut filters = vec![(own.as_str(), 1)];
    filters.extend(watched.iter().map(|w| (w.as_str(), 1)));
    r.send(&raw::subscribe(V::V5, 1, &filters)).await;
    let rpc = format!("chat/{u}/rpc");
    for i in 0..3 {
        let req = json!({"rid": format!("r{i}"), "op": "presence.get", "users": [friend]});
        r.send(&raw::publish(V::V5, &rpc, req.to_string().as_bytes(), 0, 0))
            .await;
    }
    let send = json!({"cid": "c1", "to": friend, "type": "text", "text": "hi"});
    r.send(&raw::publish(
        V::V5,
        &format!("chat/{u}/send"),
        send.to_string().as_bytes(),
        0,
        0,
    ))
    .await;

    // Without a PUBACK from the client exactly one QoS 1 PUBLISH may be outstanding.
    let mut got: Vec<Packet> = Vec::new();
    let first = next_unacked(&mut r).await.expect("a first PUBLISH");
    got.push(first);
    let more = publishes_within(&mut r, Duration::from_millis(1500)).await;
    assert!(
        more.is_empty(),
        "receive maximum 1, nothing acknowledged, yet {} more PUBLISHes",
        more.len()
    );
    // Each PUBACK lets exactly one more through.
    for round in 0..2 {
        let pkid = got.last().map(|p| p.publish(V::V5).pkid).unwrap_or(0);
        r.send(&raw::puback(pkid)).await;
        let next = next_unacked(&mut r)
            .await
            .unwrap_or_else(|e| panic!("round {round}: nothing after a PUBACK: {e:?}"));
        got.push(next);
        let more = publishes_within(&mut r, Duration::from_millis(500)).await;
        assert!(more.is_empty(), "round {round}: {more:?}");
    }
    // The rest, acknowledging as they come: everything due arrives, each at QoS 1.
    let pkid = got.last().map(|p| p.publish(V::V5).pkid).unwrap_or(0);
    r.send(&raw::puback(pkid)).await;
    while got.len() < 7 {
        let p = next_unacked(&mut r)
            .await
            .unwrap_or_else(|e| panic!("only {} of 7 arrived: {e:?}", got.len()));
        r.send(&raw::puback(p.publish(V::V5).pkid)).await;
        got.push(p);
    }
    assert!(got.iter().all(is_qos1_publish), "{got:?}");
    let topics: HashSet<String> = got.iter().map(|p| p.publish(V::V5).topic).collect();
    for w in &watched {
        assert!(topics.contains(w), "no state for {w}: {topics:?}");
    }
    let rids: HashSet<String> = got
        .iter()
        .map(|p| p.publish(V::V5))
        .filter(|p| p.topic.ends_with("/rpc"))
        .map(|p| p.json()["rid"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(rids.len(), 3, "{rids:?}");
    assert!(topics.contains(&format!("user/{u}/ack")), "{topics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_past_the_wait_queue_come_at_qos0_and_none_is_lost() {
    let srv = Server::start();
    let u = user(&srv, "rq");
    let connect = Connect::new(V::V5, &u, &u, "pw").receive_maximum(1);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    let own = format!("user/{u}/rpc");
    assert_eq!(r.subscribe(1, &[(own.as_str(), 1)]).await, vec![1]);
    let rpc = format!("chat/{u}/rpc");
    for i in 0..70 {
        let req = json!({"rid": format!("r{i}"), "op": "presence.get", "users": [u]});
        r.send(&raw::publish(V::V5, &rpc, req.to_string().as_bytes(), 0, 0))
            .await;
    }
    // One at QoS 1, 64 wait for the window, the other 5 come at QoS 0 at once: the socket is
    // still read and nothing waits without bound.
    let mut early = Vec::new();
    while early.len() < 6 {
        let p = next_unacked(&mut r)
            .await
            .unwrap_or_else(|e| panic!("only {} replies before any PUBACK: {e:?}", early.len()));
        early.push(p);
    }
    early.extend(publishes_within(&mut r, Duration::from_millis(1000)).await);
    let qos1: Vec<&Packet> = early.iter().filter(|p| is_qos1_publish(p)).collect();
    assert_eq!(
        (qos1.len(), early.len()),
        (1, 6),
        "(QoS 1, all) PUBLISHes before any PUBACK, with receive maximum 1"
    );
    assert!(r.ping().await, "the socket is read while replies wait");

    // Acknowledging lets the waiting ones through; all 70 replies arrive once.
    let mut rids: HashSet<String> = early
        .iter()
        .map(|p| {
            p.publish(V::V5).json()["rid"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    r.send(&raw::puback(qos1[0].publish(V::V5).pkid)).await;
    while rids.len() < 70 {
        let p = r
            .next_publish_on(&own, WAIT)
            .await
            .unwrap_or_else(|e| panic!("only {} of 70 replies: {e:?}", rids.len()));
        rids.insert(p.json()["rid"].as_str().unwrap_or("").to_string());
    }
    assert!(srv.metric("chatd_replies_qos0_total").unwrap_or(0.0) >= 5.0);
}

/// Reads PUBLISHes for `hold`, acknowledging QoS 1 ones and checking that none is larger than
/// `max` bytes on the wire.
async fn publishes_at_most(r: &mut Raw, max: usize, hold: Duration) -> Vec<raw::Pub> {
    let deadline = tokio::time::Instant::now() + hold;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match r.read_packet(left).await {
            Ok(p) => {
                assert!(wire_size(&p) <= max, "{}-byte packet: {p:?}", wire_size(&p));
                if p.kind() == PUBLISH {
                    let publish = p.publish(r.v);
                    if publish.qos == 1 {
                        r.send(&raw::puback(publish.pkid)).await;
                    }
                    seen.push(publish);
                }
            }
            Err(ReadError::Timeout) => return seen,
            Err(e) => panic!("connection failed: {e:?}"),
        }
    }
}

/// Reads (and acknowledges) until a PUBLISH on `topic` whose JSON has `field` = `value`.
async fn wait_for(r: &mut Raw, max: usize, topic: &str, field: &str, value: &str) -> Vec<raw::Pub> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        seen.extend(publishes_at_most(r, max, Duration::from_millis(200)).await);
        if seen
            .iter()
            .any(|p| p.topic == topic && p.json()[field] == value)
        {
            return seen;
        }
    }
    panic!("no {field}={value} on {topic}; got {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_packet_size_is_honoured_and_nothing_is_lost() {
    const MAX: usize = 1024;
    let mut srv = Server::start();
    let alice = user(&srv, "mpa");
    let carol = user(&srv, "mpc");
    let connect = Connect::new(V::V5, &format!("{carol}:small"), &carol, "pw")
        .maximum_packet_size(MAX as u32);
    let mut c = Raw::login_with(srv.mqtt, &connect).await;
    let own = format!("user/{carol}/#");
    assert_eq!(c.subscribe(1, &[(own.as_str(), 1)]).await, vec![1]);

    // An 8,000-byte message, then a small one: carol's small device gets only the small one.
    let mut a = Raw::login(srv.mqtt, V::V4, &alice, &alice, "pw").await;
    let send = format!("chat/{alice}/send");
    let big = "b".repeat(8000);
    for (cid, text) in [("c-big", big.as_str()), ("c-small", "small")] {
        let msg = json!({"cid": cid, "to": carol, "type": "text", "text": text});
        assert_eq!(
            a.publish_qos1(&send, msg.to_string().as_bytes(), 7).await,
            0
        );
    }
    let inbox = format!("user/{carol}/inbox");
    let seen = wait_for(&mut c, MAX, &inbox, "text", "small").await;
    assert!(
        seen.iter().all(|p| p.json()["text"] != big.as_str()),
        "the big message was written"
    );

    // A reply too big for the connection becomes a too_large error for the same rid.
    let req = json!({"rid": "h-1", "op": "history", "with": alice});
    c.send(&raw::publish(
        V::V5,
        &format!("chat/{carol}/rpc"),
        req.to_string().as_bytes(),
        0,
        0,
    ))
    .await;
    let rpc = format!("user/{carol}/rpc");
    let seen = wait_for(&mut c, MAX, &rpc, "rid", "h-1").await;
    let reply = seen
        .iter()
        .find(|p| p.topic == rpc)
        .map(|p| p.json())
        .expect("reply");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "too_large", "{reply}");

    // Coming back, the small device replays the queue: the big message is passed over, not
    // tried again and again, and the session serves.
    c.send(&raw::disconnect()).await;
    let mut c = Raw::login_with(srv.mqtt, &connect).await;
    assert_eq!(c.subscribe(1, &[(own.as_str(), 1)]).await, vec![1]);
    let again = publishes_at_most(&mut c, MAX, Duration::from_millis(1500)).await;
    assert!(again.is_empty(), "{again:?}");
    assert!(c.ping().await);
    assert!(srv.metric("chatd_publishes_too_large_total").unwrap_or(0.0) >= 3.0);

    // It stayed queued for a device that can take it.
    let mut d = Raw::login(srv.mqtt, V::V4, &format!("{carol}:big"), &carol, "pw").await;
    assert_eq!(d.subscribe(1, &[(inbox.as_str(), 1)]).await, vec![1]);
    let msg = d.next_json_on(&inbox).await;
    assert_eq!(msg["text"], big.as_str());
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suback_larger_than_the_client_takes_closes_the_connection() {
    let mut srv = Server::start();
    let u = user(&srv, "sa");
    let connect = Connect::new(V::V5, &u, &u, "pw").maximum_packet_size(64);
    let mut r = Raw::login_with(srv.mqtt, &connect).await;
    let names: Vec<String> = (0..80).map(|i| format!("user/{u}/f{i}")).collect();
    let filters: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    r.send(&raw::subscribe(V::V5, 1, &filters)).await;
    let seen = r
        .expect_closed(WAIT, "SUBACK of 80 codes for a 64-byte client")
        .await;
    assert!(seen.iter().all(|p| wire_size(p) <= 64), "{seen:?}");
    assert!(seen.iter().all(|p| p.kind() != SUBACK), "{seen:?}");
    let last = seen.last().expect("a DISCONNECT before the close");
    assert_eq!(last.disconnect_reason(), 0x95, "{seen:?}");
    still_serves(&mut srv).await;
}
