//! Rate limiting: a total message rate spread evenly over all senders.

use std::time::Duration;

use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

/// Paces one sender. With a total rate of R msgs/s over S senders, each sender ticks every S/R
/// seconds and sender `i` is offset by i/R seconds, so the senders interleave instead of firing
/// together. Missed ticks are caught up (burst), so the average offered rate stays R as long as the
/// in-flight window allows it.
pub struct Pacer {
    interval: Option<Interval>,
}

impl Pacer {
    /// A pacer for sender `index` of `senders`, starting at `start`; `total_rate` 0 = no limit.
    pub fn new(total_rate: u64, senders: usize, index: usize, start: Instant) -> Self {
        if total_rate == 0 || senders == 0 {
            return Pacer { interval: None };
        }
        let period = Duration::from_secs_f64(senders as f64 / total_rate as f64);
        let offset = Duration::from_secs_f64(index as f64 / total_rate as f64);
        let mut interval = interval_at(start + offset, period.max(Duration::from_nanos(1)));
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        Pacer {
            interval: Some(interval),
        }
    }

    /// Waits until the next message may be sent (returns at once when unlimited).
    pub async fn wait(&mut self) {
        if let Some(interval) = self.interval.as_mut() {
            interval.tick().await;
        }
    }
}
