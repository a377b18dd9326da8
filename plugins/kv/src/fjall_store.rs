//! The fjall engine behind [`KvStore`]: one fjall database in the engine's directory, with all
//! of chatd's records in one keyspace (key prefixes tell them apart, as with sled; the layout is
//! `chatd_embedded::keys`).

use std::path::Path;

use fjall::config::PartitioningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::memtable_reaper::MemtableReaper;
use crate::{first_pairs, KvPair, KvStore, Op, StoreError};

/// The fjall keyspace that holds every record.
const KEYSPACE: &str = "chatd";

/// A [`KvStore`] on a fjall (LSM-tree) database in one directory.
///
/// Only one process can open the directory at a time: fjall locks a file in it
/// (`std::fs::File::try_lock`), and a second open gets [`StoreError::Locked`], which tells the
/// CLI that a server is running.
pub struct FjallStore {
    db: Database,
    keyspace: Keyspace,
    /// Frees written-out memtables away from fjall's locks (see `memtable_reaper.rs`).
    memtables: MemtableReaper,
}

impl FjallStore {
    /// Opens (creating if needed) the fjall database in `path`, with a block cache of
    /// `cache_bytes`; a new store gets memtables of at most `memtable_bytes`.
    pub fn open(
        path: &Path,
        cache_bytes: u64,
        memtable_bytes: u64,
    ) -> Result<FjallStore, StoreError> {
        let db = Database::builder(path).cache_size(cache_bytes).open()?;
        let keyspace = db.keyspace(KEYSPACE, || keyspace_options(memtable_bytes))?;
        let memtables = MemtableReaper::start();
        memtables.track(&keyspace);
        Ok(FjallStore {
            db,
            keyspace,
            memtables,
        })
    }
}

/// How the keyspace is created. fjall records these options when it creates the keyspace and
/// reuses the recorded ones on every later open, so they only apply to new stores.
///
/// Filters and indexes are partitioned below level 0. By default fjall keeps one filter block
/// and one index block per table and reads it through the block cache whole; once a table
/// holds a few million keys its filter (about 1.2 bytes per key) is larger than what one
/// shard of the cache admits, so every point read that misses (each new message's cid
/// lookup is one) read and checksummed the whole block from the file again. That was 80 % of
/// the committer's time after about two million messages, and throughput fell from 5,000 to
/// 2,000 msg/s. Partitioned, a read loads one small filter and index partition, which the
/// cache keeps, and only each table's small top-level index stays in memory.
///
/// The memtable size too: see `DEFAULT_MEMTABLE_BYTES` for why chatd's is smaller than
/// fjall's.
fn keyspace_options(memtable_bytes: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable_bytes)
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

impl FjallStore {}

impl FjallStore {
    /// Up to `limit` pairs from `start` (inclusive) to the end of the key space, ascending:
    /// the pages of a whole-store copy, which no bounded [`KvStore::scan`] range can cover.
    pub(crate) fn pairs_from(&self, start: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let snapshot = self.db.snapshot();
        let range = snapshot.range(&self.keyspace, start..);
        first_pairs(range, false, limit, |guard: fjall::Guard| {
            let (k, v) = guard.into_inner()?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        match e {
            // fjall's own directory lock is held (by another process, or another open store).
            fjall::Error::Locked => StoreError::Locked,
            e => StoreError::Fjall(e),
        }
    }
}

impl KvStore for FjallStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // Through a snapshot, like `scan`: a keyspace read at the newest sequence number could
        // see a batch that is still being applied to the memtable in part.
        let snapshot = self.db.snapshot();
        Ok(snapshot.get(&self.keyspace, key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        // An empty or inverted range needs no lookup (and fjall is not asked about one).
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        // A snapshot holds the sequence number of the last batch applied whole, so a scan never
        // shows part of a batch.
        let snapshot = self.db.snapshot();
        let range = snapshot.range(&self.keyspace, start..end);
        first_pairs(range, reverse, limit, |guard: fjall::Guard| {
            let (k, v) = guard.into_inner()?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // One write batch: one journal record, published to readers as a whole.
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(&self.keyspace, k, v),
                Op::Delete(k) => batch.remove(&self.keyspace, k),
            }
        }
        batch.commit()?;
        self.memtables.track(&self.keyspace);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every applied batch is in the journal (the write-ahead log); `SyncAll` flushes its
        // buffer and calls `File::sync_all`, which is fsync(2), not fdatasync(2). fsync covers
        // the data and the file's metadata (its size), which is what recovery reads, so it is
        // enough: what the memtables hold is replayed from the journal on open, and fjall
        // itself syncs the segment files it writes from them before it drops journal files.
        // fdatasync would very likely do too (it syncs a size change), but this is the mode
        // fjall documents as durable without conditions.
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{open, Engine, EngineConfig};

    /// The fjall engine on `dir`, opened the way everything else opens it.
    fn open_fjall(dir: &Path) -> Result<Arc<dyn KvStore>, StoreError> {
        open(&EngineConfig::new(Engine::Fjall, dir))
    }

    /// The engine conformance suite, on fjall.
    mod conformance {
        crate::conformance_tests!(super::open_fjall);
    }

    #[test]
    fn second_open_is_locked() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let _first = open_fjall(dir.path())?;
        match open_fjall(dir.path()) {
            Err(StoreError::Locked) => Ok(()),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    /// chatd's references to written-out memtables are let go of (and the memtables freed by
    /// the reaper thread) once fjall drops them, however many rotations there are: besides the
    /// active memtable, only the one written out last (which fjall keeps until its next
    /// rotation) stays held.
    #[test]
    fn memtables_are_let_go_of_after_rotations() -> Result<(), StoreError> {
        use fjall::AbstractTree;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir()?;
        let store = FjallStore::open(dir.path(), 1 << 20, 1 << 20)?;
        for round in 0..6u32 {
            store.apply(vec![Op::Put(
                format!("m/{round}").into_bytes(),
                vec![7; 1000],
            )])?;
            assert!(store.keyspace.rotate_memtable()?, "round {round} rotated");
            // fjall's workers write the sealed memtable out; wait for it.
            let deadline = Instant::now() + Duration::from_secs(60);
            while store.keyspace.tree.sealed_memtable_count() > 0 {
                assert!(Instant::now() < deadline, "round {round} never flushed");
                std::thread::sleep(Duration::from_millis(20));
            }
            store.apply(vec![Op::Put(format!("n/{round}").into_bytes(), Vec::new())])?;
        }
        assert!(
            store.memtables.held() <= 2,
            "holding {} memtables after 6 rotations",
            store.memtables.held()
        );
        assert_eq!(store.get(b"m/0")?, Some(vec![7; 1000]));
        assert_eq!(store.get(b"n/5")?, Some(Vec::new()));
        Ok(())
    }

    #[test]
    fn reopen_after_flush_keeps_data_and_takes_writes() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        {
            let s = open_fjall(dir.path())?;
            s.apply(vec![
                Op::Put(b"q/bob/1".to_vec(), b"one".to_vec()),
                Op::Put(b"q/bob/2".to_vec(), b"two".to_vec()),
            ])?;
            s.apply(vec![Op::Delete(b"q/bob/1".to_vec())])?;
            s.flush()?;
        }
        // The lock is released with the last handle, so the reopen needs no wait.
        let s = open_fjall(dir.path())?;
        assert_eq!(s.get(b"q/bob/1")?, None);
        assert_eq!(s.get(b"q/bob/2")?, Some(b"two".to_vec()));
        s.apply(vec![Op::Put(b"q/bob/3".to_vec(), b"three".to_vec())])?;
        s.flush()?;
        drop(s);
        let s = open_fjall(dir.path())?;
        let all = s.scan(b"q/bob/", b"q/bob0", false, 10)?;
        assert_eq!(
            all,
            vec![
                (b"q/bob/2".to_vec(), b"two".to_vec()),
                (b"q/bob/3".to_vec(), b"three".to_vec()),
            ]
        );
        Ok(())
    }
}
