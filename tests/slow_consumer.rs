//! Slow and dead consumers: a device that subscribes to its inbox and then never reads its socket
//! while another user sends it many large messages. The server's memory must stay bounded, other
//! users' messages must keep flowing, the stuck connection must be closed once its writes make no
//! progress for `limits.write_timeout_secs`, and every message must still reach the device when
//! it comes back.

use crate::support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::raw::{Connect, Raw, V};
use support::{unique, Server};

/// Messages sent to the stuck device, and the size of each text.
const MESSAGES: usize = 240;
const TEXT_BYTES: usize = 60_000;

/// The i-th text: its number, then filler up to [`TEXT_BYTES`].
fn text(i: usize) -> String {
    let mut t = format!("{i:05}:");
    t.extend(std::iter::repeat_n('x', TEXT_BYTES - t.len()));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_reads_nothing_is_closed_and_loses_nothing() {
    let mut srv = Server::start_with(
        // The sender floods on purpose: its per-user send rate is not under test. The session's
        // byte budget is raised so that the window of 60 KB messages outgrows the socket
        // buffers and the writes stall: the write timeout is under test here (the byte budget
        // and the ack timeout in tests/stuck_sessions.rs).
        "[limits]\nwrite_timeout_secs = 3\nmax_text_bytes = 65536\nmax_inflight = 100\nmax_session_buffer_bytes = 16777216\nsends_per_sec = 100000\nsends_burst = 1000000\n",
    );
    let (stuck, sender, a, b) = (
        unique("stuck"),
        unique("sender"),
        unique("alice"),
        unique("bob"),
    );
    for u in [&stuck, &sender, &a, &b] {
        srv.add_user(u, &format!("{u}-pw"));
    }

    // The stuck device: a small receive window, no keep-alive (so only the write timeout can end
    // it), subscribed to its inbox at QoS 1 — and from now on it reads nothing.
    let stuck_client = format!("{stuck}:phone");
    let mut dead = Raw::open_from(srv.mqtt, V::V4, None, Some(4096)).await;
    dead.send(
        &Connect::new(V::V4, &stuck_client, &stuck, &format!("{stuck}-pw"))
            .keep_alive(0)
            .encode(),
    )
    .await;
    let connack = dead
        .read_packet(Duration::from_secs(20))
        .await
        .expect("CONNACK");
    assert_eq!(connack.connack_code(), 0);
    let inbox_filter = format!("user/{stuck}/#");
    assert_eq!(
        dead.subscribe(1, &[(inbox_filter.as_str(), 1)]).await,
        vec![1]
    );

    // A healthy pair chatting all along: alice (3.1.1) sends to bob (5.0) every 100 ms.
    let mut ca = support::online(&srv, &a, &a).await;
    let mut cb = support::connect5(srv.mqtt, &b, &b, &format!("{b}-pw")).await;
    cb.subscribe(
        &format!("user/{b}/#"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let pair = {
        let (stop, a, b) = (stop.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let cid = format!("pair-{i}");
                let started = Instant::now();
                let ack = ca.send(&a, &b, &cid, &cid).await;
                assert_eq!(ack["status"], "sent", "{ack}");
                let m = cb
                    .next_where(&format!("user/{b}/inbox"), "text", &serde_json::json!(cid))
                    .await;
                assert_eq!(m["from"], a.as_str());
                latencies.push(started.elapsed());
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            latencies
        })
    };

    // Memory sampled every 100 ms from here on.
    let rss_before = srv.rss_kib().expect("rss");
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let pid = srv.pid().expect("pid");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_of(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The flood: large messages for the stuck device, each acknowledged (stored) before the next.
    let mut cs = support::online(&srv, &sender, &sender).await;
    let flood_started = Instant::now();
    let mut closed_at = None;
    for i in 0..MESSAGES {
        let ack = cs
            .send(&sender, &stuck, &format!("big-{i}"), &text(i))
            .await;
        assert_eq!(ack["status"], "sent", "send {i}: {ack}");
        if closed_at.is_none()
            && i % 10 == 9
            && srv.metric("chatd_write_timeouts_total") >= Some(1.0)
        {
            closed_at = Some((flood_started.elapsed(), i + 1));
        }
    }
    let flood_time = flood_started.elapsed();

    // The stuck connection is closed for its stalled writes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let timeouts = srv.metric("chatd_write_timeouts_total").expect("metric");
        if timeouts >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck connection was not closed; log:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (closed_after, sent_before_close) =
        closed_at.unwrap_or((flood_started.elapsed(), MESSAGES));
    stop.store(true, Ordering::Relaxed);
    let latencies = pair.await.expect("healthy pair");
    sampler.await.expect("sampler");
    let rss_peak = peak.load(Ordering::Relaxed);
    let rss_after = srv.rss_kib().expect("rss");
    drop(dead);

    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    eprintln!(
        "slow consumer: {MESSAGES} x {TEXT_BYTES} B sent in {flood_time:?}; stuck connection \
         closed {closed_after:?} after the flood began (seen after {sent_before_close} sends); \
         healthy pair: {} messages, median \
         latency {median:?}, max {max:?}; RSS {rss_before} KiB before, peak {rss_peak} KiB, \
         {rss_after} KiB after",
        latencies.len()
    );
    assert!(
        latencies.len() >= 5,
        "the healthy pair exchanged only {} messages",
        latencies.len()
    );
    assert!(
        max < Duration::from_secs(10),
        "the healthy pair waited up to {max:?} for a message"
    );
    // Far below what buffering the flood would take (240 x 60 KB = 14 MB per copy).
    assert!(
        rss_peak < rss_before + 96 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB"
    );

    // The device comes back and gets every message, in order, once each.
    let mut back = Raw::login(
        srv.mqtt,
        V::V4,
        &stuck_client,
        &stuck,
        &format!("{stuck}-pw"),
    )
    .await;
    assert_eq!(
        back.subscribe(1, &[(inbox_filter.as_str(), 1)]).await,
        vec![1]
    );
    let topic = format!("user/{stuck}/inbox");
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    while seen.len() < MESSAGES {
        let p = back
            .next_publish_on(&topic, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "only {} of {MESSAGES} messages came back: {e:?}",
                    seen.len()
                )
            });
        let m = p.json();
        let text = m["text"].as_str().unwrap_or_default();
        let n: usize = text
            .get(..5)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {:?}", &text[..text.len().min(20)]));
        assert_eq!(text.len(), TEXT_BYTES, "message {n} was cut");
        seen.insert(n);
        order.push(n);
    }
    // Redelivered ones (sent before the close, never acknowledged) may come again; the first
    // appearance of each is in send order.
    let mut firsts = Vec::new();
    for n in order {
        if !firsts.contains(&n) {
            firsts.push(n);
        }
    }
    assert_eq!(firsts, (0..MESSAGES).collect::<Vec<_>>());
    assert!(srv.is_running());
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
