//! Transitional: group reads straight from the key-value store, until the committer and the
//! readers use the message-log port.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::records::group::*;
use crate::keys;
use chatd_kv::{KvStore, StoreError};

/// Reads a group and all its membership records; `None` when no such group exists.
pub fn load(store: &dyn KvStore, group: &str) -> Result<Option<Group>, StoreError> {
    let Some(bytes) = store.get(&keys::group(group))? else {
        return Ok(None);
    };
    let record: GroupRecord = decode(&bytes, "group record")?;
    let prefix = keys::member_prefix(group);
    let rows = store.scan(
        prefix.as_bytes(),
        &keys::prefix_end(&prefix),
        false,
        usize::MAX,
    )?;
    let mut members = BTreeMap::new();
    for (key, value) in rows {
        let user = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
        match decode::<MemberRecord>(&value, "membership record") {
            Ok(m) => {
                members.insert(user.into_owned(), m);
            }
            Err(e) => tracing::warn!("group {group}: skipping member {user}: {e}"),
        }
    }
    Ok(Some(Group {
        id: group.to_string(),
        record,
        members,
    }))
}

/// Reads one user's membership record of a group.
pub fn membership(
    store: &dyn KvStore,
    group: &str,
    user: &str,
) -> Result<Option<MemberRecord>, StoreError> {
    match store.get(&keys::member(group, user))? {
        None => Ok(None),
        Some(bytes) => decode(&bytes, "membership record").map(Some),
    }
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Other(format!("stored {what}: {e}")))
}

