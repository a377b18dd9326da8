//! Latency histograms and per-receiver delivery bookkeeping.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stamp::Stamp;

/// Highest latency the histograms resolve (one hour, in microseconds); larger values saturate.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram with microsecond resolution and 3 significant digits.
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Latency(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }

    /// Records one latency given in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record((ns / 1000).max(1));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Quantiles of what was recorded, in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |quantile: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(quantile))
            }
        };
        LatencySummary {
            count: h.len(),
            mean: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0.0 } else { ms(h.max()) },
        }
    }
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// What one receiving client saw of the messages of its one sender.
pub struct DeliveryTally {
    run: u32,
    /// `seen[seq]`: that message arrived at least once.
    pub seen: Vec<bool>,
    /// Send → delivery latency of first deliveries.
    pub latency: Latency,
    /// Distinct messages of this run that arrived.
    pub delivered: u64,
    /// Second and later copies of a message.
    pub duplicates: u64,
    /// Benchmark messages of another run (left over in a queue).
    pub stale: u64,
    /// First deliveries that arrived after a message sent later than them.
    pub reordered: u64,
    /// Highest sequence number delivered so far, +1 (0 = none yet).
    next_seq: u64,
    /// Messages that are not benchmark messages or carry a sequence number out of range.
    pub foreign: u64,
    /// Arrival time of the last first delivery ([`crate::clock::now_ns`]), 0 if none.
    pub last_ns: u64,
}

/// Outcome of [`DeliveryTally::record`].
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First copy of a message of this run.
    New,
    /// Anything else (duplicate, stale, foreign).
    Other,
}

impl DeliveryTally {
    /// A tally for `messages` messages of run `run`.
    pub fn new(run: u32, messages: u64) -> Self {
        DeliveryTally {
            run,
            seen: vec![false; messages as usize],
            latency: Latency::new(),
            delivered: 0,
            duplicates: 0,
            stale: 0,
            reordered: 0,
            next_seq: 0,
            foreign: 0,
            last_ns: 0,
        }
    }

    /// Counts one arrival of the message with `stamp` (or a non-benchmark message for `None`)
    /// at time `now_ns`.
    pub fn record(&mut self, stamp: Option<Stamp>, now_ns: u64) -> Arrival {
        let Some(stamp) = stamp else {
            self.foreign += 1;
            return Arrival::Other;
        };
        if stamp.run != self.run {
            self.stale += 1;
            return Arrival::Other;
        }
        let Some(slot) = self.seen.get_mut(stamp.seq as usize) else {
            self.foreign += 1;
            return Arrival::Other;
        };
        if *slot {
            self.duplicates += 1;
            return Arrival::Other;
        }
        *slot = true;
        self.delivered += 1;
        if stamp.seq < self.next_seq {
            self.reordered += 1;
        } else {
            self.next_seq = stamp.seq + 1;
        }
        self.latency.record_ns(now_ns.saturating_sub(stamp.sent_ns));
        self.last_ns = now_ns;
        Arrival::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_kinds() {
        let mut t = DeliveryTally::new(7, 3);
        let st = |run, seq| {
            Some(Stamp {
                sent_ns: 1_000_000,
                run,
                seq,
            })
        };
        assert_eq!(t.record(st(7, 2), 3_000_000), Arrival::New);
        assert_eq!(t.record(st(7, 0), 3_000_000), Arrival::New);
        assert_eq!(t.record(st(7, 0), 3_000_000), Arrival::Other);
        assert_eq!(t.record(st(8, 1), 3_000_000), Arrival::Other);
        assert_eq!(t.record(st(7, 9), 3_000_000), Arrival::Other);
        assert_eq!(t.record(None, 3_000_000), Arrival::Other);
        assert_eq!(
            (t.delivered, t.duplicates, t.stale, t.foreign, t.reordered),
            (2, 1, 1, 2, 1)
        );
        let s = t.latency.summary();
        assert_eq!(s.count, 2);
        assert!((s.p50 - 2.0).abs() < 0.01, "{}", s.p50);
    }
}
