//! How many groups each user belongs to, for `limits.max_groups_per_user`.
//!
//! Membership records are keyed by group (`r/{group}/{user}`), so "which groups is bob in?"
//! would mean scanning every group. The index `i/{user}/{group}` answers it with one prefix
//! scan of bob's own keys: the committer writes it together with each membership record
//! (present while the user is a member, deleted when they leave or are removed), so both are
//! always in the same batch. Counting reads at most the limit's worth of keys.
//!
//! Stores written before the index existed get it built once at start-up from the
//! membership records (`x/membership_index` marks it done).

use std::collections::HashMap;

use super::group_records::MemberRecord;
use crate::keys;
use chatd_kv::{KvStore, Op, StoreError};

/// Rows read per scan and written per batch while building the index.
const BUILD_CHUNK: usize = 4096;

/// What one batch changes in users' group counts before it is written: the store does not
/// show these yet.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Staged {
    /// Groups the user joined in this batch.
    pub(super) joined: usize,
    /// Groups the user left (or was removed from) in this batch.
    pub(super) left: usize,
}

/// Per user, what the batch changes (see [`Staged`]).
pub(super) type StagedCounts = HashMap<String, Staged>;

/// The index write that matches a membership record being written.
pub(super) fn index_op(group: &str, user: &str, member: &MemberRecord) -> Op {
    let key = keys::membership_index(user, group);
    if member.active() {
        Op::Put(key, Vec::new())
    } else {
        Op::Delete(key)
    }
}

/// Builds the `i/` index from the membership records unless it was built before. Runs at
/// start-up, before the committer, so nothing else writes meanwhile.
pub fn build_if_missing(store: &dyn KvStore) -> Result<(), StoreError> {
    if store.get(keys::MEMBERSHIP_INDEX_BUILT)?.is_some() {
        return Ok(());
    }
    let prefix = keys::MEMBERS_PREFIX;
    let end = keys::prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut indexed = 0usize;
    loop {
        let rows = store.scan(&from, &end, false, BUILD_CHUNK)?;
        let n = rows.len();
        let mut ops = Vec::new();
        for (key, value) in &rows {
            from = keys::successor(key);
            let Some((group, user)) = split_member_key(key) else {
                continue;
            };
            match serde_json::from_slice::<MemberRecord>(value) {
                Ok(m) if m.active() => ops.push(index_op(group, user, &m)),
                Ok(_) => {}
                Err(e) => tracing::warn!("membership {group}/{user} not indexed: {e}"),
            }
        }
        indexed += ops.len();
        if !ops.is_empty() {
            store.apply(ops)?;
        }
        if n < BUILD_CHUNK {
            break;
        }
    }
    store.apply(vec![Op::Put(
        keys::MEMBERSHIP_INDEX_BUILT.to_vec(),
        b"1".to_vec(),
    )])?;
    store.flush()?;
    if indexed > 0 {
        tracing::info!("indexed {indexed} group memberships by user");
    }
    Ok(())
}

/// `(group, user)` of a membership key `r/{group}/{user}`.
fn split_member_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = std::str::from_utf8(key.get(keys::MEMBERS_PREFIX.len()..)?).ok()?;
    let (group, user) = rest.split_once('/')?;
    (!group.is_empty() && !user.is_empty()).then_some((group, user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_kv::{Engine, EngineConfig};

    #[test]
    fn the_index_is_built_once_from_current_memberships() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path())).expect("store");
        let record = |open: bool| {
            let to = if open { "null" } else { "\"2\"" };
            format!(r#"{{"role":"member","windows":[["1",{to}]]}}"#).into_bytes()
        };
        store
            .apply(vec![
                Op::Put(keys::member("g_a", "bob"), record(true)),
                Op::Put(keys::member("g_a", "carol"), record(false)),
                Op::Put(keys::member("g_b", "bob"), record(true)),
                Op::Put(keys::member("g_c", "dave"), b"not json".to_vec()),
            ])
            .expect("write");
        build_if_missing(&store).expect("build");
        let index = |user: &str| {
            let p = keys::membership_index_prefix(user);
            store
                .scan(p.as_bytes(), &keys::prefix_end(&p), false, usize::MAX)
                .expect("scan")
                .len()
        };
        assert_eq!((index("bob"), index("carol"), index("dave")), (2, 0, 0));
        // Built once: a later pass leaves the index alone.
        store
            .apply(vec![Op::Delete(keys::membership_index("bob", "g_a"))])
            .expect("delete");
        build_if_missing(&store).expect("second pass");
        assert_eq!(index("bob"), 1);
    }
}
