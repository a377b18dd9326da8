//! The last-seen port: when each user was last seen, kept so that presence survives restarts.

use super::accounts::RecordError;

/// Where last-seen times are kept.
pub trait LastSeenStore: Send + Sync + 'static {
    /// When `user` was last seen (ms since the epoch), if ever.
    fn last_seen(&self, user: &str) -> Result<Option<u64>, RecordError>;

    /// Records that `user` was seen at `ms`. Need not be durable at once: losing the last
    /// moment of last-seen times in a crash loses no message.
    fn set_last_seen(&self, user: &str, ms: u64) -> Result<(), RecordError>;
}
