//! A store that fails safe: after a write or flush error it refuses every further write, says
//! so ([`StoreHealth`]), and takes writes again only once the engine has been reopened.
//!
//! Why a reopen: neither engine recovers from an I/O error in place. fjall 3 poisons the
//! database when a journal write or fsync fails (every later batch and persist returns
//! `Poisoned`), and its memtables may then hold a batch whose journal bytes never reached the
//! disk; sled 0.34 keeps the first I/O error of its log as a global error that every later
//! write and flush returns until the database is opened again. A fresh open replays what is
//! on disk, which is the only state that can be trusted after such an error. What a reopen
//! loses is exactly what was never made durable, so nothing acknowledged is lost: callers
//! acknowledge only after a successful flush.
//!
//! A reopen first writes, syncs and removes a small file beside the engine's directory: while
//! the disk refuses that, the failed engine is kept (it still serves reads; the message log
//! only shows committed data anyway) and no open is attempted. While the engine is closed
//! for the reopen, reads fail too.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::{KvPair, KvStore, Op, StoreError};

/// How long a reopen waits for the old engine to let go of its directory lock (sled's
/// background threads may hold it for a moment after the last handle is dropped).
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens the engine; called at start and for every reopen.
pub type Opener = Box<dyn Fn() -> Result<Arc<dyn KvStore>, StoreError> + Send + Sync>;

/// Whether the store takes durable writes, for `/healthz` and `/metrics`.
#[derive(Debug)]
pub struct StoreHealth {
    /// False from a failed write or flush until a flush succeeds after a reopen.
    healthy: AtomicBool,
    /// Outages: times the store went from healthy to failing.
    failures: AtomicU64,
    /// Outages that ended.
    recoveries: AtomicU64,
    /// The error that started the current outage.
    detail: Mutex<Option<String>>,
}

impl Default for StoreHealth {
    fn default() -> StoreHealth {
        StoreHealth {
            healthy: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            detail: Mutex::new(None),
        }
    }
}

impl StoreHealth {
    /// True while the store takes durable writes.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// How many times the store started failing since the process started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How many of those outages ended without a restart.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// The error that started the current outage; `None` while healthy.
    pub fn detail(&self) -> Option<String> {
        if self.is_healthy() {
            return None;
        }
        self.detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a failed write or flush; true when it starts an outage (only that one is
    /// logged, so a full disk does not write one line per message).
    pub fn fail(&self, detail: String) -> bool {
        let mut current = self.detail.lock().unwrap_or_else(|p| p.into_inner());
        if self.healthy.swap(false, Ordering::AcqRel) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            *current = Some(detail);
            true
        } else {
            false
        }
    }

    /// Records a successful flush; true when it ends an outage.
    pub fn succeed(&self) -> bool {
        if self.is_healthy() {
            return false;
        }
        let mut current = self.detail.lock().unwrap_or_else(|p| p.into_inner());
        if !self.healthy.swap(true, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            *current = None;
            true
        } else {
            false
        }
    }
}

/// A [`KvStore`] around an engine that refuses writes after the first failed write or flush
/// until [`KvStore::reopen`] has opened the engine again (see the module documentation).
pub struct GuardedStore {
    opener: Opener,
    /// Where a reopen first writes a file to see whether the disk takes writes again, so that
    /// a long outage (a full disk) does not cost an engine open (a journal replay) a second.
    probe_file: Option<PathBuf>,
    /// The engine; a [`Closed`] store while a reopen has dropped it and not opened it again.
    /// Operations hold the read lock, so a reopen waits for them and then holds the only
    /// handle to the old engine.
    inner: RwLock<Arc<dyn KvStore>>,
    /// False from a failed write or flush until a reopen succeeded: writes are refused.
    writable: AtomicBool,
    health: Arc<StoreHealth>,
}

impl GuardedStore {
    /// Opens the engine with `opener` (a failure is returned as is: a store that cannot be
    /// opened at start stops the server).
    pub fn new(opener: Opener) -> Result<GuardedStore, StoreError> {
        let store = opener()?;
        Ok(GuardedStore {
            opener,
            probe_file: None,
            inner: RwLock::new(store),
            writable: AtomicBool::new(true),
            health: Arc::new(StoreHealth::default()),
        })
    }

    /// The store [`crate::open`] opens from `config`; with `faults`, every engine it opens is
    /// wrapped in a [`crate::FaultyStore`] reading that control file (a test hook).
    pub fn open(
        config: crate::EngineConfig,
        faults: Option<std::path::PathBuf>,
    ) -> Result<GuardedStore, StoreError> {
        // Beside the engine's directory, never in it: the engine owns what is inside.
        let probe_file = config
            .path
            .parent()
            .map(|dir| dir.join(".chatd-storage-probe"));
        let mut store = GuardedStore::new(Box::new(move || {
            let store = crate::open(&config)?;
            Ok(match &faults {
                Some(control) => Arc::new(crate::FaultyStore::new(store, control.clone())),
                None => store,
            })
        }))?;
        store.probe_file = probe_file;
        Ok(store)
    }

    /// Writes, syncs and removes [`GuardedStore::probe_file`]: whether the file system takes
    /// durable writes again (with more than a page, so that the slack of a page started
    /// before the disk filled up does not pass for free space).
    fn disk_takes_writes(&self) -> Result<(), StoreError> {
        let Some(path) = &self.probe_file else {
            return Ok(());
        };
        let written = (|| {
            let mut file = std::fs::File::create(path)?;
            file.write_all(&[0; 16 * 1024])?;
            file.sync_all()
        })();
        // Never left behind, whatever happened (a full disk leaves a short file).
        let _ = std::fs::remove_file(path);
        Ok(written?)
    }

    /// The health this store reports, shared with whoever shows it.
    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }

    fn engine(&self) -> RwLockReadGuard<'_, Arc<dyn KvStore>> {
        // The lock guards a handle only: a panic while it was held broke nothing.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.writable.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self
            .health
            .detail()
            .unwrap_or_else(|| "an earlier write failed".to_string());
        Err(StoreError::Failing(why))
    }

    /// A write or flush failed: no more writes until a reopen.
    fn failed(&self, what: &str, e: StoreError) -> StoreError {
        self.writable.store(false, Ordering::Release);
        let detail = format!("{what} failed: {e}");
        if self.health.fail(detail.clone()) {
            tracing::error!(
                "storage failing ({detail}): writes are refused and nothing more is \
                 acknowledged until the store is reopened and takes a flushed write again"
            );
        }
        e
    }
}

impl KvStore for GuardedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine().get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.engine().scan(start, end, reverse, limit)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let engine = self.engine();
        self.check_writable()?;
        engine.apply(ops).map_err(|e| self.failed("a write", e))
    }

    fn give_way(&self) {
        self.engine().give_way()
    }

    fn flush(&self) -> Result<(), StoreError> {
        let engine = self.engine();
        self.check_writable()?;
        engine.flush().map_err(|e| self.failed("a flush", e))?;
        if self.health.succeed() {
            tracing::info!("storage recovered: writes are flushed and acknowledged again");
        }
        Ok(())
    }

    fn reopen(&self) -> Result<(), StoreError> {
        if self.writable.load(Ordering::Acquire) {
            return Ok(());
        }
        // The engine is only dropped once the disk looks usable: until then reads go on.
        self.disk_takes_writes()?;
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if self.writable.load(Ordering::Acquire) {
            // Reopened by another caller meanwhile.
            return Ok(());
        }
        // The old engine goes first: the new open needs its directory lock.
        *inner = Arc::new(Closed);
        let start = Instant::now();
        let store = loop {
            match (self.opener)() {
                Err(StoreError::Locked) if start.elapsed() < RELEASE_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        *inner = store;
        self.writable.store(true, Ordering::Release);
        Ok(())
    }

    fn failing(&self) -> bool {
        !self.health.is_healthy()
    }
}

/// What a [`GuardedStore`] holds between dropping the failed engine and opening it again (an
/// open that fails leaves it there until the next reopen).
struct Closed;

impl Closed {
    fn refused() -> StoreError {
        StoreError::Failing("the store is closed to be reopened".into())
    }
}

impl KvStore for Closed {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(Closed::refused())
    }

    fn scan(
        &self,
        _start: &[u8],
        _end: &[u8],
        _reverse: bool,
        _limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        Err(Closed::refused())
    }

    fn apply(&self, _ops: Vec<Op>) -> Result<(), StoreError> {
        Err(Closed::refused())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Err(Closed::refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineConfig};

    fn put(key: &str) -> Vec<Op> {
        vec![Op::Put(key.as_bytes().to_vec(), b"v".to_vec())]
    }

    /// An empty engine that counts the times it was asked to give way.
    #[derive(Default)]
    struct GivingWay(std::sync::atomic::AtomicUsize);

    impl KvStore for GivingWay {
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }

        fn scan(
            &self,
            _start: &[u8],
            _end: &[u8],
            _reverse: bool,
            _limit: usize,
        ) -> Result<Vec<KvPair>, StoreError> {
            Ok(Vec::new())
        }

        fn apply(&self, _ops: Vec<Op>) -> Result<(), StoreError> {
            Ok(())
        }

        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }

        fn give_way(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The committer asks the server's store (a guarded engine, shared) to give way: the
    /// request reaches the engine, which alone knows whether its background work is behind.
    #[test]
    fn giving_way_reaches_the_engine() -> Result<(), StoreError> {
        let engine = Arc::new(GivingWay::default());
        let opened = engine.clone();
        let guarded: Arc<dyn KvStore> = Arc::new(GuardedStore::new(Box::new(move || {
            Ok(opened.clone() as Arc<dyn KvStore>)
        }))?);
        guarded.give_way();
        guarded.give_way();
        assert_eq!(engine.0.load(Ordering::Relaxed), 2);
        Ok(())
    }

    /// A failed flush refuses writes and reports the outage once; a reopen brings back
    /// exactly the flushed data, and the next flush ends the outage.
    #[test]
    fn a_failure_refuses_writes_until_a_reopen_and_a_flush() -> Result<(), StoreError> {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir()?;
            let control = dir.path().join("faults");
            let store = GuardedStore::open(
                EngineConfig::new(*engine, dir.path().join("store")),
                Some(control.clone()),
            )?;
            let health = store.health();
            store.apply(put("a"))?;
            store.flush()?;
            assert!(health.is_healthy() && !store.failing());

            std::fs::write(&control, "eio")?;
            assert!(store.apply(put("b")).is_err());
            assert!(!health.is_healthy() && store.failing());
            assert_eq!(health.failures(), 1);
            assert!(health.detail().is_some_and(|d| d.contains("write failed")));
            std::fs::write(&control, "")?;
            // Still refused: the engine was not reopened.
            assert!(matches!(store.apply(put("c")), Err(StoreError::Failing(_))));
            assert!(matches!(store.flush(), Err(StoreError::Failing(_))));
            assert_eq!(health.failures(), 1, "one outage, counted once");

            store.reopen()?;
            assert!(store.failing(), "healthy only once a flush succeeded");
            assert_eq!(store.get(b"a")?, Some(b"v".to_vec()));
            assert_eq!(store.get(b"b")?, None);
            store.apply(put("d"))?;
            store.flush()?;
            assert!(health.is_healthy() && health.detail().is_none());
            assert_eq!(health.recoveries(), 1);
            assert_eq!(store.get(b"d")?, Some(b"v".to_vec()));
        }
        Ok(())
    }

    /// A reopen whose open fails leaves the store closed, and a later one succeeds.
    #[test]
    fn a_failed_reopen_is_retried() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store");
        let broken = Arc::new(AtomicBool::new(false));
        let opener_broken = broken.clone();
        let store = GuardedStore::new(Box::new(move || {
            if opener_broken.load(Ordering::SeqCst) {
                return Err(StoreError::Other("cannot open".into()));
            }
            crate::open(&EngineConfig::new(Engine::Fjall, &path))
        }))?;
        // As after a failed write.
        store.writable.store(false, Ordering::SeqCst);
        broken.store(true, Ordering::SeqCst);
        assert!(store.reopen().is_err());
        assert!(store.get(b"a").is_err(), "closed while not reopened");
        broken.store(false, Ordering::SeqCst);
        store.reopen()?;
        store.apply(put("a"))?;
        store.flush()?;
        assert_eq!(store.get(b"a")?, Some(b"v".to_vec()));
        Ok(())
    }
}
