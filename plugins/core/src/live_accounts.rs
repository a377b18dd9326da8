//! The accounts known to be live, kept in memory so that a send does not read its recipient's
//! account record from the store.
//!
//! Why: every 1:1 send checks that its recipient exists, on the committer thread; that point
//! read was a fifth of the committer's time at full load (it goes through the engine's
//! filters and indexes of every table). Accounts change rarely and, in one process, only
//! through [`Accounts`](crate::accounts::Accounts) (the embedded store is locked by the
//! server), so what it saw live stays live until it removes the account itself: the cache is
//! exact. Only live accounts are kept — a missing or removed id is read again every time, so
//! an account created by any path is seen at once.
//!
//! A read that started before a removal must not put the account back as live after the
//! removal forgot it: removals count a generation, and a read's answer is kept only if no
//! removal happened since the read began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Accounts remembered at most; past this an arbitrary one is forgotten for each new one.
const CAPACITY: usize = 65_536;

/// Live accounts with the floor of their 1:1 history (see `AccountStatus::Live`).
#[derive(Default)]
pub(crate) struct LiveAccounts {
    live: Mutex<HashMap<String, Option<String>>>,
    /// Removals so far.
    generation: AtomicU64,
    /// Nothing is remembered (the store is written by other processes too).
    off: bool,
}

impl LiveAccounts {
    /// A cache that remembers nothing.
    pub(crate) fn off() -> LiveAccounts {
        LiveAccounts {
            off: true,
            ..LiveAccounts::default()
        }
    }

    /// The floor of `user` if it is known to be live.
    pub(crate) fn get(&self, user: &str) -> Option<Option<String>> {
        self.lock().get(user).cloned()
    }

    /// Where a read of the store begins: pass the result to [`LiveAccounts::remember`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers that `user` was read live with `floor`, unless an account was removed since
    /// `generation`.
    pub(crate) fn remember(&self, user: &str, floor: Option<String>, generation: u64) {
        if self.off {
            return;
        }
        let mut live = self.lock();
        // Checked under the lock that `forget` takes too, so a removal is either before this
        // check (and the answer is dropped) or after the insert (and removes it).
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if live.len() >= CAPACITY && !live.contains_key(user) {
            if let Some(other) = live.keys().next().cloned() {
                live.remove(&other);
            }
        }
        live.insert(user.to_string(), floor);
    }

    /// `user`'s account is being removed or replaced: read it from the store again.
    pub(crate) fn forget(&self, user: &str) {
        let mut live = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        live.remove(user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        // Every change leaves the map consistent, so a poisoned lock holds nothing broken.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_older_than_a_removal_is_not_kept() {
        let cache = LiveAccounts::default();
        let before = cache.generation();
        cache.forget("bob");
        cache.remember("bob", None, before);
        assert_eq!(cache.get("bob"), None);
        cache.remember("bob", None, cache.generation());
        assert_eq!(cache.get("bob"), Some(None));
        cache.forget("bob");
        assert_eq!(cache.get("bob"), None);
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = LiveAccounts::default();
        for n in 0..CAPACITY + 10 {
            cache.remember(&format!("u{n}"), None, cache.generation());
        }
        assert_eq!(cache.lock().len(), CAPACITY);
        assert!(cache.get(&format!("u{}", CAPACITY + 9)).is_some());
    }
}
