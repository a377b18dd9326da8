//! Sessions whose client stops reading or acknowledging (issue 13, item 6). A stuck client —
//! subscribed, keep-alive 0, never reading its socket — must cost a bounded number of bytes
//! (`limits.max_session_buffer_bytes`), not a count of the largest messages; and since its
//! messages in flight fit in the kernel's socket buffers (so writes never stall and
//! `limits.write_timeout_secs` never fires), it must be closed once its oldest unacknowledged
//! PUBLISH is `limits.ack_timeout_secs` old — without losing anything, and without closing
//! sessions that are merely idle.

use crate::support;

use std::time::{Duration, Instant};

use support::raw::{Connect, Raw, ReadError, DISCONNECT, PUBLISH, V};
use support::{unique, Server};

/// A connection logged in with keep-alive 0 (so only the limits under test can end it) and
/// subscribed to everything of its user at QoS 1. From here on the test decides whether it
/// reads and acknowledges.
async fn subscribed(srv: &Server, v: V, client_id: &str, user: &str) -> Raw {
    let connect = Connect::new(v, client_id, user, &format!("{user}-pw")).keep_alive(0);
    let mut raw = Raw::login_with(srv.mqtt, &connect).await;
    let filter = format!("user/{user}/#");
    assert_eq!(raw.subscribe(1, &[(filter.as_str(), 1)]).await, vec![1]);
    raw
}

/// The i-th text of `len` bytes: its number, then filler.
fn text(i: usize, len: usize) -> String {
    let mut t = format!("{i:05}:");
    t.extend(std::iter::repeat_n('x', len - t.len()));
    t
}

/// Logs `client_id` in again and reads `user`'s inbox until the texts numbered `0..count`
/// have all come (acknowledging them); returns their numbers in the order they first came.
async fn drain_inbox(srv: &Server, v: V, client_id: &str, user: &str, count: usize) -> Vec<usize> {
    let mut back = subscribed(srv, v, client_id, user).await;
    let topic = format!("user/{user}/inbox");
    let mut firsts = Vec::new();
    while firsts.len() < count {
        let p = back
            .next_publish_on(&topic, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{user}: only {} of {count} messages came back: {e:?}",
                    firsts.len()
                )
            });
        let m = p.json();
        let n: usize = m["text"]
            .as_str()
            .and_then(|t| t.get(..5))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {m}"));
        if !firsts.contains(&n) {
            firsts.push(n);
        }
    }
    firsts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_session_holds_at_most_its_byte_budget() {
    const BUDGET: f64 = 128.0 * 1024.0;
    const MESSAGES: usize = 200;
    const TEXT: usize = 16_000;
    let srv = Server::start_with(
        // Defaults otherwise: a window of 100, so without the byte budget 100 x 16 KB would be
        // in flight and the other 100 would wait in the mailbox (up to 256 of them). The sender
        // floods on purpose.
        "[limits]\nmax_session_buffer_bytes = 131072\nack_timeout_secs = 3600\nsends_per_sec = 100000\nsends_burst = 1000000\n",
    );
    let (stuck, sender) = (unique("stuck"), unique("sender"));
    for u in [&stuck, &sender] {
        srv.add_user(u, &format!("{u}-pw"));
    }
    let stuck_client = format!("{stuck}:phone");
    // Subscribed, and from now on it reads nothing.
    let dead = subscribed(&srv, V::V4, &stuck_client, &stuck).await;

    let mut cs = support::online(&srv, &sender, &sender).await;
    let rss_before = srv.rss_kib().expect("rss");
    let mut peak = 0.0f64;
    for i in 0..MESSAGES {
        let ack = cs
            .send(&sender, &stuck, &format!("m-{i}"), &text(i, TEXT))
            .await;
        assert_eq!(ack["status"], "sent", "send {i}: {ack}");
        if i % 20 == 19 {
            let held = srv
                .metric("chatd_session_buffered_bytes_max")
                .expect("chatd_session_buffered_bytes_max");
            peak = peak.max(held);
        }
    }
    // The last deliveries reach the session just after their acks: watch a little longer.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        peak = peak.max(
            srv.metric("chatd_session_buffered_bytes_max")
                .expect("metric"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = srv.metric("chatd_session_buffered_bytes").expect("metric");
    let rss_after = srv.rss_kib().expect("rss");
    eprintln!(
        "stuck session: peak {peak} B held (budget {BUDGET}), {total} B in all at the end; \
         RSS {rss_before} KiB before, {rss_after} KiB after {MESSAGES} x {TEXT} B"
    );
    // The budget, plus at most one message past it.
    assert!(
        peak <= BUDGET + TEXT as f64 + 1024.0,
        "one stuck session held {peak} bytes (budget {BUDGET})"
    );
    // It did fill up: the gauge measures what the session holds.
    assert!(
        peak >= BUDGET / 2.0,
        "the stuck session held only {peak} bytes"
    );
    assert!(
        total <= BUDGET + TEXT as f64 + 1024.0,
        "{total} bytes held in all"
    );

    // Nothing was lost: the device comes back and gets every message, in order.
    drop(dead);
    let firsts = drain_inbox(&srv, V::V4, &stuck_client, &stuck, MESSAGES).await;
    assert_eq!(firsts, (0..MESSAGES).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_acknowledge_nothing_are_closed_and_lose_nothing() {
    const ACK_TIMEOUT: Duration = Duration::from_secs(2);
    const EACH: usize = 5;
    let mut srv = Server::start_with(
        "[limits]\nack_timeout_secs = 2\nsends_per_sec = 100000\nsends_burst = 1000000\n",
    );
    let (deaf, stuck, idle, sender) = (
        unique("deaf"),
        unique("stuck"),
        unique("idle"),
        unique("sender"),
    );
    for u in [&deaf, &stuck, &idle, &sender] {
        srv.add_user(u, &format!("{u}-pw"));
    }
    let (deaf_client, stuck_client) = (format!("{deaf}:phone"), format!("{stuck}:phone"));
    // deaf (5.0) reads everything and acknowledges nothing; stuck (3.1.1) reads nothing at all
    // (a few small messages fit in its socket buffers, so no write ever stalls); idle (5.0) is
    // subscribed and gets nothing. None has a keep-alive.
    let mut deaf_conn = subscribed(&srv, V::V5, &deaf_client, &deaf).await;
    let mut stuck_conn = subscribed(&srv, V::V4, &stuck_client, &stuck).await;
    let mut idle_conn = subscribed(&srv, V::V5, &format!("{idle}:phone"), &idle).await;
    let idle_since = Instant::now();

    // The sender's own session gets a QoS 1 ack for every send and acknowledges them: busy,
    // never late, so never closed.
    let mut cs = support::online(&srv, &sender, &sender).await;
    for i in 0..EACH {
        for to in [&deaf, &stuck] {
            let ack = cs
                .send(&sender, to, &format!("{to}-{i}"), &text(i, 100))
                .await;
            assert_eq!(ack["status"], "sent", "{ack}");
        }
    }

    // deaf sees its messages, then a DISCONNECT 0x97 once the first has waited for its PUBACK
    // for the timeout, then the close.
    let mut publishes = 0;
    let mut first_at = None;
    let reason = loop {
        match deaf_conn.read_packet(Duration::from_secs(30)).await {
            Ok(p) if p.kind() == PUBLISH => {
                publishes += 1;
                first_at.get_or_insert_with(Instant::now);
            }
            Ok(p) if p.kind() == DISCONNECT => break p.disconnect_reason(),
            Ok(_) => {}
            Err(e) => panic!(
                "no DISCONNECT for a session that acknowledged nothing ({publishes} publishes \
                 read): {e:?}; log:\n{}",
                srv.log()
            ),
        }
    };
    let waited = first_at.expect("a publish").elapsed();
    assert_eq!(reason, 0x97, "DISCONNECT reason");
    // All of them unless the sends took longer than the timeout (then the rest stays queued).
    assert!(publishes >= 1);
    assert!(
        waited >= ACK_TIMEOUT / 2,
        "closed {waited:?} after its first message, before the timeout"
    );
    assert!(matches!(
        deaf_conn.read_packet(Duration::from_secs(10)).await,
        Err(ReadError::Closed)
    ));

    // stuck is closed too, though it never read a byte and its writes never stalled.
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.metric("chatd_ack_timeouts_total") < Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "the session that reads nothing was not closed; log:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(srv.metric("chatd_write_timeouts_total"), Some(0.0));
    let mut seen = 0;
    loop {
        match stuck_conn.read_packet(Duration::from_secs(10)).await {
            Ok(p) if p.kind() == PUBLISH => seen += 1,
            Ok(_) => {}
            Err(ReadError::Closed) => break,
            Err(e) => panic!("the session that reads nothing is still open: {e:?}"),
        }
    }
    assert!(seen >= 1, "nothing was written before the close");

    // The idle session, open for longer than the timeout with nothing in flight, is not closed,
    // nor is the busy sender's.
    let left = (ACK_TIMEOUT + Duration::from_secs(1)).saturating_sub(idle_since.elapsed());
    tokio::time::sleep(left).await;
    assert!(idle_conn.ping().await, "an idle session was closed");
    let ack = cs.send(&sender, &idle, "last", "still here").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let m = idle_conn.next_json_on(&format!("user/{idle}/inbox")).await;
    assert_eq!(m["text"], "still here");
    assert_eq!(srv.metric("chatd_ack_timeouts_total"), Some(2.0));

    // Their messages stayed queued: each device gets them all on its next connection.
    for (v, client, user) in [(V::V5, &deaf_client, &deaf), (V::V4, &stuck_client, &stuck)] {
        let firsts = drain_inbox(&srv, v, client, user, EACH).await;
        assert_eq!(firsts, (0..EACH).collect::<Vec<_>>(), "{user}");
    }
    assert!(srv.is_running());
}
