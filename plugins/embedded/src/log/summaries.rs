//! The conversation summaries (`v/{user}/{conversation}`) that commits wrote lately, kept in
//! memory so that the next change to one needs no read of the store.
//!
//! Every 1:1 message changes two summaries (the sender's and the recipient's) and every
//! receipt one: without this, each is a `get` on the committer's thread before the batch can
//! be written (point reads, these among them, were 15 % of its time at 10,000 msg/s). The
//! cache is exact, not a guess:
//! only the log's commits write summaries, one at a time under `applied`, and each commit
//! updates the cache after its apply with the values it wrote; a batch that forgets a user
//! drops that user's entries. So an entry here always equals the store's value. Bounded by
//! [`MAX_ENTRIES`]: when full it starts again empty (a miss only costs the read it saves).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use chatd_core::records::chat::Summary;

/// Most summaries kept: about 200 bytes each, so a few MiB at most.
pub(super) const MAX_ENTRIES: usize = 16_384;

/// Summaries as the last commits left them in the store, by key.
#[derive(Default)]
pub(super) struct SummaryCache {
    entries: Mutex<HashMap<Vec<u8>, Summary>>,
}

impl SummaryCache {
    /// The stored summary under `key`, if a recent commit wrote it.
    pub(super) fn get(&self, key: &[u8]) -> Option<Summary> {
        self.lock().get(key).cloned()
    }

    /// Records what an applied batch wrote: its summaries, and the users it forgot (key
    /// prefixes, whose entries go).
    pub(super) fn written(&self, summaries: &BTreeMap<Vec<u8>, Summary>, forgotten: &[String]) {
        let mut entries = self.lock();
        if !forgotten.is_empty() {
            entries.retain(|key, _| !forgotten.iter().any(|p| key.starts_with(p.as_bytes())));
        }
        if entries.len() + summaries.len() > MAX_ENTRIES {
            entries.clear();
        }
        for (key, summary) in summaries.iter().take(MAX_ENTRIES) {
            entries.insert(key.clone(), summary.clone());
        }
    }

    /// Forgets everything: after a failed apply the store may or may not hold the batch.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Summary>> {
        // Plain values: a poisoned lock holds nothing half-changed that matters, but clear it
        // to be sure the next reads go to the store.
        self.entries.lock().unwrap_or_else(|p| {
            let mut entries = p.into_inner();
            entries.clear();
            entries
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(unread: u64) -> Summary {
        Summary {
            peer: "bob".into(),
            unread,
            ..Summary::default()
        }
    }

    #[test]
    fn keeps_what_was_written_and_drops_forgotten_users() {
        let cache = SummaryCache::default();
        let mut batch = BTreeMap::new();
        batch.insert(b"v/alice/d:alice:bob".to_vec(), summary(1));
        batch.insert(b"v/bob/d:alice:bob".to_vec(), summary(2));
        cache.written(&batch, &[]);
        assert_eq!(cache.get(b"v/alice/d:alice:bob").map(|s| s.unread), Some(1));
        cache.written(&BTreeMap::new(), &["v/bob/".to_string()]);
        assert!(cache.get(b"v/bob/d:alice:bob").is_none());
        assert!(cache.get(b"v/alice/d:alice:bob").is_some());
    }

    #[test]
    fn stays_bounded() {
        let cache = SummaryCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            let mut batch = BTreeMap::new();
            batch.insert(format!("v/u{i}/c").into_bytes(), summary(0));
            cache.written(&batch, &[]);
            assert!(cache.lock().len() <= MAX_ENTRIES);
        }
        assert!(cache
            .get(format!("v/u{}/c", MAX_ENTRIES + 9).as_bytes())
            .is_some());
    }
}
