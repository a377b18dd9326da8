//! What the committer still needs from accounts in key-value form, until it writes through the
//! message-log port: the purged tombstone as a store operation for its clean-up batch, and the
//! history floor read beside the history index. The stored form is the embedded store's
//! (`u/{user}` = [`AccountRecord`] as JSON, see `chatd_embedded::accounts`); this file goes
//! once the committer speaks to the log port.

use chatd_kv::{KvStore, Op, StoreError};

use super::{AccountError, Accounts};
use crate::keys;
use crate::ports::accounts::{AccountRecord, RecordError};

impl Accounts {
    /// [`Accounts::purged_record`] as the store operation the committer's clean-up batch
    /// applies.
    pub fn purged_tombstone(&self, user: &str, floor: &str) -> Result<Option<Op>, AccountError> {
        let Some(record) = self.purged_record(user, floor)? else {
            return Ok(None);
        };
        let value = serde_json::to_vec(&record).map_err(|e| RecordError::Store(e.to_string()))?;
        Ok(Some(Op::Put(keys::account(user), value)))
    }
}

/// The history floor of `user` (see [`super::AccountStatus::Live`]): no 1:1 message with an id
/// at or below it belongs to this account. `None` for an account that was never reclaimed.
pub fn history_floor(store: &dyn KvStore, user: &str) -> Result<Option<String>, StoreError> {
    let Some(bytes) = store.get(&keys::account(user))? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<AccountRecord>(&bytes)
        .ok()
        .and_then(|r| r.floor))
}
