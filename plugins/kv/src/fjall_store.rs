//! The fjall engine behind [`KvStore`]: one fjall database in the engine's directory. Key
//! prefixes tell chatd's records apart, as with sled (the layout is `chatd_embedded::keys`);
//! the families of `key_families.rs` have a keyspace each, every other record shares one.

use std::sync::Arc;

use fjall::compaction::Leveled;
use fjall::config::PartitioningPolicy;
use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::background_priority::lower_threads_named;
use crate::key_families::{family_of, route, Route, FAMILIES};
use crate::memtable_reaper::MemtableReaper;
use crate::table_pacer::{fjall_dirs, read, TablePacer};
use crate::{first_pairs, EngineConfig, KvPair, KvStore, Op, StoreError};

/// The fjall keyspace that holds every record outside the families of `key_families.rs` (and
/// every record at all in stores created before those had keyspaces of their own).
const KEYSPACE: &str = "chatd";

/// Journal bytes from which fjall writes out the memtables that keep the oldest journal (512
/// MiB by default). A keyspace written to slowly would otherwise keep every journal until its
/// own memtable fills, and all of them are replayed at start-up. fjall starts a journal every
/// 64 MB, so this keeps two.
const MAX_JOURNALS_BYTES: u64 = 128 << 20;

/// fjall's background threads (flushes and compactions): one, not fjall's default of one per
/// core (at most 4). Why: in fjall 3.1's pool, worker 0 hands every compaction request it
/// receives back to the queue, so that another worker compacts while it stays free to flush;
/// while that other worker is busy, worker 0 receives the same request again at once, so it
/// spins. At full load a quarter of the workers' CPU went to that loop; with one worker they
/// took a fifth less (docs/benchmarks.md, 2026-12-07, fourth session). One worker flushes and
/// compacts in turn; the committer's pacing (`give_way`) keeps it from falling behind.
const FJALL_WORKER_THREADS: usize = 1;

/// The name fjall gives its flush and compaction threads.
const FJALL_WORKERS: &str = "fjall:worker";

/// A [`KvStore`] on a fjall (LSM-tree) database in one directory.
///
/// Only one process can open the directory at a time: fjall locks a file in it
/// (`std::fs::File::try_lock`), and a second open gets [`StoreError::Locked`], which tells the
/// CLI that a server is running.
pub struct FjallStore {
    db: Database,
    /// Every record outside `families`.
    keyspace: Keyspace,
    /// The keyspaces of [`FAMILIES`], in their order; empty in a store created before they had
    /// keyspaces of their own, which keeps all its records in `keyspace`.
    families: Vec<Keyspace>,
    /// Frees written-out memtables away from fjall's locks (see `memtable_reaper.rs`).
    memtables: MemtableReaper,
    /// Hands tables to the disk while fjall writes them, and frees deleted files gradually
    /// (see `table_pacer.rs`); `None` when `storage.table_pacing_kb` is 0.
    pacer: Option<TablePacer>,
    /// Whether fjall's workers run below the writers' priority, so that the committer must
    /// give way when the workers fall behind (see [`FjallStore::give_way`]).
    lowered: bool,
    /// The most the active memtables of all keyspaces hold together (`storage.memtable_mb`):
    /// past it the largest is written out (see [`FjallStore::keep_memtables_within_budget`]).
    memtable_budget: u64,
}

impl FjallStore {
    /// Opens (creating if needed) the fjall database in `config.path`, with its block cache,
    /// its memtable size (for a new store), its table writeback and its background threads'
    /// priority.
    pub fn open(config: &EngineConfig) -> Result<FjallStore, StoreError> {
        let db = Database::builder(&config.path)
            .cache_size(config.cache_bytes)
            .max_journaling_size(MAX_JOURNALS_BYTES)
            .worker_threads(FJALL_WORKER_THREADS)
            .open()?;
        // A store that has the shared keyspace but not the first family's was created before
        // families had keyspaces; it keeps its one keyspace for good (its records are there).
        let split = !db.keyspace_exists(KEYSPACE) || db.keyspace_exists(FAMILIES[0].keyspace);
        let options = || keyspace_options(config.memtable_bytes);
        let keyspace = db.keyspace(KEYSPACE, options)?;
        let families = match split {
            false => Vec::new(),
            true => FAMILIES
                .iter()
                .map(|f| db.keyspace(f.keyspace, options))
                .collect::<Result<_, _>>()?,
        };
        // fjall starts its workers with the database.
        lower_threads_named(FJALL_WORKERS, config.background_nice);
        let memtables = MemtableReaper::start(config.background_nice);
        // After the keyspace is opened, so that its table directory exists.
        let pacer = (config.pacing_chunk_bytes > 0)
            .then(|| TablePacer::start(fjall_dirs(&config.path), config.pacing_chunk_bytes));
        let store = FjallStore {
            db,
            keyspace,
            families,
            memtables,
            pacer,
            lowered: config.background_nice > 0,
            memtable_budget: config.memtable_bytes,
        };
        store.track_memtables();
        Ok(store)
    }

    /// The keyspace that holds `key`.
    fn keyspace_of(&self, key: &[u8]) -> &Keyspace {
        family_of(key)
            .and_then(|family| self.families.get(family))
            .unwrap_or(&self.keyspace)
    }

    /// The keyspaces that may hold keys from `start` to `end` (`None`: no end).
    fn keyspaces_for(&self, start: &[u8], end: Option<&[u8]>) -> Vec<&Keyspace> {
        if self.families.is_empty() {
            return vec![&self.keyspace];
        }
        match route(start, end) {
            Route::Family(family) => vec![&self.families[family]],
            Route::Rest => vec![&self.keyspace],
            Route::Several => std::iter::once(&self.keyspace)
                .chain(&self.families)
                .collect(),
        }
    }

    /// Every keyspace of the store.
    fn all_keyspaces(&self) -> impl Iterator<Item = &Keyspace> {
        std::iter::once(&self.keyspace).chain(&self.families)
    }

    /// Writes out the largest active memtable when all of them together hold more than the
    /// budget. Why: a keyspace may fill a memtable of the whole budget (one family may be all
    /// that is written for a while), but five full ones would take five times the memory that
    /// the one keyspace of older stores took (at 5,000 msg/s: 304 MB at the peak against 222);
    /// the largest goes first because writing it out frees the most memory for one table.
    fn keep_memtables_within_budget(&self) -> Result<(), StoreError> {
        if self.families.is_empty() {
            return Ok(());
        }
        let mut total = 0;
        let mut largest = (0, &self.keyspace);
        for keyspace in self.all_keyspaces() {
            let size = keyspace.tree.active_memtable().size();
            total += size;
            if size > largest.0 {
                largest = (size, keyspace);
            }
        }
        if total > self.memtable_budget {
            largest.1.rotate_memtable()?;
        }
        Ok(())
    }

    /// Lets the memtable reaper see each keyspace's active memtable.
    fn track_memtables(&self) {
        for (slot, keyspace) in self.all_keyspaces().enumerate() {
            self.memtables.track(slot, keyspace);
        }
    }

    /// Up to `limit` pairs of the range, in order, read from every keyspace that may hold some
    /// through one snapshot, so that no scan shows part of a batch.
    fn pairs(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let snapshot = self.db.snapshot();
        let pair = |guard: fjall::Guard| {
            let (k, v) = guard.into_inner()?;
            Ok((k.to_vec(), v.to_vec()))
        };
        let keyspaces = self.keyspaces_for(start, end);
        let mut merged = Vec::new();
        for keyspace in &keyspaces {
            let pairs = match end {
                Some(end) => {
                    first_pairs(snapshot.range(*keyspace, start..end), reverse, limit, pair)?
                }
                None => first_pairs(snapshot.range(*keyspace, start..), reverse, limit, pair)?,
            };
            merged.extend(pairs);
        }
        // Keyspaces hold disjoint keys, so sorting the first `limit` of each gives the range's.
        if keyspaces.len() > 1 {
            merged.sort_unstable_by(|a, b| match reverse {
                false => a.0.cmp(&b.0),
                true => b.0.cmp(&a.0),
            });
            merged.truncate(limit);
        }
        Ok(merged)
    }

    /// Bytes of table files whose writeback was started while fjall wrote them, and bytes of
    /// deleted files freed a chunk at a time, so far.
    pub fn paced_bytes(&self) -> (u64, u64) {
        self.pacer.as_ref().map_or((0, 0), |p| {
            (read(&p.counts().started), read(&p.counts().freed))
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
        .compaction_strategy(Arc::new(
            Leveled::default().with_l0_threshold(L0_COMPACTION_THRESHOLD),
        ))
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

/// Level-0 tables from which fjall merges them into level 1: 8, not fjall's 4. Why: the keys
/// of cids, history and the shared records spread over the whole of their keyspace, so every
/// merge into level 1 rewrites most of it, and merging twice as many tables at a time halves
/// those rewrites. At full load fjall's worker took a sixth less CPU, 17 % fewer bytes were
/// written and throughput rose 4 % (docs/benchmarks.md, 2026-12-07, fourth session); history
/// reads were as fast. It stays below [`L0_BEHIND`], so merging as planned never makes the
/// committer wait.
const L0_COMPACTION_THRESHOLD: u8 = 8;

/// Sealed memtables (written out or waiting to be) from which the committer gives way to
/// fjall's workers. fjall itself halts every write, 100 ms at a time, from 4.
const SEALED_BEHIND: usize = 2;

/// Level-0 tables from which the committer gives way to fjall's workers. fjall itself slows
/// writes from 20 level-0 runs (by spinning, which takes the CPU its workers need) and halts
/// them, 10 ms at a time, from 30.
const L0_BEHIND: usize = 12;

/// The longest the committer waits per batch for fjall's workers.
const GIVE_WAY_MAX_MS: usize = 20;

/// How long the committer waits between batches while fjall's workers are behind by
/// `l0_tables` level-0 tables and `sealed` sealed memtables: a millisecond per table from
/// [`L0_BEHIND`], four per memtable from [`SEALED_BEHIND`], at most [`GIVE_WAY_MAX_MS`].
fn give_way_ms(l0_tables: usize, sealed: usize) -> u64 {
    let behind =
        (l0_tables + 1).saturating_sub(L0_BEHIND) + (sealed + 1).saturating_sub(SEALED_BEHIND) * 4;
    behind.min(GIVE_WAY_MAX_MS) as u64
}

impl FjallStore {
    /// Up to `limit` pairs from `start` (inclusive) to the end of the key space, ascending:
    /// the pages of a whole-store copy, which no bounded [`KvStore::scan`] range can cover.
    pub(crate) fn pairs_from(&self, start: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        self.pairs(start, None, false, limit)
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
        Ok(snapshot
            .get(self.keyspace_of(key), key)?
            .map(|v| v.to_vec()))
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
        self.pairs(start, Some(end), reverse, limit)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // One write batch: one journal record, published to readers as a whole (over all
        // keyspaces: they share the database's journal and sequence numbers).
        let mut batch = self.db.batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(self.keyspace_of(&k), k, v),
                Op::Delete(k) => batch.remove(self.keyspace_of(&k), k),
                // A weak tombstone: when a flush or compaction meets it with the one value it
                // removes, both go, where a tombstone would stay until the last level.
                Op::DeleteOnce(k) => batch.remove_weak(self.keyspace_of(&k), k),
            }
        }
        batch.commit()?;
        self.track_memtables();
        self.keep_memtables_within_budget()?;
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

    /// Makes the committer wait a little between batches while fjall's workers are behind,
    /// the longer the further behind (see [`give_way_ms`]), so that fjall's own halt is not
    /// reached. Why: the workers run at a lower CPU priority (`background_priority.rs`), so a
    /// saturated machine gives them little; at full load on 2 cores level-0 tables then
    /// piled up to fjall's halt at 30, which stopped every write for 1.2–5.4 s. Waiting while
    /// behind hands them the CPU before that (level 0 stayed at 19 or fewer), and batches
    /// grow meanwhile, so throughput stays above what it was with the workers at the
    /// writers' priority. Never when they run at it: fjall's own pacing is enough then.
    fn give_way(&self) {
        if !self.lowered {
            return;
        }
        let l0_tables = self.all_keyspaces().map(Keyspace::l0_table_count).max();
        let sealed = self
            .all_keyspaces()
            .map(Keyspace::sealed_memtable_count)
            .max();
        let ms = give_way_ms(l0_tables.unwrap_or(0), sealed.unwrap_or(0));
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

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
    fn writers_give_way_only_when_fjall_is_behind_and_more_the_further() {
        assert_eq!(give_way_ms(0, 0), 0);
        assert_eq!(give_way_ms(10, 1), 0);
        assert_eq!(give_way_ms(11, 1), 0);
        assert_eq!(give_way_ms(12, 0), 1);
        assert_eq!(give_way_ms(15, 0), 4);
        assert_eq!(give_way_ms(0, 2), 4);
        assert_eq!(give_way_ms(12, 3), 9);
        assert_eq!(give_way_ms(29, 0), 18);
        assert_eq!(give_way_ms(40, 4), 20);
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

    /// The table pacer runs on a real store: the tables fjall writes have their writeback
    /// started as they are written, and the tables a compaction deletes are freed a chunk at
    /// a time (Linux).
    #[cfg(target_os = "linux")]
    #[test]
    fn tables_are_paced_when_written_and_freed_when_deleted() -> Result<(), StoreError> {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir()?;
        let config = EngineConfig::new(Engine::Fjall, dir.path())
            .with_memtable_bytes(2 << 20)
            .with_pacing_chunk_bytes(64 << 10);
        let store = FjallStore::open(&config)?;
        // Values that do not compress, so that each 2 MiB memtable makes a table of about
        // as much, and enough of them for compactions to merge (and delete) tables.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut round = 0u32;
        while store.paced_bytes().1 == 0 {
            assert!(
                Instant::now() < deadline,
                "no deleted table freed: {:?}",
                store.paced_bytes()
            );
            let ops = (0..256)
                .map(|i| {
                    let value = (0..1024)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            seed as u8
                        })
                        .collect();
                    Op::Put(
                        format!("k/{:04}", (round * 256 + i) % 4096).into_bytes(),
                        value,
                    )
                })
                .collect();
            store.apply(ops)?;
            round += 1;
            if round > 200 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(store.paced_bytes().0 > 0, "{:?}", store.paced_bytes());
        // Every key still reads back whole.
        for i in 0..4096u32 {
            let value = store.get(format!("k/{i:04}").as_bytes())?;
            assert_eq!(value.map(|v| v.len()), Some(1024), "k/{i:04}");
        }
        Ok(())
    }

    /// fjall's flush and compaction threads, and the thread that frees memtables, run below
    /// the process's priority (Linux). Other tests open stores meanwhile, each lowering its
    /// own threads just after starting them: so the test waits until every such thread of
    /// the process is low, which never happens unless stores lower their threads.
    #[cfg(target_os = "linux")]
    #[test]
    fn background_threads_run_at_a_lower_priority() -> Result<(), StoreError> {
        use crate::background_priority::nice_of;
        use std::time::{Duration, Instant};
        let base = nice_of(std::process::id() as libc::id_t).unwrap_or(0);
        let want = (base + i32::from(crate::DEFAULT_BACKGROUND_NICE)).min(19);
        if want == base {
            return Ok(()); // a test run at the lowest priority has nothing to lower
        }
        let dir = tempfile::tempdir()?;
        let store = FjallStore::open(&EngineConfig::new(Engine::Fjall, dir.path()))?;
        // Linux keeps the first 15 bytes of a thread's name.
        let threads = |name: &str| -> Vec<Option<i32>> {
            let name = &name[..name.len().min(15)];
            let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten();
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == name)
                })
                .map(|t| t.file_name().to_str()?.parse().ok().and_then(nice_of))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let workers = threads(FJALL_WORKERS);
            let reapers = threads(crate::memtable_reaper::THREAD_NAME);
            let low = |n: &Option<i32>| n.is_none_or(|n| n >= want);
            if !workers.is_empty()
                && !reapers.is_empty()
                && [&workers, &reapers].iter().all(|t| t.iter().all(low))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "want nice {want}: workers {workers:?}, reapers {reapers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(store);
        Ok(())
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
        let store = FjallStore::open(
            &EngineConfig::new(Engine::Fjall, dir.path())
                .with_memtable_bytes(1 << 20)
                .with_cache_bytes(1 << 20),
        )?;
        for round in 0..6u32 {
            store.apply(vec![Op::Put(
                format!("p/{round}").into_bytes(),
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
            store.memtables.held(0) <= 2,
            "holding {} memtables after 6 rotations",
            store.memtables.held(0)
        );
        assert_eq!(store.get(b"p/0")?, Some(vec![7; 1000]));
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

    /// The keyspace of the family named `name` (a new store has them all).
    fn family<'a>(store: &'a FjallStore, name: &str) -> &'a Keyspace {
        let index = FAMILIES.iter().position(|f| f.keyspace == name);
        &store.families[index.expect("a family of that name")]
    }

    /// A new store keeps each family's records in its keyspace and every other record in the
    /// shared one, and a reopen finds them there.
    #[test]
    fn a_new_store_keeps_each_family_in_its_own_keyspace() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let config = EngineConfig::new(Engine::Fjall, dir.path());
        {
            let store = FjallStore::open(&config)?;
            store.apply(vec![
                Op::Put(b"m/0001".to_vec(), b"hello".to_vec()),
                Op::Put(b"q/bob/0001".to_vec(), Vec::new()),
                Op::Put(b"u/bob".to_vec(), b"{}".to_vec()),
            ])?;
            store.flush()?;
        }
        let store = FjallStore::open(&config)?;
        assert_eq!(store.families.len(), FAMILIES.len());
        assert!(family(&store, "messages").contains_key("m/0001")?);
        assert!(family(&store, "queues").contains_key("q/bob/0001")?);
        assert!(store.keyspace.contains_key("u/bob")?);
        assert!(!store.keyspace.contains_key("m/0001")?);
        assert_eq!(store.get(b"m/0001")?, Some(b"hello".to_vec()));
        Ok(())
    }

    /// Every keyspace of a new store merges level 0 into level 1 from
    /// [`L0_COMPACTION_THRESHOLD`] tables, and keeps doing so after a reopen (fjall records
    /// the strategy in the store and reads it back from there).
    #[test]
    fn keyspaces_merge_level_0_from_eight_tables() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let config = EngineConfig::new(Engine::Fjall, dir.path());
        drop(FjallStore::open(&config)?);
        let store = FjallStore::open(&config)?;
        assert_eq!(store.all_keyspaces().count(), FAMILIES.len() + 1);
        for keyspace in store.all_keyspaces() {
            let threshold = keyspace
                .config
                .compaction_strategy
                .get_config()
                .into_iter()
                .find(|(key, _)| &**key == b"leveled_l0_threshold")
                .map(|(_, value)| value.to_vec());
            assert_eq!(threshold, Some(vec![L0_COMPACTION_THRESHOLD]));
        }
        Ok(())
    }

    /// A store created when every record shared one keyspace goes on using only that one: its
    /// records are found, new ones go there too, and no family keyspace is made.
    #[test]
    fn a_store_created_with_one_keyspace_keeps_it() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        {
            // As chatd created fjall stores before families had keyspaces.
            let db = Database::builder(dir.path()).open()?;
            let old = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
            old.insert("m/0001", "old message")?;
            old.insert("q/bob/0001", "")?;
            db.persist(PersistMode::SyncAll)?;
        }
        let config = EngineConfig::new(Engine::Fjall, dir.path());
        {
            let store = FjallStore::open(&config)?;
            assert!(store.families.is_empty(), "no family keyspaces");
            assert_eq!(store.get(b"m/0001")?, Some(b"old message".to_vec()));
            store.apply(vec![
                Op::Put(b"m/0002".to_vec(), b"new message".to_vec()),
                Op::DeleteOnce(b"q/bob/0001".to_vec()),
            ])?;
            assert!(store.keyspace.contains_key("m/0002")?);
            store.flush()?;
        }
        let store = FjallStore::open(&config)?;
        assert!(store.families.is_empty());
        assert!(!store.db.keyspace_exists(FAMILIES[0].keyspace));
        let messages = store.scan(b"m/", b"m0", false, 10)?;
        assert_eq!(messages.len(), 2);
        assert_eq!(store.scan(b"q/", b"q0", false, 10)?, Vec::new());
        Ok(())
    }

    /// A queue entry put and then removed with [`Op::DeleteOnce`] leaves nothing behind when
    /// its memtable is written out, where [`Op::Delete`] leaves a tombstone in a table.
    #[test]
    fn a_queue_entry_removed_once_leaves_no_table() -> Result<(), StoreError> {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir()?;
        let store = FjallStore::open(&EngineConfig::new(Engine::Fjall, dir.path()))?;
        let queues = family(&store, "queues");
        let written_out = || -> Result<usize, StoreError> {
            queues.rotate_memtable()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while queues.sealed_memtable_count() > 0 {
                assert!(
                    Instant::now() < deadline,
                    "the memtable was not written out"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(queues.table_count())
        };
        store.apply(vec![Op::Put(b"q/bob/0001".to_vec(), Vec::new())])?;
        store.apply(vec![Op::DeleteOnce(b"q/bob/0001".to_vec())])?;
        assert_eq!(written_out()?, 0, "the put and its removal cancel out");
        store.apply(vec![Op::Put(b"q/bob/0002".to_vec(), Vec::new())])?;
        store.apply(vec![Op::Delete(b"q/bob/0002".to_vec())])?;
        assert_eq!(written_out()?, 1, "a plain delete leaves its tombstone");
        assert_eq!(store.get(b"q/bob/0002")?, None);
        Ok(())
    }

    /// The active memtables of all keyspaces together stay within the configured memtable size
    /// (plus the batch that crossed it), however the writes are spread over the families.
    #[test]
    fn memtables_stay_within_one_budget() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let budget = 1 << 20;
        let store = FjallStore::open(
            &EngineConfig::new(Engine::Fjall, dir.path()).with_memtable_bytes(budget),
        )?;
        let batch_bytes = 64 * 1024;
        // Each keyspace gets about 0.9 of the budget, which alone would not rotate it.
        for prefix in ["h/", "k/", "m/", "q/", "u/"] {
            for n in 0..14u32 {
                store.apply(vec![Op::Put(
                    format!("{prefix}{n:04}").into_bytes(),
                    vec![b'x'; batch_bytes as usize],
                )])?;
                let active: u64 = store
                    .all_keyspaces()
                    .map(|k| k.tree.active_memtable().size())
                    .sum();
                assert!(
                    active <= budget + 2 * batch_bytes,
                    "{active} bytes in active memtables after {prefix}{n:04}"
                );
            }
        }
        // Nothing was lost to the rotations.
        assert_eq!(store.scan(b"", b"\xff", false, usize::MAX)?.len(), 5 * 14);
        Ok(())
    }
}
