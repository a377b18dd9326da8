//! Last-seen times, kept in the store so that presence survives restarts (who is online is not
//! kept: after a restart nobody is, until they reconnect).

use std::sync::Arc;

use crate::ports::accounts::RecordError;
use crate::ports::presence::LastSeenStore;

/// When each user was last seen, over a [`LastSeenStore`].
pub struct LastSeen {
    store: Arc<dyn LastSeenStore>,
}

impl LastSeen {
    /// Last-seen times in `store`.
    pub fn new(store: Arc<dyn LastSeenStore>) -> LastSeen {
        LastSeen { store }
    }

    /// When `user` was last seen, if ever.
    pub fn get(&self, user: &str) -> Result<Option<u64>, RecordError> {
        self.store.last_seen(user)
    }

    /// Records that `user` was seen at `ms`. Not flushed here: the store's background flush and
    /// the flush at shutdown cover it, and losing the last fraction of a second of last-seen
    /// times in a crash loses no message.
    pub fn set(&self, user: &str, ms: u64) -> Result<(), RecordError> {
        self.store.set_last_seen(user, ms)
    }
}
