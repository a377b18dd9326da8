//! The storage interface every other part is written against, so that the engine can be swapped
//! (or wrapped in tests) without touching the messaging logic.
//!
//! Stores are opened in one place, [`open`], from an [`EngineConfig`]. Adding an engine means:
//! a module implementing [`KvStore`] (reporting a held directory as [`StoreError::Locked`]), an
//! [`Engine`] variant with its name and its directory inside the data directory, a branch in
//! [`open`] (and in [`migrate`]'s engine enum), and a test module that runs
//! `conformance_tests!` on it; the engine is ready when that suite passes.

use std::io;
use std::sync::Arc;

mod background_priority;
mod engine;
mod faulty;
mod fjall_store;
mod guarded;
mod key_families;
mod memtable_reaper;
pub mod migrate;
mod sled_store;
mod table_pacer;

// Built for this crate's tests, and for other crates with the `conformance` feature.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use background_priority::DEFAULT_BACKGROUND_NICE;
pub use engine::{
    open, DataDirError, DataDirStore, Engine, EngineConfig, UnknownEngine, DEFAULT_CACHE_BYTES,
    DEFAULT_MEMTABLE_BYTES, DEFAULT_PACING_CHUNK_BYTES,
};
pub use faulty::{FaultyStore, FAULTS_ENV};
pub use fjall_store::FjallStore;
pub use guarded::{GuardedStore, StoreHealth};
pub use sled_store::SledStore;
pub use table_pacer::MAX_HELD_FILES;

/// One change inside an atomic batch given to [`KvStore::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`, replacing any earlier value.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`; removing a missing key is not an error.
    Delete(Vec<u8>),
    /// Removes `key`, which was put at most once since it was created or last removed (a queue
    /// entry, say): an engine may then forget the put and the removal together. Removing a
    /// missing key is not an error; a key put twice must be removed with [`Op::Delete`].
    DeleteOnce(Vec<u8>),
}

/// One key and its value, as returned by [`KvStore::scan`].
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (normally a running server) holds the store's lock; the CLI uses this
    /// to switch to talking to that server instead.
    #[error("the store is locked by another process")]
    Locked,
    /// A file-system error outside the engine, e.g. creating the data directory.
    #[error("store I/O error: {0}")]
    Io(#[from] io::Error),
    /// The sled engine reported an error.
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// The fjall engine reported an error (other than its lock being held, which is
    /// [`StoreError::Locked`]).
    #[error("store error: {0}")]
    Fjall(fjall::Error),
    /// Any other failure, e.g. from a wrapping or test store.
    #[error("store error: {0}")]
    Other(String),
    /// Writes are refused because an earlier write or flush failed and the store has not been
    /// reopened since ([`GuardedStore`]): after an I/O error the engine's state is uncertain.
    #[error("the store is failing: {0}")]
    Failing(String),
}

/// An ordered key-value store with atomic batches and an explicit durability point.
///
/// Messaging relies on exactly these four operations: point reads, ordered range scans (queues,
/// history, conversation lists are key ranges), all-or-nothing batches (a message and its
/// indexes appear together or not at all) and a flush that makes acknowledgements honest.
pub trait KvStore: Send + Sync + 'static {
    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Keys in `[start, end)`, ascending or (`reverse` = true) descending, at most `limit`
    /// pairs. An empty or inverted range gives an empty result.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError>;

    /// Applies all `ops` atomically: after a crash either all of them are there or none.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// Returns once everything applied before the call is on disk.
    fn flush(&self) -> Result<(), StoreError>;

    /// After a failed write or flush: lets go of the engine and opens it again, so that it
    /// holds exactly what is on disk and takes writes again (both engines refuse every write
    /// after an I/O error until then). A store that cannot reopen itself has nothing to do.
    fn reopen(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// True from a failed write or flush until a flush succeeds again: the store cannot be
    /// relied on to keep what it is given. Stores that do not watch themselves say false.
    fn failing(&self) -> bool {
        false
    }

    /// Waits a little while the engine's background work (flushes, compactions) is behind the
    /// writes, so that it catches up before the engine halts every write; called by the one
    /// writer that may be slowed (chatd's committer, between batches). Engines with no such
    /// work return at once.
    fn give_way(&self) {}
}

/// Up to `limit` items of `range` — from its end when `reverse` — each read into a pair by
/// `pair`: the tail of every engine's [`KvStore::scan`]. Stops reading at `limit`.
pub(crate) fn first_pairs<T>(
    range: impl DoubleEndedIterator<Item = T>,
    reverse: bool,
    limit: usize,
    pair: impl FnMut(T) -> Result<KvPair, StoreError>,
) -> Result<Vec<KvPair>, StoreError> {
    if reverse {
        range.rev().take(limit).map(pair).collect()
    } else {
        range.take(limit).map(pair).collect()
    }
}

/// A shared store is a store: what [`open`] returns can be passed wherever a `&dyn KvStore` or a
/// `KvStore` value is expected, and wrappers can hold it.
impl<S: KvStore + ?Sized> KvStore for Arc<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        (**self).scan(start, end, reverse, limit)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        (**self).apply(ops)
    }

    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }

    fn reopen(&self) -> Result<(), StoreError> {
        (**self).reopen()
    }

    fn failing(&self) -> bool {
        (**self).failing()
    }

    fn give_way(&self) {
        (**self).give_way()
    }
}
