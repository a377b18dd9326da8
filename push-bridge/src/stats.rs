//! The bridge's counters, for `/metrics` and for tests and the throughput example.
//!
//! Per device token and notification: `sent` (accepted by the service), `failed` (refused for
//! good, including refusals that deleted the token), `retried` (each retry), `dropped` (given
//! up: retries exhausted, or no adapter configured for the token's platform). Per job group:
//! `skipped` (the user came online, or got the messages, before the push was due). Plus
//! `tokens_deleted` (tokens the services called invalid).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters.
#[derive(Default, Debug)]
pub struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) tokens_deleted: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> PushStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PushStats {
            sent: get(&self.sent),
            failed: get(&self.failed),
            retried: get(&self.retried),
            dropped: get(&self.dropped),
            skipped: get(&self.skipped),
            tokens_deleted: get(&self.tokens_deleted),
        }
    }
}

/// A copy of the counters (see the module documentation for what each counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Notifications the services accepted.
    pub sent: u64,
    /// Notifications refused for good.
    pub failed: u64,
    /// Retries made.
    pub retried: u64,
    /// Notifications given up on.
    pub dropped: u64,
    /// Job groups not pushed because the user came online first.
    pub skipped: u64,
    /// Tokens deleted because a service called them invalid.
    pub tokens_deleted: u64,
}
