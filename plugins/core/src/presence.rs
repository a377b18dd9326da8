//! Last-seen times, kept in the store so that presence survives restarts (who is online is not
//! kept: after a restart nobody is, until they reconnect).

use std::sync::Arc;

use chatd_kv::{KvStore, Op, StoreError};

/// `p/{user}` → milliseconds since the epoch, as decimal text.
pub struct LastSeen {
    store: Arc<dyn KvStore>,
}

fn key(user: &str) -> Vec<u8> {
    format!("p/{user}").into_bytes()
}

impl LastSeen {
    /// Last-seen times in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> LastSeen {
        LastSeen { store }
    }

    /// When `user` was last seen, if ever.
    pub fn get(&self, user: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .get(&key(user))?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Records that `user` was seen at `ms`. Not flushed here: the store's background flush and
    /// the flush at shutdown cover it, and losing the last fraction of a second of last-seen
    /// times in a crash loses no message.
    pub fn set(&self, user: &str, ms: u64) -> Result<(), StoreError> {
        self.store
            .apply(vec![Op::Put(key(user), ms.to_string().into_bytes())])
    }
}
