//! Queue entries that devices acknowledged, waiting for the next batch to delete them, as the
//! embedded store does: one `DELETE` per delivery, each a round trip, is what held a node to
//! about 4,500 deliveries a second (and a group fan-out to 1,000). The next batch deletes all
//! of them with one statement in its own transaction (no extra commit: a lost delete is only a
//! redelivery, which clients de-duplicate by id). Until then, queue reads skip them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// Most deletes one batch takes, so a flood of dequeues cannot make one batch huge.
const MAX_PER_BATCH: usize = 8192;

/// The acknowledged entries not yet deleted.
#[derive(Default)]
pub(super) struct Acked {
    state: Mutex<State>,
}

/// Queue ids by user, and whether a batch was asked for since the last one took entries.
#[derive(Default)]
struct State {
    pending: HashMap<String, HashSet<String>>,
    asked: bool,
}

impl Acked {
    /// Records an acknowledged entry; true when no batch has been asked for since the last
    /// one took entries (the committer then needs waking). Entries recorded while a batch is
    /// being written are not in it: they ask again, or they would wait for the next send,
    /// while other nodes, reading the table, deliver them again.
    pub(super) fn add(&self, user: &str, qid: &str) -> bool {
        let mut state = self.lock();
        state
            .pending
            .entry(user.to_string())
            .or_default()
            .insert(qid.to_string());
        !std::mem::replace(&mut state.asked, true)
    }

    /// Up to a batch's worth of entries to delete, as (users, queue ids) arrays; they stay
    /// recorded until [`Acked::done`].
    pub(super) fn take(&self) -> (Vec<String>, Vec<String>) {
        let mut state = self.lock();
        let (mut users, mut qids) = (Vec::new(), Vec::new());
        // Whatever is left behind (past the batch limit) asks for the next batch.
        let mut left = false;
        'all: for (user, ids) in state.pending.iter() {
            for qid in ids {
                if users.len() == MAX_PER_BATCH {
                    left = true;
                    break 'all;
                }
                users.push(user.clone());
                qids.push(qid.clone());
            }
        }
        state.asked = left;
        (users, qids)
    }

    /// The entries were deleted by a committed batch.
    pub(super) fn done(&self, users: &[String], qids: &[String]) {
        let mut state = self.lock();
        for (user, qid) in users.iter().zip(qids) {
            if let Some(ids) = state.pending.get_mut(user) {
                ids.remove(qid);
                if ids.is_empty() {
                    state.pending.remove(user);
                }
            }
        }
    }

    /// The entries of `user` still waiting.
    pub(super) fn of(&self, user: &str) -> HashSet<String> {
        self.lock().pending.get(user).cloned().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data: a poisoned lock holds nothing broken.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
