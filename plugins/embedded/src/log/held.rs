//! Queue entries held in memory for a moment before they are written as records of their own.
//!
//! Why: a device online takes most queue entries out of its queue (it acknowledges them)
//! within milliseconds of their commit. Written at once, each costs the store two records (the
//! entry, then its deletion) that nobody reads: a fifth of what a 1:1 message cost the
//! embedded engines at full load.
//!
//! So a batch that queues entries writes one record that lists them all (`x/held/{n}`),
//! flushed with the batch, and keeps the entries here, where queue reads and push's "still
//! queued" find them as if stored. An entry taken out of the queue while held just goes: no
//! write at all. Entries still held after [`HOLD`] (their user's devices are offline or slow),
//! or while more than [`MAX_HELD`] are held, are written as ordinary queue records by the next
//! commit, which also deletes their list; a list whose entries all went is deleted by the next
//! commit too.
//!
//! Opening the store, and recovering from a storage failure, writes out every entry that the
//! lists on disk still name and deletes the lists. An entry taken out of the queue before a
//! crash is then delivered again, which clients de-duplicate by id, as after a crash that lost
//! the deletion of an acknowledged entry.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_kv::{KvPair, KvStore, Op};

use super::rows_under;
use crate::accounts::failed;

/// How long an entry is held before it is written: long enough for a device online to
/// acknowledge it (a round trip over a mobile network is well under a second).
pub const HOLD: Duration = Duration::from_secs(1);

/// Most entries held at once (beyond, the oldest lists are written out): about 10 MB of
/// memory with receipt events, far less with 1:1 messages, whose entries hold no value.
pub const MAX_HELD: usize = 65_536;

/// Queue entries by key: their values.
pub(super) type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// One held entry.
struct Held {
    /// The entry's value, as its record would hold it.
    value: Vec<u8>,
    /// The list that names it.
    list: u64,
    /// Being written by the commit under way: a dequeue meanwhile must delete the record.
    writing: bool,
}

/// One list record and what is left of it.
struct List {
    /// When its batch was applied.
    since: Instant,
    /// The queue keys it names.
    keys: Vec<Vec<u8>>,
    /// How many of them are still held.
    open: usize,
}

/// The state behind the lock.
#[derive(Default)]
struct Inner {
    /// Held entries by queue key.
    entries: BTreeMap<Vec<u8>, Held>,
    /// Lists by number, oldest first.
    lists: BTreeMap<u64, List>,
    /// Lists none of whose entries is held any more: the next commit deletes them.
    finished: HashSet<u64>,
    /// The number of the next list.
    next: u64,
}

/// The queue entries held in memory (see the module's documentation); shared by the message
/// log, which holds and writes them, and the push port, which asks whether one is queued.
#[derive(Default)]
pub struct HeldEntries {
    inner: Mutex<Inner>,
}

/// What one commit does with held entries, from [`HeldEntries::stage`] to
/// [`HeldEntries::applied`] or [`HeldEntries::unstage`].
#[derive(Default)]
pub(super) struct Staged {
    /// The operations to add to the batch.
    pub(super) ops: Vec<Op>,
    /// The entries the batch queues, with the number of their list.
    new: Option<(u64, Entries)>,
    /// Keys of held entries the batch writes as records.
    written: Vec<Vec<u8>>,
    /// Lists the batch deletes.
    deleted: Vec<u64>,
    /// Keys of held entries of users the batch forgets.
    dropped: Vec<Vec<u8>>,
}

/// The key of list `n`: numbers sort as they grow.
fn list_key(n: u64) -> Vec<u8> {
    format!("{}{n:020}", keys::HELD_PREFIX).into_bytes()
}

/// A list's value: each entry as its key's length (2 bytes), the key, its value's length (4
/// bytes), the value; lengths big-endian.
fn encode(entries: &Entries) -> Vec<u8> {
    let size = entries.iter().map(|(k, v)| 6 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (key, value) in entries {
        // Queue keys are a user id and a message id: far below 64 KiB.
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The entries of a list's value; what follows a damaged part is left out, with a warning.
fn decode(mut bytes: &[u8]) -> Vec<KvPair> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some(entry) = next_entry(&mut bytes) else {
            tracing::warn!("a list of held queue entries is damaged; its rest is skipped");
            break;
        };
        out.push(entry);
    }
    out
}

/// The first entry of `bytes`, which then start after it.
fn next_entry(bytes: &mut &[u8]) -> Option<KvPair> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let (key, rest) = rest.split_at_checked(u16::from_be_bytes(*len) as usize)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (value, rest) = rest.split_at_checked(u32::from_be_bytes(*len) as usize)?;
    *bytes = rest;
    Some((key.to_vec(), value.to_vec()))
}

/// The number of list record `key`, if it is one.
fn list_number(key: &[u8]) -> Option<u64> {
    let digits = key.strip_prefix(keys::HELD_PREFIX.as_bytes())?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl HeldEntries {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data, changed in steps that leave it whole: a poisoned lock holds nothing broken.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every entry the lists in `store` name as a queue record (unless it is one
    /// already), deletes the lists and flushes; forgets what was held, and numbers new lists
    /// after the ones found. Called on open and after a storage failure, with no commit under
    /// way: what was held but never reached the disk went with its batch.
    pub(super) fn write_out_stored(&self, store: &dyn KvStore) -> Result<(), RecordError> {
        let lists = rows_under(store, keys::HELD_PREFIX)?;
        let mut next = 0;
        let mut ops = Vec::new();
        for (key, value) in lists {
            if let Some(n) = list_number(&key) {
                next = next.max(n + 1);
            }
            for (entry, value) in decode(&value) {
                // Written out already by a commit that kept the list for other entries: a
                // second put would make it a record put twice.
                if store.get(&entry).map_err(failed)?.is_none() {
                    ops.push(Op::Put(entry, value));
                }
            }
            ops.push(Op::Delete(key));
        }
        if !ops.is_empty() {
            store.apply(ops).map_err(failed)?;
            store.flush().map_err(failed)?;
        }
        *self.lock() = Inner {
            next,
            ..Inner::default()
        };
        Ok(())
    }

    /// What the commit under way does with held entries: it holds `new` (the entries it
    /// queues), writes out the lists due at `now` (every list when `everything`, at shutdown)
    /// and deletes finished ones; the held entries of users it forgets (under `forgotten`
    /// prefixes) go. The written entries count as being written until
    /// [`HeldEntries::applied`] or [`HeldEntries::unstage`].
    pub(super) fn stage(
        &self,
        now: Instant,
        everything: bool,
        new: Entries,
        forgotten: &[String],
    ) -> Staged {
        let mut inner = self.lock();
        let mut staged = Staged::default();
        if !forgotten.is_empty() {
            staged.dropped = inner
                .entries
                .keys()
                .filter(|key| forgotten.iter().any(|p| key.starts_with(p.as_bytes())))
                .cloned()
                .collect();
        }
        inner.write_out_due(&mut staged, now, everything, new.len());
        for &n in &inner.finished {
            if !staged.deleted.contains(&n) {
                staged.deleted.push(n);
            }
        }
        if !staged.dropped.is_empty() {
            inner.rewrite_without_dropped(&mut staged);
        }
        staged
            .ops
            .extend(staged.deleted.iter().map(|&n| Op::Delete(list_key(n))));
        if !new.is_empty() {
            staged.ops.push(Op::Put(list_key(inner.next), encode(&new)));
            staged.new = Some((inner.next, new));
            inner.next += 1;
        }
        staged
    }

    /// The commit's batch is applied: its new entries are held, the written ones are records
    /// now, the deleted lists and the forgotten users' entries go.
    pub(super) fn applied(&self, staged: Staged, now: Instant) {
        let mut inner = self.lock();
        for key in staged.written.iter().chain(&staged.dropped) {
            inner.remove(key);
        }
        for n in &staged.deleted {
            inner.lists.remove(n);
            inner.finished.remove(n);
        }
        if let Some((n, new)) = staged.new {
            let keys: Vec<Vec<u8>> = new.keys().cloned().collect();
            let open = keys.len();
            for (key, value) in new {
                let entry = Held {
                    value,
                    list: n,
                    writing: false,
                };
                if let Some(old) = inner.entries.insert(key, entry) {
                    // Queue ids are never issued twice; should one be, its older list closes.
                    inner.closed_one(old.list);
                }
            }
            inner.lists.insert(
                n,
                List {
                    since: now,
                    keys,
                    open,
                },
            );
        }
    }

    /// The commit's batch failed: the entries it was writing are held as before.
    pub(super) fn unstage(&self, staged: &Staged) {
        let mut inner = self.lock();
        for key in &staged.written {
            if let Some(entry) = inner.entries.get_mut(key) {
                entry.writing = false;
            }
        }
    }

    /// Takes `key` out of the queue if it is held and not being written: true when it was
    /// (nothing is left to delete).
    pub(super) fn dequeue(&self, key: &[u8]) -> bool {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(entry) if !entry.writing => {
                inner.remove(key);
                true
            }
            _ => false,
        }
    }

    /// The held entries from `start` (inclusive) to `end` (exclusive), at most `limit`.
    pub(super) fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<KvPair> {
        if start >= end {
            return Vec::new();
        }
        let inner = self.lock();
        inner
            .entries
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(key, held)| (key.clone(), held.value.clone()))
            .collect()
    }

    /// True when the queue entry `key` is held.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Stages the writing out of every list due at `now` (every list when `everything`), oldest
    /// first: those held for [`HOLD`], then more while over [`MAX_HELD`] with `adding` more to
    /// come. Entries of forgotten users (`staged.dropped`) are not written.
    fn write_out_due(
        &mut self,
        staged: &mut Staged,
        now: Instant,
        everything: bool,
        adding: usize,
    ) {
        // Counting what this batch adds, so that after it no more than the bound are held
        // (unless the batch alone queues more: its list is then written out by the next).
        let mut held = self.entries.len() + adding;
        for (&n, list) in self.lists.iter() {
            let due =
                everything || now.saturating_duration_since(list.since) >= HOLD || held > MAX_HELD;
            if !due {
                break;
            }
            for key in &list.keys {
                let Some(entry) = self.entries.get_mut(key) else {
                    continue;
                };
                if staged.dropped.binary_search(key).is_err() {
                    entry.writing = true;
                    staged.ops.push(Op::Put(key.clone(), entry.value.clone()));
                    staged.written.push(key.clone());
                }
                held -= 1;
            }
            staged.deleted.push(n);
        }
    }

    /// Stages writing again, without them, every list (not deleted by this batch) that names
    /// entries of forgotten users: an open after a crash writes out what lists name, and must
    /// not bring back a removed account's queue (its id may be taken again).
    fn rewrite_without_dropped(&self, staged: &mut Staged) {
        let dropped = |key: &Vec<u8>| staged.dropped.binary_search(key).is_ok();
        let mut ops = Vec::new();
        let mut emptied = Vec::new();
        for (&n, list) in self.lists.iter() {
            if !list.keys.iter().any(dropped) || staged.deleted.contains(&n) {
                continue;
            }
            let rest: Entries = list
                .keys
                .iter()
                .filter(|key| !dropped(key))
                .filter_map(|key| Some((key.clone(), self.entries.get(key)?.value.clone())))
                .collect();
            if rest.is_empty() {
                emptied.push(n);
            } else {
                ops.push(Op::Put(list_key(n), encode(&rest)));
            }
        }
        staged.ops.extend(ops);
        staged.deleted.extend(emptied);
    }

    /// Forgets the held entry `key`, if any, and closes it in its list.
    fn remove(&mut self, key: &[u8]) {
        if let Some(held) = self.entries.remove(key) {
            self.closed_one(held.list);
        }
    }

    /// One entry of list `n` is no longer held: a list left with none is finished.
    fn closed_one(&mut self, n: u64) {
        if let Some(list) = self.lists.get_mut(&n) {
            list.open = list.open.saturating_sub(1);
            if list.open == 0 {
                self.finished.insert(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_decode_what_they_encode_and_stop_at_damage() {
        let entries: Entries = [
            (b"q/bob/1".to_vec(), Vec::new()),
            (b"q/carol/2".to_vec(), b"@1".to_vec()),
        ]
        .into();
        let bytes = encode(&entries);
        assert_eq!(
            decode(&bytes),
            entries.clone().into_iter().collect::<Vec<_>>()
        );
        assert_eq!(decode(&bytes[..bytes.len() - 1]).len(), 1);
        assert_eq!(list_number(&list_key(42)), Some(42));
        assert!(list_key(9) < list_key(10));
    }

    /// An entry being written by a commit is not dropped by a dequeue meanwhile (its record
    /// may already be in the store: the dequeue must delete it), and it stays readable until
    /// the commit is applied; a failed commit leaves it held as before.
    #[test]
    fn an_entry_being_written_is_left_to_the_store() {
        let held = HeldEntries::default();
        let start = Instant::now();
        let new: Entries = [(b"q/bob/1".to_vec(), Vec::new())].into();
        let staged = held.stage(start, false, new, &[]);
        assert_eq!(staged.ops.len(), 1, "the list, nothing else");
        held.applied(staged, start);
        assert!(held.holds(b"q/bob/1"));

        let later = start + HOLD;
        let staged = held.stage(later, false, Entries::new(), &[]);
        assert_eq!(
            staged.ops,
            vec![
                Op::Put(b"q/bob/1".to_vec(), Vec::new()),
                Op::Delete(list_key(0))
            ]
        );
        assert!(!held.dequeue(b"q/bob/1"), "being written");
        assert_eq!(held.range(b"q/bob/", b"q/bob0", 10).len(), 1);
        held.unstage(&staged);
        assert!(held.holds(b"q/bob/1"));

        let staged = held.stage(later, false, Entries::new(), &[]);
        held.applied(staged, later);
        assert!(!held.holds(b"q/bob/1"));
        assert!(held.is_empty());
        assert!(held.lock().lists.is_empty());
    }
}
