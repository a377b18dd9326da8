//! Groups: `g/{group}` = the group record, `r/{group}/{user}` = one membership record (both
//! JSON), and the groups-of-user index `i/{user}/{group}` (empty value), present exactly while
//! the membership record is active, so "which groups is bob in?" is one prefix scan of bob's
//! keys instead of a scan of every group. Every commit that writes a membership record writes
//! its index entry in the same batch; stores from before the index get it built once at open
//! (`x/membership_index` marks it done).
//!
//! Loaded groups are cached, so a group message does not rescan a big group's members. A
//! commit invalidates the groups it changes while it holds the cache lock across its apply,
//! and a load only enters the cache when no invalidation happened since it started: a load
//! racing a commit can never put a stale copy back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_core::records::group::{Group, GroupRecord, MemberRecord};
use chatd_kv::{KvStore, Op};

use super::rows_under;
use crate::accounts::{failed, load};

/// Groups kept in the cache before it is emptied and refilled on demand.
const MAX_CACHED_GROUPS: usize = 4096;

/// Rows read per scan and written per batch while building the index.
const BUILD_CHUNK: usize = 4096;

/// What the cache lock guards.
#[derive(Default)]
pub(super) struct Cached {
    /// Loaded groups by id.
    groups: HashMap<String, Arc<Group>>,
    /// Counts invalidations, so a load that raced one knows its copy may be stale.
    generation: u64,
}

impl Cached {
    /// Forgets `groups` after a commit changed them in the store.
    pub(super) fn invalidate(&mut self, groups: &HashSet<String>) {
        if groups.is_empty() {
            return;
        }
        for group in groups {
            self.groups.remove(group);
        }
        self.generation += 1;
    }

    /// Forgets every group: the store was reopened and may no longer hold what was loaded
    /// (a batch applied before a failed flush is gone).
    pub(super) fn clear(&mut self) {
        self.groups.clear();
        self.generation += 1;
    }
}

/// The group cache.
#[derive(Default)]
pub(super) struct GroupCache(Mutex<Cached>);

impl GroupCache {
    /// Locks the cache; a commit holds it across its apply and invalidation.
    pub(super) fn lock(&self) -> MutexGuard<'_, Cached> {
        // A cache: a poisoned lock holds nothing that the store does not have.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group `group`, from the cache or else loaded from `store`.
    pub(super) fn get(
        &self,
        store: &dyn KvStore,
        group: &str,
    ) -> Result<Option<Arc<Group>>, RecordError> {
        let generation = {
            let cached = self.lock();
            if let Some(g) = cached.groups.get(group) {
                return Ok(Some(g.clone()));
            }
            cached.generation
        };
        // Loaded without the lock, so a big group does not hold up commits and other reads.
        let Some(loaded) = load_group(store, group)?.map(Arc::new) else {
            return Ok(None);
        };
        let mut cached = self.lock();
        if cached.generation == generation {
            if cached.groups.len() >= MAX_CACHED_GROUPS {
                cached.groups.clear();
            }
            cached.groups.insert(group.to_string(), loaded.clone());
        }
        Ok(Some(loaded))
    }
}

/// Reads a group and all its membership records; `None` when no such group exists. An
/// unreadable membership record is skipped (the others still make a usable group).
fn load_group(store: &dyn KvStore, group: &str) -> Result<Option<Group>, RecordError> {
    let Some(record) = load::<GroupRecord>(store, &keys::group(group))? else {
        return Ok(None);
    };
    let prefix = keys::member_prefix(group);
    let rows = rows_under(store, &prefix)?;
    let mut members = BTreeMap::new();
    for (key, value) in rows {
        let user = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
        match serde_json::from_slice::<MemberRecord>(&value) {
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

/// One user's membership record of a group.
pub(super) fn membership(
    store: &dyn KvStore,
    group: &str,
    user: &str,
) -> Result<Option<MemberRecord>, RecordError> {
    load(store, &keys::member(group, user))
}

/// Up to `limit` groups `user` currently belongs to, in group id order (from the index).
pub(super) fn groups_of(
    store: &dyn KvStore,
    user: &str,
    limit: usize,
) -> Result<Vec<String>, RecordError> {
    let prefix = keys::membership_index_prefix(user);
    let rows = store
        .scan(prefix.as_bytes(), &keys::prefix_end(&prefix), false, limit)
        .map_err(failed)?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, _)| {
            let group = std::str::from_utf8(key.get(prefix.len()..)?).ok()?;
            Some(group.to_string())
        })
        .collect())
}

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
/// open, before any commit, so nothing else writes meanwhile.
pub(super) fn build_index_if_missing(store: &dyn KvStore) -> Result<(), RecordError> {
    if store
        .get(keys::MEMBERSHIP_INDEX_BUILT)
        .map_err(failed)?
        .is_some()
    {
        return Ok(());
    }
    let prefix = keys::MEMBERS_PREFIX;
    let end = keys::prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut indexed = 0usize;
    loop {
        let rows = store
            .scan(&from, &end, false, BUILD_CHUNK)
            .map_err(failed)?;
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
            store.apply(ops).map_err(failed)?;
        }
        if n < BUILD_CHUNK {
            break;
        }
    }
    store
        .apply(vec![Op::Put(
            keys::MEMBERSHIP_INDEX_BUILT.to_vec(),
            b"1".to_vec(),
        )])
        .map_err(failed)?;
    store.flush().map_err(failed)?;
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
