//! Sustained runs: send→delivery and send→ack latency per time window (`--window`, 10 s by
//! default), printed on stderr as the run goes and kept for the report, with the server's
//! resident memory read at the end of each window (`--pid`).
//!
//! A whole-run percentile hides when a stall happened and whether memory keeps growing; one
//! line per window shows both while a long run is still going.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control;
use crate::procmem;
use crate::stats::{Latency, LatencySummary};

/// The latencies of the window in progress, shared by every client task.
#[derive(Default)]
pub struct Windows(Mutex<Current>);

/// What the window in progress has seen so far.
#[derive(Default)]
struct Current {
    delivery: Latency,
    ack: Latency,
}

impl Windows {
    fn lock(&self) -> MutexGuard<'_, Current> {
        // Histograms only: a panic elsewhere leaves nothing half-updated worth refusing.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a first delivery `ns` nanoseconds after its send.
    pub fn delivery(&self, ns: u64) {
        self.lock().delivery.record_ns(ns);
    }

    /// Records a `sent` ack `ns` nanoseconds after its send.
    pub fn ack(&self, ns: u64) {
        self.lock().ack.record_ns(ns);
    }

    /// Ends the window in progress: its histograms, and empty ones for the next.
    fn take(&self) -> (Latency, Latency) {
        let current = std::mem::take(&mut *self.lock());
        (current.delivery, current.ack)
    }
}

/// The figures of one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// Seconds from the start of the clock to the end of the window.
    pub end_s: f64,
    /// Length of the window in seconds (the last one may be shorter).
    pub secs: f64,
    /// First deliveries in the window, per second.
    pub delivered_per_s: f64,
    /// `sent` acks in the window, per second.
    pub acked_per_s: f64,
    /// Send → delivery latency of the deliveries in the window, ms.
    pub latency_ms: LatencySummary,
    /// Send → ack latency of the acks in the window, ms.
    pub ack_latency_ms: LatencySummary,
    /// The server's resident memory at the end of the window (with `--pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

impl WindowReport {
    /// The figures of a window of `secs` seconds ending `end_s` after the start.
    fn new(
        end_s: f64,
        secs: f64,
        delivery: &Latency,
        ack: &Latency,
        rss_bytes: Option<u64>,
    ) -> Self {
        let (latency_ms, ack_latency_ms) = (delivery.summary(), ack.summary());
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        WindowReport {
            end_s,
            secs,
            delivered_per_s: per_s(latency_ms.count),
            acked_per_s: per_s(ack_latency_ms.count),
            latency_ms,
            ack_latency_ms,
            rss_bytes,
        }
    }

    /// One line for stderr.
    pub fn line(&self) -> String {
        let (d, a) = (&self.latency_ms, &self.ack_latency_ms);
        let rss = self
            .rss_bytes
            .map(|b| format!("  rss {:.0} MB", b as f64 / 1e6))
            .unwrap_or_default();
        format!(
            "[{:>6.0} s] delivered {:>8.0}/s  p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms  \
             acked {:>8.0}/s  p50 {:.2} p99 {:.2} ms{rss}",
            self.end_s,
            self.delivered_per_s,
            d.p50,
            d.p99,
            d.p999,
            d.max,
            self.acked_per_s,
            a.p50,
            a.p99,
        )
    }
}

/// Closes a window every `period` from `start` until `stop` is raised (then closes the last,
/// shorter one if it saw anything), printing each and reading `pid`'s memory; returns them all.
pub async fn sample(
    windows: Arc<Windows>,
    period: Duration,
    pid: Option<u32>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<WindowReport> {
    let mut out = Vec::new();
    let mut from = start;
    let stopped = control::stopped(&mut stop);
    tokio::pin!(stopped);
    loop {
        let next = from + period;
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep_until(next) => {
                out.push(close(&windows, start, from, next, pid));
                from = next;
            }
        }
    }
    let seen = {
        let current = windows.lock();
        current.delivery.summary().count + current.ack.summary().count
    };
    if seen > 0 {
        out.push(close(&windows, start, from, Instant::now(), pid));
    }
    out
}

/// Ends the window from `from` to `until`, prints it and returns its figures.
fn close(
    windows: &Windows,
    start: Instant,
    from: Instant,
    until: Instant,
    pid: Option<u32>,
) -> WindowReport {
    let (delivery, ack) = windows.take();
    let rss = pid.and_then(|pid| procmem::rss_bytes(pid).ok());
    let w = WindowReport::new(
        (until - start).as_secs_f64(),
        (until - from).as_secs_f64(),
        &delivery,
        &ack,
        rss,
    );
    eprintln!("{}", w.line());
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reports_rates_and_percentiles_of_its_own_samples() {
        let w = Windows::default();
        for ms in 1..=100u64 {
            w.delivery(ms * 1_000_000);
        }
        w.ack(2_000_000);
        let (delivery, ack) = w.take();
        let r = WindowReport::new(20.0, 10.0, &delivery, &ack, Some(64_000_000));
        assert_eq!(r.latency_ms.count, 100);
        assert!((r.delivered_per_s - 10.0).abs() < 1e-9);
        assert!((r.acked_per_s - 0.1).abs() < 1e-9);
        assert!(
            (r.latency_ms.p50 - 50.0).abs() < 0.1,
            "{}",
            r.latency_ms.p50
        );
        assert!(
            (r.latency_ms.p99 - 99.0).abs() < 0.1,
            "{}",
            r.latency_ms.p99
        );
        let line = r.line();
        assert!(line.contains("rss 64 MB"), "{line}");
        // The next window starts empty.
        let (delivery, _) = w.take();
        assert_eq!(delivery.summary().count, 0);
    }

    #[test]
    fn an_empty_or_zero_length_window_reports_zeros() {
        let empty = Latency::new();
        let r = WindowReport::new(0.0, 0.0, &empty, &empty, None);
        assert_eq!(
            (r.delivered_per_s, r.acked_per_s, r.latency_ms.p99),
            (0.0, 0.0, 0.0)
        );
        assert!(!r.line().contains("rss"));
    }

    #[tokio::test]
    async fn windows_close_on_time_and_at_the_stop() {
        let w = Arc::new(Windows::default());
        let (stop_tx, stop_rx) = control::stop_signal();
        let start = Instant::now();
        let period = Duration::from_millis(100);
        let task = tokio::spawn(sample(w.clone(), period, None, start, stop_rx));
        w.delivery(1_000_000);
        tokio::time::sleep(Duration::from_millis(250)).await;
        w.ack(1_000_000);
        let _ = stop_tx.send(true);
        let out = task.await.expect("sampler ends");
        // How many windows closed depends on how this machine scheduled the two tasks; every
        // sample is in exactly one of them, and every window but the last is a full period.
        assert!(!out.is_empty());
        assert_eq!(
            out[0].latency_ms.count, 1,
            "recorded before any window closed"
        );
        let (deliveries, acks): (u64, u64) = out.iter().fold((0, 0), |(d, a), w| {
            (d + w.latency_ms.count, a + w.ack_latency_ms.count)
        });
        assert_eq!((deliveries, acks), (1, 1));
        for w in &out[..out.len() - 1] {
            assert!((w.secs - 0.1).abs() < 1e-6, "{}", w.secs);
        }
        assert!(out[out.len() - 1].secs <= 0.1 + 1e-6);
    }
}
