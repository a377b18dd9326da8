//! Persistent MQTT sessions against the real binary, over raw sockets so that the exact
//! CONNACK flags, properties and PUBLISH flags are seen: a client that connects with
//! CleanSession 0 (3.1.1) or Clean Start 0 and a Session Expiry Interval (5.0) finds its
//! subscriptions and its unacknowledged messages again — across reconnects, restarts and a
//! `kill -9` — and a 5.0 will waits for its Will Delay Interval. Each test is named after the
//! normative statements it checks (docs/mqtt-conformance.md).

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::raw::{self, Connect, Packet, Pub, Raw, PUBLISH, V};
use support::{unique, Server};

/// Generous bound for every positive wait.
const WAIT: Duration = Duration::from_secs(20);

/// Property id of Session Expiry Interval.
const SESSION_EXPIRY: u8 = 0x11;

/// A new user with password `pw`.
fn user(srv: &Server, prefix: &str) -> String {
    let u = unique(prefix);
    srv.add_user(&u, "pw");
    u
}

/// A CONNECT of `client_id` (user = the part before `:`) with password `pw`.
fn connect(v: V, client_id: &str, clean: bool) -> Connect {
    let user = client_id.split(':').next().unwrap_or(client_id);
    Connect::new(v, client_id, user, "pw").clean(clean)
}

/// Connects; returns the connection and its CONNACK, which must be a success.
async fn open(srv: &Server, c: &Connect) -> (Raw, Packet) {
    let (raw, connack) = Raw::connack(srv.mqtt, c).await;
    assert_eq!(
        connack.connack_code(),
        0,
        "{} refused: {connack:?}",
        c.client_id
    );
    (raw, connack)
}

/// Sends a text from `from` to `to` over a fresh 3.1.1 connection and waits for its PUBACK
/// (the message is stored once it is acknowledged).
async fn send(srv: &Server, from: &str, to: &str, text: &str) {
    let mut a = Raw::login(srv.mqtt, V::V4, &unique(&format!("{from}:s")), from, "pw").await;
    let msg = json!({"to": to, "cid": unique("c"), "type": "text", "text": text});
    let code = a
        .publish_qos1(&format!("chat/{from}/send"), msg.to_string().as_bytes(), 7)
        .await;
    assert_eq!(code, 0, "send refused");
    a.send(&raw::disconnect()).await;
}

/// The next PUBLISH as a packet (not acknowledged), skipping nothing.
async fn next_publish(raw: &mut Raw, what: &str) -> Packet {
    loop {
        match raw.read_packet(WAIT).await {
            Ok(p) if p.kind() == PUBLISH => return p,
            Ok(_) => {}
            Err(e) => panic!("no PUBLISH ({what}): {e:?}"),
        }
    }
}

/// The texts of inbox messages in `pubs`.
fn texts(pubs: &[Pub], inbox: &str) -> Vec<String> {
    pubs.iter()
        .filter(|p| p.topic == inbox)
        .map(|p| p.json()["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until gauge `name` reads `value`.
async fn metric_reaches(srv: &Server, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if srv.metric(name) == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never reached {value}: {:?}", srv.metric(name));
}

/// [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-3.2.2-2], [MQTT-3.2.2-3] (3.1.1) and [MQTT-3.1.2-6],
/// [MQTT-3.2.2-1]: with CleanSession 0 the session is kept after the connection; CONNACK says
/// session present 1 when it is resumed and delivery resumes without a SUBSCRIBE; CleanSession
/// 1 discards it (present 0, and still 0 on the next CleanSession 0 connect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_4_3_2_2_2_a_311_session_resumes_without_subscribe_until_clean_session() {
    let srv = Server::start();
    let bob = user(&srv, "bob");
    let alice = user(&srv, "alice");
    let id = format!("{bob}:phone");
    let inbox = format!("user/{bob}/inbox");

    let (mut b, connack) = open(&srv, &connect(V::V4, &id, false)).await;
    assert!(!connack.session_present(), "no session yet: present 0");
    assert_eq!(b.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
    b.send(&raw::disconnect()).await;
    drop(b);

    send(&srv, &alice, &bob, "while away").await;
    let (mut b, connack) = open(&srv, &connect(V::V4, &id, false)).await;
    assert!(connack.session_present(), "the kept session: present 1");
    let got = b.publishes_for(Duration::from_secs(3)).await;
    assert_eq!(texts(&got, &inbox), vec!["while away"], "{got:?}");
    // Live delivery goes on too, still without a SUBSCRIBE.
    send(&srv, &alice, &bob, "live").await;
    let p = b.next_publish_on(&inbox, WAIT).await.expect("live message");
    assert_eq!(p.json()["text"], "live");
    b.send(&raw::disconnect()).await;
    drop(b);

    // Another device of the same user is another session.
    let (mut t, connack) = open(&srv, &connect(V::V4, &format!("{bob}:tablet"), false)).await;
    assert!(
        !connack.session_present(),
        "a device id has its own session"
    );
    send(&srv, &alice, &bob, "for the phone").await;
    let got = t.publishes_for(Duration::from_secs(2)).await;
    assert!(got.is_empty(), "the tablet subscribed to nothing: {got:?}");
    t.send(&raw::disconnect()).await;

    // CleanSession 1 discards the session: present 0, nothing delivered unasked.
    let (mut b, connack) = open(&srv, &connect(V::V4, &id, true)).await;
    assert!(!connack.session_present(), "clean session: present 0");
    let got = b.publishes_for(Duration::from_secs(2)).await;
    assert!(
        got.is_empty(),
        "no subscription after a clean start: {got:?}"
    );
    b.send(&raw::disconnect()).await;
    drop(b);
    let (mut b, connack) = open(&srv, &connect(V::V4, &id, false)).await;
    assert!(
        !connack.session_present(),
        "the session was discarded by the clean connect"
    );
    let got = b.publishes_for(Duration::from_secs(2)).await;
    assert!(got.is_empty(), "nothing subscribed: {got:?}");
}

/// [MQTT-4.4.0-1] and [MQTT-3.3.1-1]: when a session is resumed, the QoS 1 PUBLISHes the
/// client had not acknowledged are sent again first, with DUP 1 and their packet ids; once
/// acknowledged they are not sent again. Both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_4_0_1_unacknowledged_publishes_are_resent_with_dup_and_their_packet_ids() {
    let srv = Server::start();
    for v in [V::V4, V::V5] {
        let bob = user(&srv, "bob");
        let alice = user(&srv, "alice");
        let id = format!("{bob}:phone");
        let inbox = format!("user/{bob}/inbox");
        let persistent = |c: Connect| match v {
            V::V4 => c,
            V::V5 => c.session_expiry(3600),
        };
        let (mut b, _) = open(&srv, &persistent(connect(v, &id, false))).await;
        assert_eq!(b.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
        for text in ["one", "two", "three"] {
            send(&srv, &alice, &bob, text).await;
        }
        let mut first = Vec::new();
        for _ in 0..3 {
            let p = next_publish(&mut b, "first delivery").await;
            assert!(!p.dup(), "{v:?}: a first delivery has DUP 0");
            first.push(p.publish(v));
        }
        // The connection drops without a PUBACK or a DISCONNECT.
        drop(b);

        let (mut b, connack) = open(&srv, &persistent(connect(v, &id, false))).await;
        assert!(connack.session_present(), "{v:?}: resumed");
        for sent in &first {
            let p = next_publish(&mut b, "resent").await;
            assert!(p.dup(), "{v:?}: resent with DUP 1: {p:?}");
            let again = p.publish(v);
            assert_eq!(again.pkid, sent.pkid, "{v:?}: same packet id");
            assert_eq!(again.payload, sent.payload, "{v:?}: same message");
            b.send(&raw::puback(again.pkid)).await;
        }
        let more = b.publishes_for(Duration::from_secs(2)).await;
        assert!(
            more.is_empty(),
            "{v:?}: acknowledged messages are not sent again: {more:?}"
        );
        send(&srv, &alice, &bob, "four").await;
        let p = next_publish(&mut b, "new message").await;
        assert!(!p.dup(), "{v:?}: a new message has DUP 0");
        assert_eq!(p.publish(v).json()["text"], "four");
        b.send(&raw::puback(p.publish(v).pkid)).await;
        b.send(&raw::disconnect()).await;
    }
}

/// [MQTT-3.1.2-4] across a restart and a crash: a session whose SUBACK the client got keeps
/// that subscription after `kill -9`, and a session that ended before a graceful restart is
/// still there after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_4_a_session_outlives_a_restart_and_a_kill_9() {
    let mut srv = Server::start();
    let bob = user(&srv, "bob");
    let alice = user(&srv, "alice");
    let id = format!("{bob}:phone");
    let inbox = format!("user/{bob}/inbox");

    // Subscribed, still connected, then the server is killed.
    let (mut b, _) = open(&srv, &connect(V::V4, &id, false)).await;
    assert_eq!(b.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
    srv.kill9();
    drop(b);
    srv.restart();
    send(&srv, &alice, &bob, "after the crash").await;
    let (mut b, connack) = open(&srv, &connect(V::V4, &id, false)).await;
    assert!(connack.session_present(), "the session survived kill -9");
    let got = b.publishes_for(Duration::from_secs(3)).await;
    assert_eq!(texts(&got, &inbox), vec!["after the crash"], "{got:?}");
    b.send(&raw::disconnect()).await;
    drop(b);

    // Ended, then a graceful restart.
    srv.stop();
    srv.restart();
    send(&srv, &alice, &bob, "after the restart").await;
    let (mut b, connack) = open(&srv, &connect(V::V4, &id, false)).await;
    assert!(connack.session_present(), "the session survived a restart");
    let got = b.publishes_for(Duration::from_secs(3)).await;
    assert_eq!(texts(&got, &inbox), vec!["after the restart"], "{got:?}");
}

/// 5.0 Session Expiry Interval ([MQTT-3.1.2-23], [MQTT-3.2.2-3]): absent means the session
/// ends with the connection; the server's maximum cuts a longer one and CONNACK says so; the
/// session is gone once it expired; a DISCONNECT may shorten it to 0 but may not raise it
/// from 0 ([MQTT-3.14.2-2]: DISCONNECT 0x82 protocol error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_23_session_expiry_is_honoured_capped_and_announced() {
    let srv = Server::start_with("[limits]\nmax_session_expiry_secs = 3\n");
    let bob = user(&srv, "bob");
    let id = format!("{bob}:phone");
    let inbox = format!("user/{bob}/inbox");

    // No Session Expiry Interval: not kept.
    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false)).await;
    assert!(!connack.session_present());
    assert_eq!(connack.connack_u32_property(SESSION_EXPIRY), None);
    b.subscribe(1, &[(&inbox, 1)]).await;
    b.send(&raw::disconnect()).await;
    drop(b);
    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false).session_expiry(100)).await;
    assert!(!connack.session_present(), "expiry 0: nothing was kept");
    assert_eq!(
        connack.connack_u32_property(SESSION_EXPIRY),
        Some(3),
        "the server's maximum, announced"
    );
    b.subscribe(1, &[(&inbox, 1)]).await;
    b.send(&raw::disconnect()).await;
    drop(b);

    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false).session_expiry(3)).await;
    assert!(connack.session_present(), "resumed within its expiry");
    assert_eq!(
        connack.connack_u32_property(SESSION_EXPIRY),
        None,
        "what the client asked for is granted: not repeated"
    );
    b.send(&raw::disconnect()).await;
    drop(b);
    metric_reaches(&srv, "chatd_kept_sessions", 0.0).await;
    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false).session_expiry(3)).await;
    assert!(!connack.session_present(), "expired");

    // DISCONNECT with Session Expiry 0 ends the session now.
    let mut goodbye = vec![0xe0, 7, 0, 5, SESSION_EXPIRY];
    goodbye.extend(0u32.to_be_bytes());
    b.send(&goodbye).await;
    drop(b);
    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false)).await;
    assert!(!connack.session_present(), "DISCONNECT said expiry 0");

    // Raising 0 to more in DISCONNECT is a protocol error.
    let mut raise = vec![0xe0, 7, 0, 5, SESSION_EXPIRY];
    raise.extend(60u32.to_be_bytes());
    b.send(&raise).await;
    let seen = b.expect_closed(WAIT, "DISCONNECT raising expiry").await;
    let reason = seen
        .iter()
        .find(|p| p.kind() == raw::DISCONNECT)
        .map(Packet::disconnect_reason);
    assert_eq!(reason, Some(0x82), "{seen:?}");
}

/// [MQTT-3.1.2-8], [MQTT-3.1.3-9] (5.0 Will Delay Interval): the will waits for its delay and
/// is not sent when the session is resumed in time; it is sent when the delay passes, or when
/// the session ends first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_9_a_delayed_will_waits_and_is_cancelled_by_a_resumed_session() {
    let srv = Server::start();
    let bob = user(&srv, "bob");
    let alice = user(&srv, "alice");
    let id = format!("{bob}:phone");
    let inbox = format!("user/{alice}/inbox");
    let mut a = Raw::login(srv.mqtt, V::V4, &format!("{alice}:w"), &alice, "pw").await;
    assert_eq!(a.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
    let will = |text: &str| {
        json!({"to": alice, "cid": unique("w"), "type": "text", "text": text}).to_string()
    };
    let with_will = |text: &str, delay: u32, expiry: u32| {
        connect(V::V5, &id, false)
            .session_expiry(expiry)
            .will(&format!("chat/{bob}/send"), will(text).as_bytes())
            .will_delay(delay)
    };

    // Dropped, resumed within the delay: no will.
    let (b, _) = open(&srv, &with_will("cancelled", 3, 60)).await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut b, connack) = open(&srv, &connect(V::V5, &id, false).session_expiry(60)).await;
    assert!(connack.session_present());
    let got = a.publishes_for(Duration::from_secs(5)).await;
    assert!(
        texts(&got, &inbox).is_empty(),
        "will sent although resumed: {got:?}"
    );
    b.send(&raw::disconnect()).await;
    let _ = b.wait_closed(WAIT).await;

    // Dropped for good: the will comes after its delay.
    let (b, _) = open(&srv, &with_will("after the delay", 2, 60)).await;
    let dropped = Instant::now();
    drop(b);
    let p = a.next_publish_on(&inbox, WAIT).await.expect("the will");
    assert_eq!(p.json()["text"], "after the delay");
    assert!(
        dropped.elapsed() >= Duration::from_millis(1900),
        "sent before its delay: {:?}",
        dropped.elapsed()
    );

    // The session ends before the delay does: the will goes with it.
    let (b, _) = open(&srv, &with_will("at session end", 600, 2)).await;
    let dropped = Instant::now();
    drop(b);
    let p = a.next_publish_on(&inbox, WAIT).await.expect("the will");
    assert_eq!(p.json()["text"], "at session end");
    assert!(dropped.elapsed() >= Duration::from_millis(1900));
}

/// Kept sessions are bounded: per user, a new one discards the one that ended longest ago;
/// in all, a 3.1.1 persistent CONNECT is refused (code 3) and a 5.0 one hears Session Expiry
/// 0 (its session ends with the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_sessions_are_bounded_per_user_and_in_all() {
    let srv =
        Server::start_with("[limits]\nmax_kept_sessions_per_user = 2\nmax_kept_sessions = 3\n");
    let bob = user(&srv, "bob");
    for device in ["a", "b", "c"] {
        let (mut b, connack) = open(&srv, &connect(V::V4, &format!("{bob}:{device}"), false)).await;
        assert!(!connack.session_present());
        b.send(&raw::disconnect()).await;
        let _ = b.wait_closed(WAIT).await;
    }
    // `a` ended first: discarded for `c`.
    for (device, present) in [("c", true), ("b", true), ("a", false)] {
        let (mut b, connack) = open(&srv, &connect(V::V4, &format!("{bob}:{device}"), false)).await;
        assert_eq!(connack.session_present(), present, "{device}");
        b.send(&raw::disconnect()).await;
        let _ = b.wait_closed(WAIT).await;
    }
    metric_reaches(&srv, "chatd_kept_sessions", 2.0).await;
    let carol = user(&srv, "carol");
    let (mut c, _) = open(&srv, &connect(V::V4, &format!("{carol}:a"), false)).await;
    c.send(&raw::disconnect()).await;
    // Three kept now: the node is full.
    let (_, connack) = Raw::connack(srv.mqtt, &connect(V::V4, &format!("{carol}:b"), false)).await;
    assert_eq!(connack.connack_code(), 3, "3.1.1: server unavailable");
    let (mut c, connack) = open(
        &srv,
        &connect(V::V5, &format!("{carol}:b"), false).session_expiry(60),
    )
    .await;
    assert_eq!(connack.connack_u32_property(SESSION_EXPIRY), Some(0));
    c.send(&raw::disconnect()).await;
    assert!(srv.metric("chatd_kept_sessions_refused_total") >= Some(2.0));
    // A clean 3.1.1 connect is never refused by it.
    let (mut c, _) = open(&srv, &connect(V::V4, &format!("{carol}:b"), true)).await;
    assert!(c.ping().await);
}

/// In a cluster, a session kept by one node is resumed on another (it is stored in
/// PostgreSQL): session present, the unacknowledged PUBLISHes resent with DUP and their packet
/// ids, and delivery without a SUBSCRIBE, also of what is sent through a third node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_is_resumed_on_another_node() {
    let cluster = support::cluster_kit::Cluster::new();
    let (one, two) = (cluster.node(1), cluster.node(2));
    let bob = user(&one, "bob");
    let alice = user(&one, "alice");
    let id = format!("{bob}:phone");
    let inbox = format!("user/{bob}/inbox");
    let persistent = || connect(V::V5, &id, false).session_expiry(600);

    let (mut b, _) = open(&one, &persistent()).await;
    assert_eq!(b.subscribe(1, &[(&inbox, 1)]).await, vec![1]);
    send(&one, &alice, &bob, "unacknowledged").await;
    let first = next_publish(&mut b, "first delivery").await.publish(V::V5);
    b.send(&raw::disconnect()).await;
    let _ = b.wait_closed(WAIT).await;
    // Node 1 writes the ended session; node 2 reads it from the database.
    let saved = format!(
        "SELECT count(*) FROM mqtt_sessions WHERE client_id = '{id}' AND ended_ms IS NOT NULL"
    );
    let deadline = Instant::now() + WAIT;
    while cluster.count(&saved) != 1 {
        assert!(Instant::now() < deadline, "node 1 never saved the session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut b, connack) = open(&two, &persistent()).await;
    assert!(connack.session_present(), "resumed on node 2");
    let p = next_publish(&mut b, "resent").await;
    assert!(p.dup(), "{p:?}");
    let again = p.publish(V::V5);
    assert_eq!((again.pkid, &again.payload), (first.pkid, &first.payload));
    b.send(&raw::puback(again.pkid)).await;
    send(&one, &alice, &bob, "through node 1").await;
    let p = b
        .next_publish_on(&inbox, WAIT)
        .await
        .expect("delivery on node 2");
    assert_eq!(p.json()["text"], "through node 1");
}
