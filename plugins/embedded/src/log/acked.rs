//! Queue entries that devices took out of their queue, waiting for the next commit to delete
//! them.
//!
//! A dequeue is one write per queue entry, and a group fan-out makes one per member: done on
//! the caller's task, every session of the node would wait on the store. So a dequeue only
//! records the key here, and the next batch deletes all recorded keys with its own write (no
//! flush needed: a lost delete only means a redelivery, which clients de-duplicate by id).
//! Until then, queue reads skip them.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

/// Most deletes one batch takes, so a flood of dequeues cannot make one batch huge.
const MAX_PER_BATCH: usize = 8192;

/// The dequeued queue keys not yet deleted.
#[derive(Default)]
pub(super) struct AckedKeys {
    keys: Mutex<HashSet<Vec<u8>>>,
}

impl AckedKeys {
    /// Records a dequeued key; true when it is the only one waiting (the committer then
    /// needs waking: with others waiting it has been woken already).
    pub(super) fn add(&self, key: Vec<u8>) -> bool {
        let mut keys = self.lock();
        let first = keys.is_empty();
        keys.insert(key);
        first
    }

    /// Holds the keys still, so that [`AckedKeys::done`] waits: a queue read that scans the
    /// store while holding them sees each key either deleted or still recorded here.
    pub(super) fn hold(&self) -> MutexGuard<'_, HashSet<Vec<u8>>> {
        self.lock()
    }

    /// Up to a batch's worth of keys to delete; they stay recorded until [`AckedKeys::done`].
    pub(super) fn take(&self) -> Vec<Vec<u8>> {
        self.lock().iter().take(MAX_PER_BATCH).cloned().collect()
    }

    /// The keys were deleted from the store.
    pub(super) fn done(&self, deleted: &[Vec<u8>]) {
        let mut keys = self.lock();
        for key in deleted {
            keys.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<Vec<u8>>> {
        // A set of keys: a poisoned lock holds nothing broken.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}
