//! Counters of the messaging path, for the broker's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the messaging counters since start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatStats {
    /// Messages written to the store (not counting cid retries).
    pub messages_stored: u64,
    /// Batches the committer wrote (each one apply + one flush).
    pub batches: u64,
    /// Sends answered with an earlier ack because their cid was already used.
    pub duplicate_cids: u64,
    /// Sends answered with an error.
    pub rejected: u64,
    /// Receipt status changes stored (each one is also queued for and forwarded to the
    /// message's author); repeated or backward statuses are not counted.
    pub receipts_stored: u64,
    /// Receipt ids refused (each id of a refused publish counts once).
    pub receipts_refused: u64,
}

/// The live counters behind [`ChatStats`], shared by `Chat` and the committer thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// See [`ChatStats::messages_stored`].
    pub messages_stored: AtomicU64,
    /// See [`ChatStats::batches`].
    pub batches: AtomicU64,
    /// See [`ChatStats::duplicate_cids`].
    pub duplicate_cids: AtomicU64,
    /// See [`ChatStats::rejected`].
    pub rejected: AtomicU64,
    /// See [`ChatStats::receipts_stored`].
    pub receipts_stored: AtomicU64,
    /// See [`ChatStats::receipts_refused`].
    pub receipts_refused: AtomicU64,
}

impl Counters {
    /// Adds `n` to one counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> ChatStats {
        ChatStats {
            messages_stored: self.messages_stored.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            duplicate_cids: self.duplicate_cids.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            receipts_stored: self.receipts_stored.load(Ordering::Relaxed),
            receipts_refused: self.receipts_refused.load(Ordering::Relaxed),
        }
    }
}
