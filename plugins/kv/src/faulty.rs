//! A test hook, not a feature: a store wrapper that makes writes or flushes fail with a real
//! I/O error while a control file says so, so that end-to-end tests can make the running
//! server's storage fail and recover at a moment of their choosing.
//!
//! The server wraps its engine in it only when the environment variable [`FAULTS_ENV`] names
//! a control file; without it nothing is wrapped and nothing is checked. The file is read
//! again before every write and flush (test traffic only, so the cost does not matter, and a
//! test sees its change take effect at once). Its content, one word or two:
//!
//! | content | effect |
//! |---|---|
//! | missing, empty | no faults |
//! | `eio`, `enospc` | every write and flush fails with that error; nothing reaches the engine |
//! | `flush eio`, `flush enospc` | writes reach the engine, flushes fail: the engine holds batches that were never made durable |
//!
//! Anything else is treated as `eio`, so a typo fails loudly rather than silently passing.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{KvPair, KvStore, Op, StoreError};

/// The environment variable naming the control file (a test hook; see the module docs).
pub const FAULTS_ENV: &str = "CHATD_TEST_FAULTS";

/// Which operations fail, and with which error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing fails.
    None,
    /// Writes and flushes fail.
    Writes(i32),
    /// Only flushes fail.
    Flushes(i32),
}

/// A [`KvStore`] that fails writes or flushes while its control file says so (a test hook).
pub struct FaultyStore {
    inner: Arc<dyn KvStore>,
    control: PathBuf,
}

impl FaultyStore {
    /// Wraps `inner`, reading `control` before every write and flush.
    pub fn new(inner: Arc<dyn KvStore>, control: PathBuf) -> FaultyStore {
        FaultyStore { inner, control }
    }

    fn fault(&self) -> Fault {
        let text = match std::fs::read_to_string(&self.control) {
            Ok(text) => text,
            Err(_) => return Fault::None,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let errno = |word: Option<&&str>| match word.copied() {
            Some("enospc") => libc::ENOSPC,
            _ => libc::EIO,
        };
        match words.first().copied() {
            None => Fault::None,
            Some("flush") => Fault::Flushes(errno(words.get(1))),
            Some(_) => Fault::Writes(errno(words.first())),
        }
    }

    fn injected(errno: i32) -> StoreError {
        StoreError::Io(io::Error::from_raw_os_error(errno))
    }
}

impl KvStore for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.inner.scan(start, end, reverse, limit)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        match self.fault() {
            Fault::Writes(errno) => Err(FaultyStore::injected(errno)),
            Fault::None | Fault::Flushes(_) => self.inner.apply(ops),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        match self.fault() {
            Fault::Writes(errno) | Fault::Flushes(errno) => Err(FaultyStore::injected(errno)),
            Fault::None => self.inner.flush(),
        }
    }

    fn give_way(&self) {
        self.inner.give_way()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open, Engine, EngineConfig};

    #[test]
    fn the_control_file_switches_faults() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let control = dir.path().join("faults");
        let engine = open(&EngineConfig::new(Engine::Fjall, dir.path().join("store")))?;
        let store = FaultyStore::new(engine, control.clone());
        let put = || vec![Op::Put(b"k".to_vec(), b"v".to_vec())];
        store.apply(put())?;
        store.flush()?;

        std::fs::write(&control, "enospc\n")?;
        match store.apply(put()) {
            Err(StoreError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC)),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(store.flush().is_err());

        std::fs::write(&control, "flush eio")?;
        store.apply(vec![Op::Put(b"k2".to_vec(), b"v".to_vec())])?;
        assert_eq!(
            store.get(b"k2")?,
            Some(b"v".to_vec()),
            "applied, not durable"
        );
        match store.flush() {
            Err(StoreError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            other => panic!("expected EIO, got {other:?}"),
        }

        std::fs::write(&control, "")?;
        store.flush()?;
        Ok(())
    }
}
