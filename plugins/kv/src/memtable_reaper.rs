//! Frees fjall's written-out memtables on a thread of chatd's own, so that no write waits for it.
//!
//! Why: when fjall 3.1 rotates a memtable it also drops the tree versions no reader needs any
//! more, under the lock that every write and point read of the keyspace takes. The oldest of
//! those versions holds the previous memtable, already written to a table, and when that is the
//! last reference the whole skiplist is freed right there: hundreds of thousands of entries,
//! 70–140 ms at 32–64 MiB, during which every commit of the server waits (measured in
//! `docs/benchmarks.md`, "the 100–200 ms stalls"). chatd keeps one more reference to each
//! memtable it has seen, so fjall's drop under the lock only counts down; once chatd's
//! reference is the last, the memtable goes to the reaper thread, which frees it while writes
//! go on.
//!
//! Costs: a sealed memtable lives until the first write after fjall let go of it
//! (at most one memtable more than fjall itself would hold, and only until the next commit).

use std::any::Any;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use fjall::{AbstractTree, Keyspace};

/// A memtable, kept only to be freed later (its type is fjall's internal one).
type Held = Arc<dyn Any + Send + Sync>;

/// The name of the thread that frees memtables.
pub(crate) const THREAD_NAME: &str = "chatd-memtable-free";

/// The memtables of a store's keyspaces that chatd holds a reference to, newest last.
pub(crate) struct MemtableReaper {
    /// Per keyspace (by the slot its store gives it), `(memtable id, memtable)` in the order
    /// they were active: memtable ids are counted per keyspace.
    kept: Mutex<Vec<Vec<(u64, Held)>>>,
    /// To the thread that frees them; `None` if it could not be started (fjall frees them).
    reaper: Option<Sender<Held>>,
}

impl MemtableReaper {
    /// Starts the reaper thread, `below` nice levels under the rest of the process (see
    /// `background_priority.rs`); it ends when this value is dropped.
    pub(crate) fn start(below: u8) -> MemtableReaper {
        let (tx, rx) = mpsc::channel::<Held>();
        let started = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                crate::background_priority::lower_this_thread(below);
                // Each received memtable is freed here, when it goes out of scope.
                for memtable in rx {
                    drop(memtable);
                }
            });
        let reaper = match started {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!("no memtable reaper thread ({e}): fjall frees memtables itself");
                None
            }
        };
        MemtableReaper {
            kept: Mutex::new(Vec::new()),
            reaper,
        }
    }

    /// Takes a reference to `keyspace`'s active memtable if it is new, and hands the memtables
    /// that only chatd still holds to the reaper. Called after every write: cheap (a read lock
    /// and a reference count), and a rotation is seen by the next write. `slot` tells the
    /// store's keyspaces apart: the same keyspace is always tracked under the same slot.
    pub(crate) fn track(&self, slot: usize, keyspace: &Keyspace) {
        let Some(reaper) = &self.reaper else {
            return;
        };
        let active = keyspace.tree.active_memtable();
        let id = active.id();
        let mut slots = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() <= slot {
            slots.resize_with(slot + 1, Vec::new);
        }
        let kept = &mut slots[slot];
        if kept.last().map(|(last, _)| *last) != Some(id) {
            kept.push((id, active as Held));
        }
        // The newest stays: fjall writes to it, and it is the last one seen.
        let newest = kept.pop();
        let (still_used, free): (Vec<_>, Vec<_>) = kept
            .drain(..)
            .partition(|(_, memtable)| Arc::strong_count(memtable) > 1);
        *kept = still_used;
        kept.extend(newest);
        drop(slots);
        if free.is_empty() {
            return;
        }
        for (_, memtable) in free {
            // If the thread is gone, the memtable is freed here instead.
            let _ = reaper.send(memtable);
        }
    }

    /// How many memtables chatd holds a reference to in the keyspace of `slot` (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self, slot: usize) -> usize {
        self.kept
            .lock()
            .map(|slots| slots.get(slot).map_or(0, Vec::len))
            .unwrap_or(0)
    }
}
