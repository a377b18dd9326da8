//! Queue entries that devices acknowledged, waiting for the committer to delete them.
//!
//! A PUBACK used to delete its queue entry with a store write right on the async worker that
//! read it; with a group fan-out that is one write per member, and every session of the node
//! waited on the store. Now a PUBACK only records the key here; the committer deletes all
//! recorded keys with its next batch (one write for many, no flush: a lost delete only means
//! a redelivery, which clients de-duplicate by id). Until then, queue reads skip them.

use std::collections::HashSet;
use std::sync::Mutex;

/// Most deletes one batch takes, so a flood of acks cannot make one batch huge.
const MAX_PER_BATCH: usize = 8192;

/// The acknowledged queue keys not yet deleted.
#[derive(Default)]
pub(crate) struct AckedKeys {
    keys: Mutex<HashSet<Vec<u8>>>,
}

impl AckedKeys {
    /// Records an acknowledged key; true when it is the first one waiting (the committer
    /// then needs waking).
    pub fn add(&self, key: Vec<u8>) -> bool {
        let mut keys = self.lock();
        let first = keys.is_empty();
        keys.insert(key);
        first
    }

    /// Holds the keys still, so that [`AckedKeys::done`] waits: a queue read that scans the
    /// store while holding them sees each key either deleted or still recorded here.
    pub fn hold(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.lock()
    }

    /// Up to a batch's worth of keys to delete; they stay recorded until [`AckedKeys::done`].
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.lock().iter().take(MAX_PER_BATCH).cloned().collect()
    }

    /// The keys were deleted from the store.
    pub fn done(&self, deleted: &[Vec<u8>]) {
        let mut keys = self.lock();
        for key in deleted {
            keys.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}
