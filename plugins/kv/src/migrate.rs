//! Converting a chatd data directory's store from one engine to the other, offline
//! (`chatd store migrate --to fjall|sled`).
//!
//! [`migrate_data_dir`] copies every pair of the current store, page by page (one
//! [`KvStore::apply`] per page, never the whole store in memory), into a new store of the target
//! engine in `{data dir}/{target dir}.migrating`, flushes it, reopens it and checks that it holds
//! the same number of keys and the same checksum (SHA-256 over every pair in key order) as the
//! source. Only then is the temporary directory renamed to the target engine's directory and the
//! old store moved aside to `{data dir}/{old dir}.old`.
//!
//! Crash safety: the source store is only read, and stays locked (so no server can open it)
//! until the new store is in place. A crash during the copy or the verification leaves the
//! source untouched and still the data directory's only store; the leftover `*.migrating`
//! directory is ignored by the server, and removed and redone by the next run. The new store is
//! renamed into place before the old one is moved aside, so a crash between the two renames
//! leaves both directories, which the server refuses to start on (it never starts on an empty
//! store instead); [`MigrateError::TargetExists`] then tells the operator what to do.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Engine, EngineConfig, FjallStore, KvPair, KvStore, Op, SledStore, StoreError};

/// Pairs read and written per page of a migration.
pub const PAGE: usize = 4096;

/// Suffix of the temporary directory a migration builds the new store in.
const MIGRATING: &str = "migrating";

/// Suffix of the directory the old store is moved to.
const OLD: &str = "old";

/// What a whole-store read found: the number of pairs, their size and their checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of keys.
    pub keys: u64,
    /// Total size of keys and values, in bytes.
    pub bytes: u64,
    /// SHA-256 over every pair in key order (each key and value preceded by its length).
    pub checksum: [u8; 32],
}

/// The running count and checksum of a sequence of pairs.
struct Tally {
    keys: u64,
    bytes: u64,
    hash: Sha256,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            keys: 0,
            bytes: 0,
            hash: Sha256::new(),
        }
    }

    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.keys += 1;
        self.bytes += (key.len() + value.len()) as u64;
        self.hash.update((key.len() as u64).to_le_bytes());
        self.hash.update(key);
        self.hash.update((value.len() as u64).to_le_bytes());
        self.hash.update(value);
    }

    fn finish(self) -> Summary {
        Summary {
            keys: self.keys,
            bytes: self.bytes,
            checksum: self.hash.finalize().into(),
        }
    }
}

/// A store opened with its concrete engine, which can read the key space to its very end.
enum EngineStore {
    Sled(SledStore),
    Fjall(FjallStore),
}

impl EngineStore {
    fn open(config: &EngineConfig) -> Result<EngineStore, StoreError> {
        fs::create_dir_all(&config.path)?;
        Ok(match config.engine {
            Engine::Sled => EngineStore::Sled(SledStore::open(&config.path, config.cache_bytes)?),
            Engine::Fjall => EngineStore::Fjall(FjallStore::open(config)?),
        })
    }

    fn store(&self) -> &dyn KvStore {
        match self {
            EngineStore::Sled(store) => store,
            EngineStore::Fjall(store) => store,
        }
    }

    fn pairs_from(&self, start: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        match self {
            EngineStore::Sled(store) => store.pairs_from(start, limit),
            EngineStore::Fjall(store) => store.pairs_from(start, limit),
        }
    }

    /// Calls `page` with every page of at most `page_size` pairs, in key order.
    fn for_each_page(
        &self,
        page_size: usize,
        mut page: impl FnMut(Vec<KvPair>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = Vec::new();
        loop {
            let pairs = self.pairs_from(&start, page_size.max(1))?;
            let Some((last, _)) = pairs.last() else {
                return Ok(());
            };
            // The smallest key after `last`.
            start = last.clone();
            start.push(0);
            let full = pairs.len() >= page_size.max(1);
            page(pairs)?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Count, size and checksum of every pair, read page by page.
    fn summary(&self, page_size: usize) -> Result<Summary, StoreError> {
        let mut tally = Tally::new();
        self.for_each_page(page_size, |pairs| {
            for (k, v) in &pairs {
                tally.add(k, v);
            }
            Ok(())
        })?;
        Ok(tally.finish())
    }
}

/// What [`migrate_data_dir`] did.
#[derive(Clone, Debug)]
pub struct Migrated {
    /// The engine the data directory was on.
    pub from: Engine,
    /// The engine it is on now.
    pub to: Engine,
    /// The new store's directory.
    pub path: PathBuf,
    /// Where the old store was moved.
    pub old_path: PathBuf,
    /// What was copied (and verified in the new store).
    pub summary: Summary,
    /// How long the copy, the verification and the renames took.
    pub elapsed: Duration,
    /// A leftover temporary directory of an interrupted migration that was removed first.
    pub removed_leftover: Option<PathBuf>,
}

/// Why a migration (or removing the old copy) was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A server (or another tool) holds the store.
    #[error(
        "the store in {} is in use (locked by a running chatd?): stop the server and run the \
         command again", .0.display()
    )]
    Locked(PathBuf),
    /// The data directory holds no store at all.
    #[error(
        "{} holds no store to migrate; a new data directory simply gets storage.engine",
        .0.display()
    )]
    NoStore(PathBuf),
    /// The store already is on the requested engine.
    #[error("the store ({}) already is on {engine}; nothing to do", path.display())]
    AlreadyOn {
        /// The engine asked for.
        engine: Engine,
        /// The store's directory.
        path: PathBuf,
    },
    /// The target engine's directory exists next to the current store.
    #[error(
        "{target} already exists next to the {from} store {source_path}: if an earlier migration \
         to {to} was interrupted after `{target}` was put in place, move {source_path} aside \
         (e.g. to {source_path}.old) and start the server on {target}; otherwise remove or move \
         {target} away and run the migration again",
        target = .target.display(), source_path = .source_path.display()
    )]
    TargetExists {
        /// The engine the store is on.
        from: Engine,
        /// The engine asked for.
        to: Engine,
        /// The current store's directory.
        source_path: PathBuf,
        /// The existing target directory.
        target: PathBuf,
    },
    /// The old store cannot be moved aside: its `*.old` name is taken.
    #[error(
        "{} already exists (the old copy from an earlier migration): remove it with `chatd store \
         migrate --remove-old` (or move it away) and run the migration again",
        .0.display()
    )]
    OldExists(PathBuf),
    /// The new store does not hold what was copied into it.
    #[error(
        "verification failed: the source has {} keys ({} bytes), the new store {} keys ({} \
         bytes){}; the original store is untouched, and {} was left for inspection",
        expected.keys, expected.bytes, found.keys, found.bytes,
        if expected.checksum != found.checksum { ", checksums differ" } else { "" },
        path.display()
    )]
    Mismatch {
        /// What was read from the source.
        expected: Summary,
        /// What the reopened new store holds.
        found: Summary,
        /// The temporary directory of the new store.
        path: PathBuf,
    },
    /// `--remove-old` found no `*.old` directory.
    #[error("{} holds no old store (store.old or fjall.old) to remove", .0.display())]
    NoOldStore(PathBuf),
    /// `--remove-old` found no store of another engine that replaced the old one.
    #[error(
        "{} is not the old copy of a migrated store: {}; nothing was removed",
        old.display(), current
    )]
    NotMigrated {
        /// The old copy that was kept.
        old: PathBuf,
        /// What the data directory's store is (or that there is none).
        current: String,
    },
    /// The store reported an error.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The error.
        source: StoreError,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MigrateError {
    let context = context.into();
    move |source| MigrateError::Io { context, source }
}

fn store_err(context: impl Into<String>) -> impl FnOnce(StoreError) -> MigrateError {
    let context = context.into();
    move |source| MigrateError::Store { context, source }
}

/// `{data_dir}/{engine's dir}.{suffix}`.
fn beside(data_dir: &Path, engine: Engine, suffix: &str) -> PathBuf {
    data_dir.join(format!("{}.{suffix}", engine.dir_in_data_dir()))
}

/// The path of the store of the data directory `data_dir` moved aside by a migration off
/// `engine` (`store.old` for sled, `fjall.old` for fjall).
pub fn old_path(data_dir: &Path, engine: Engine) -> PathBuf {
    beside(data_dir, engine, OLD)
}

fn exists(path: &Path) -> Result<bool, MigrateError> {
    path.try_exists()
        .map_err(io_err(format!("cannot look for {}", path.display())))
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), MigrateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("cannot sync {}", dir.display())))
}

/// The engines whose directories the data directory `data_dir` holds.
fn stores_in(data_dir: &Path) -> Result<Vec<EngineConfig>, MigrateError> {
    let mut found = Vec::new();
    for &engine in Engine::ALL {
        let config = EngineConfig::in_data_dir(data_dir, engine);
        if exists(&config.path)? {
            found.push(config);
        }
    }
    Ok(found)
}

/// How long a reopen waits for the engine to let go of its directory lock: an engine's
/// background threads may still hold it for a moment after the handle that wrote the store was
/// dropped (sled does).
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens `config` again after this process dropped its last handle to it, waiting out a lock
/// the dropped handle's threads still hold (see [`RELEASE_WAIT`]).
fn open_when_released(config: &EngineConfig) -> Result<EngineStore, StoreError> {
    let start = std::time::Instant::now();
    loop {
        match EngineStore::open(config) {
            Err(StoreError::Locked) if start.elapsed() < RELEASE_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Converts the store of the chatd data directory `data_dir` to the engine `to`, offline (see
/// the module documentation for the steps and what a crash leaves behind).
pub fn migrate_data_dir(data_dir: &Path, to: Engine) -> Result<Migrated, MigrateError> {
    migrate_data_dir_with(data_dir, to, crate::DEFAULT_MEMTABLE_BYTES)
}

/// [`migrate_data_dir`], the new store created with memtables of at most `memtable_bytes`
/// (fjall; `storage.memtable_mb`), which it keeps.
pub fn migrate_data_dir_with(
    data_dir: &Path,
    to: Engine,
    memtable_bytes: u64,
) -> Result<Migrated, MigrateError> {
    migrate_with_page(data_dir, to, PAGE, memtable_bytes)
}

/// [`migrate_data_dir_with`] with pages of `page_size` pairs.
fn migrate_with_page(
    data_dir: &Path,
    to: Engine,
    page_size: usize,
    memtable_bytes: u64,
) -> Result<Migrated, MigrateError> {
    let started = Instant::now();
    let target = EngineConfig::in_data_dir(data_dir, to);
    let stores = stores_in(data_dir)?;
    let source = match stores.iter().find(|s| s.engine != to) {
        Some(source) => source.clone(),
        None => {
            return Err(match stores.into_iter().next() {
                Some(current) => MigrateError::AlreadyOn {
                    engine: to,
                    path: current.path,
                },
                None => MigrateError::NoStore(data_dir.to_path_buf()),
            })
        }
    };
    if exists(&target.path)? {
        return Err(MigrateError::TargetExists {
            from: source.engine,
            to,
            source_path: source.path,
            target: target.path,
        });
    }
    // Any old copy, not only the one this run would create: after sled → fjall → sled a
    // stale `store.old` would sit next to the live `store`.
    for &engine in Engine::ALL {
        let old = old_path(data_dir, engine);
        if exists(&old)? {
            return Err(MigrateError::OldExists(old));
        }
    }
    let old = old_path(data_dir, source.engine);

    // Held until the new store is in place: no server can start on the source meanwhile.
    let from = match EngineStore::open(&source) {
        Ok(store) => store,
        Err(StoreError::Locked) => return Err(MigrateError::Locked(source.path)),
        Err(e) => {
            return Err(store_err(format!(
                "cannot open the {} store {}",
                source.engine,
                source.path.display()
            ))(e))
        }
    };

    let temp =
        EngineConfig::new(to, beside(data_dir, to, MIGRATING)).with_memtable_bytes(memtable_bytes);
    let removed_leftover = if exists(&temp.path)? {
        fs::remove_dir_all(&temp.path).map_err(io_err(format!(
            "cannot remove the leftover {} of an interrupted migration",
            temp.path.display()
        )))?;
        Some(temp.path.clone())
    } else {
        None
    };

    let copied = {
        let into = EngineStore::open(&temp).map_err(store_err(format!(
            "cannot create the {to} store {}",
            temp.path.display()
        )))?;
        let mut tally = Tally::new();
        from.for_each_page(page_size, |pairs| {
            let ops = pairs
                .into_iter()
                .map(|(k, v)| {
                    tally.add(&k, &v);
                    Op::Put(k, v)
                })
                .collect();
            into.store().apply(ops)
        })
        .map_err(store_err("copying failed"))?;
        into.store()
            .flush()
            .map_err(store_err("cannot flush the new store"))?;
        tally.finish()
    };

    // Verified on a fresh open: what the next server start will see.
    let written = open_when_released(&temp)
        .and_then(|reopened| reopened.summary(page_size))
        .map_err(store_err(format!(
            "cannot read back the new store {}",
            temp.path.display()
        )))?;
    if written != copied {
        return Err(MigrateError::Mismatch {
            expected: copied,
            found: written,
            path: temp.path,
        });
    }

    // New store first: from here until the old one is moved, both directories exist and the
    // server refuses to start, rather than starting on an empty store.
    fs::rename(&temp.path, &target.path).map_err(io_err(format!(
        "cannot rename {} to {}",
        temp.path.display(),
        target.path.display()
    )))?;
    sync_dir(data_dir)?;
    drop(from);
    fs::rename(&source.path, &old).map_err(io_err(format!(
        "the new store is in place at {}, but {} could not be moved to {} (move it yourself)",
        target.path.display(),
        source.path.display(),
        old.display()
    )))?;
    sync_dir(data_dir)?;

    Ok(Migrated {
        from: source.engine,
        to,
        path: target.path,
        old_path: old,
        summary: copied,
        elapsed: started.elapsed(),
        removed_leftover,
    })
}

/// Deletes the old copies (`store.old`, `fjall.old`) a migration left in the data directory
/// `data_dir`, after checking that the data directory's store is on another engine than each of
/// them; returns the removed directories.
pub fn remove_old(data_dir: &Path) -> Result<Vec<PathBuf>, MigrateError> {
    let stores = stores_in(data_dir)?;
    let mut removed = Vec::new();
    for &engine in Engine::ALL {
        let old = old_path(data_dir, engine);
        if !exists(&old)? {
            continue;
        }
        let current = match stores.as_slice() {
            [current] => current,
            [] => {
                return Err(MigrateError::NotMigrated {
                    old,
                    current: "the data directory holds no store".to_string(),
                })
            }
            several => {
                return Err(MigrateError::NotMigrated {
                    old,
                    current: format!(
                        "the data directory holds the stores of {} engines",
                        several.len()
                    ),
                })
            }
        };
        if current.engine == engine {
            return Err(MigrateError::NotMigrated {
                old,
                current: format!(
                    "the data directory's store {} is on {engine} too",
                    current.path.display()
                ),
            });
        }
        // The migrated store must open (or be held by a running server).
        match EngineStore::open(current) {
            Ok(_) | Err(StoreError::Locked) => {}
            Err(e) => {
                return Err(store_err(format!(
                    "the {} store {} does not open, so {} is kept",
                    current.engine,
                    current.path.display(),
                    old.display()
                ))(e))
            }
        }
        fs::remove_dir_all(&old).map_err(io_err(format!("cannot remove {}", old.display())))?;
        removed.push(old);
    }
    if removed.is_empty() {
        return Err(MigrateError::NoOldStore(data_dir.to_path_buf()));
    }
    sync_dir(data_dir)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::open;

    /// A few thousand pairs: binary keys and values, keys that are prefixes of others (the
    /// successor of a page's last key), keys past any bounded range (`0xff…`).
    fn sample() -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut pairs = BTreeMap::new();
        for i in 0u32..9000 {
            let key = format!("m/{:08}", i * 7919 % 100_003).into_bytes();
            let value: Vec<u8> = (0..(i % 300))
                .map(|j| (i.wrapping_mul(31) ^ j) as u8)
                .collect();
            pairs.insert(key, value);
        }
        for n in 1..=40 {
            pairs.insert(vec![b'p'; n], vec![n as u8]);
            pairs.insert([vec![b'q'], vec![0u8; n]].concat(), vec![0, 255, n as u8]);
            pairs.insert(vec![0xff; n * 10], vec![0xff; n]);
        }
        for i in 0u16..600 {
            pairs.insert(i.to_be_bytes().to_vec(), vec![]);
        }
        pairs
    }

    /// Every pair of `store`, read with bounded scans in the data directory way.
    fn all_pairs(data_dir: &Path, engine: Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let chosen = EngineConfig::for_data_dir(data_dir, Engine::default()).expect("choose");
        assert_eq!(chosen.config.engine, engine);
        let store = open_when_released(&chosen.config).expect("open");
        let mut out = BTreeMap::new();
        store
            .for_each_page(1000, |pairs| {
                out.extend(pairs);
                Ok(())
            })
            .expect("read");
        // The same pairs through the public interface, checked where a bounded scan reaches.
        let below_ff = store
            .store()
            .scan(&[], &[0xff], false, usize::MAX)
            .expect("scan");
        let expected: Vec<KvPair> = out
            .iter()
            .filter(|(k, _)| k.first() != Some(&0xff))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(below_ff, expected);
        out
    }

    /// Opens a store this test process may have just dropped (see [`RELEASE_WAIT`]).
    fn open_released(config: &EngineConfig) -> std::sync::Arc<dyn KvStore> {
        let start = std::time::Instant::now();
        loop {
            match open(config) {
                Err(StoreError::Locked) if start.elapsed() < RELEASE_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.expect("open"),
            }
        }
    }

    /// Runs a migration step, waiting out the lock of a store this process just dropped.
    fn released<T>(mut step: impl FnMut() -> Result<T, MigrateError>) -> Result<T, MigrateError> {
        let start = std::time::Instant::now();
        loop {
            match step() {
                Err(MigrateError::Locked(_)) if start.elapsed() < RELEASE_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other,
            }
        }
    }

    fn fill(data_dir: &Path, engine: Engine, pairs: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let store = open_released(&EngineConfig::in_data_dir(data_dir, engine));
        let ops: Vec<Op> = pairs
            .iter()
            .map(|(k, v)| Op::Put(k.clone(), v.clone()))
            .collect();
        for chunk in ops.chunks(1000) {
            store.apply(chunk.to_vec()).expect("apply");
        }
        store.flush().expect("flush");
    }

    #[test]
    fn migrates_both_ways_and_keeps_every_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        let pairs = sample();
        assert!(pairs.len() > 2 * PAGE);
        fill(data, Engine::Sled, &pairs);
        let bytes: u64 = pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();

        // Default pages, then odd small pages whose boundaries fall between prefix keys.
        for (to, page) in [(Engine::Fjall, PAGE), (Engine::Sled, 7), (Engine::Fjall, 1)] {
            let from = if to == Engine::Fjall {
                Engine::Sled
            } else {
                Engine::Fjall
            };
            let done =
                released(|| migrate_with_page(data, to, page, crate::DEFAULT_MEMTABLE_BYTES))
                    .expect("migrate");
            assert_eq!((done.from, done.to), (from, to));
            assert_eq!(done.summary.keys, pairs.len() as u64);
            assert_eq!(done.summary.bytes, bytes);
            assert_eq!(done.path, EngineConfig::in_data_dir(data, to).path);
            assert_eq!(done.old_path, old_path(data, from));
            assert!(done.old_path.is_dir());
            assert!(!beside(data, to, MIGRATING).exists());
            assert_eq!(all_pairs(data, to), pairs, "{from} → {to}, pages of {page}");
            assert_eq!(
                remove_old(data).expect("remove old"),
                vec![done.old_path.clone()]
            );
            assert!(!done.old_path.exists());
        }
    }

    #[test]
    fn refusals_leave_the_store_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        assert!(matches!(
            migrate_data_dir(data, Engine::Fjall),
            Err(MigrateError::NoStore(_))
        ));
        assert!(matches!(remove_old(data), Err(MigrateError::NoOldStore(_))));
        let pairs: BTreeMap<_, _> = [(b"k".to_vec(), b"v".to_vec())].into();
        fill(data, Engine::Sled, &pairs);
        assert!(matches!(
            migrate_data_dir(data, Engine::Sled),
            Err(MigrateError::AlreadyOn {
                engine: Engine::Sled,
                ..
            })
        ));
        {
            let _server = open_released(&EngineConfig::in_data_dir(data, Engine::Sled));
            let err = migrate_data_dir(data, Engine::Fjall).expect_err("locked");
            assert!(matches!(err, MigrateError::Locked(_)), "{err}");
            assert!(err.to_string().contains("stop the server"), "{err}");
        }
        fs::create_dir(data.join("store.old")).expect("mkdir");
        let err = migrate_data_dir(data, Engine::Fjall).expect_err("old exists");
        assert!(err.to_string().contains("--remove-old"), "{err}");
        // An old copy of the engine still in use is not removed.
        assert!(matches!(
            remove_old(data),
            Err(MigrateError::NotMigrated { .. })
        ));
        assert!(data.join("store.old").exists());
        fs::remove_dir(data.join("store.old")).expect("rmdir");
        fs::create_dir(data.join("fjall.old")).expect("mkdir");
        let err = migrate_data_dir(data, Engine::Fjall).expect_err("old exists");
        assert!(matches!(err, MigrateError::OldExists(_)), "{err}");
        fs::remove_dir(data.join("fjall.old")).expect("rmdir");
        fs::create_dir(data.join("fjall")).expect("mkdir");
        let err = migrate_data_dir(data, Engine::Fjall).expect_err("target exists");
        assert!(matches!(err, MigrateError::TargetExists { .. }), "{err}");
        fs::remove_dir(data.join("fjall")).expect("rmdir");
        assert_eq!(all_pairs(data, Engine::Sled), pairs);
    }

    #[test]
    fn an_interrupted_migration_is_redone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        let pairs: BTreeMap<_, _> = (0u32..100)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 3]))
            .collect();
        fill(data, Engine::Sled, &pairs);
        // What a crash in the middle of a copy leaves: a partial store in the temporary
        // directory, with a key the source does not have.
        let temp = beside(data, Engine::Fjall, MIGRATING);
        {
            let partial = open(&EngineConfig::new(Engine::Fjall, &temp)).expect("open");
            partial
                .apply(vec![Op::Put(b"stale".to_vec(), b"x".to_vec())])
                .expect("apply");
            partial.flush().expect("flush");
        }
        // The server still opens the untouched source.
        let chosen = EngineConfig::for_data_dir(data, Engine::Fjall).expect("choose");
        assert_eq!(chosen.config.engine, Engine::Sled);
        let done = released(|| migrate_data_dir(data, Engine::Fjall)).expect("migrate");
        assert_eq!(done.removed_leftover, Some(temp.clone()));
        assert!(!temp.exists());
        assert_eq!(all_pairs(data, Engine::Fjall), pairs);
    }
}
