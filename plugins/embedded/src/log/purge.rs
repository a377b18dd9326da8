//! Removed accounts: the pending marks `x/purge/{user}` and the last step of a clean-up (what
//! [`Intent::ForgetUser`](chatd_core::ports::log::Intent) deletes inside a batch is
//! `forget.rs`).
//!
//! Per-user records live under the user's own prefixes (`v/`, `i/`, `q/`, `k/`, `j/`, `t/`)
//! plus `p/{user}` and the token owners `o/{token}`, so the batch finds them by prefix scans.
//! Media rights `a/{media}/{user}` and de-duplication entries `c/{sha256}/{user}` have no
//! per-user index: they are found by a paged scan of all of them, off the committer
//! ([`finish`]), and only then does the mark go. Messages and history stay: the peers keep
//! their history.

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_kv::{KvStore, Op};

use super::rows_under;
use crate::accounts::failed;

/// Keys read per scan while looking for a user's media rights.
const RIGHTS_PAGE: usize = 4096;

/// Every key that starts with `prefix`.
pub(super) fn keys_under(store: &dyn KvStore, prefix: &str) -> Result<Vec<Vec<u8>>, RecordError> {
    let rows = rows_under(store, prefix)?;
    Ok(rows.into_iter().map(|(key, _)| key).collect())
}

/// Users whose removal's clean-up is still pending.
pub(super) fn pending(store: &dyn KvStore) -> Result<Vec<String>, RecordError> {
    let prefix = keys::PURGE_PREFIX;
    Ok(keys_under(store, prefix)?
        .into_iter()
        .filter_map(|key| {
            let user = std::str::from_utf8(key.get(prefix.len()..)?).ok()?;
            Some(user.to_string())
        })
        .collect())
}

/// The last step of a clean-up: the user's media rights and de-duplication entries go, then
/// the pending mark, and everything is flushed. Returns how many keys went (the mark aside).
pub(super) fn finish(store: &dyn KvStore, user: &str) -> Result<usize, RecordError> {
    let mut removed = 0;
    for prefix in [keys::MEDIA_ACCESS_PREFIX, keys::MEDIA_CONTENT_PREFIX] {
        removed += delete_user_entries(store, prefix, user)?;
    }
    store
        .apply(vec![Op::Delete(keys::purge_marker(user))])
        .map_err(failed)?;
    store.flush().map_err(failed)?;
    Ok(removed)
}

/// Deletes every `{prefix}{x}/{user}` key.
fn delete_user_entries(
    store: &dyn KvStore,
    prefix: &str,
    user: &str,
) -> Result<usize, RecordError> {
    let end = keys::prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut removed = 0;
    loop {
        let page = store
            .scan(&from, &end, false, RIGHTS_PAGE)
            .map_err(failed)?;
        let full = page.len() == RIGHTS_PAGE;
        let Some((last, _)) = page.last() else {
            break;
        };
        from = keys::successor(last);
        let ops: Vec<Op> = page
            .into_iter()
            .filter(|(key, _)| owned_by(key, prefix, user))
            .map(|(key, _)| Op::Delete(key))
            .collect();
        removed += ops.len();
        if !ops.is_empty() {
            store.apply(ops).map_err(failed)?;
        }
        if !full {
            break;
        }
    }
    Ok(removed)
}

/// Whether `key` is `{prefix}{x}/{user}` with no `/` inside `x` (media ids and hashes have
/// none, so `c/{sha256}` itself and other users' entries never match).
fn owned_by(key: &[u8], prefix: &str, user: &str) -> bool {
    key.get(prefix.len()..)
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, owner)| owner == user)
}
