//! The sled engine behind [`KvStore`]: one database, one (default) tree, key prefixes for the
//! different kinds of records (the layout is `chatd_embedded::keys`).

use std::io;
use std::path::Path;

use crate::{first_pairs, KvPair, KvStore, Op, StoreError};

/// A [`KvStore`] on a sled database in one directory.
///
/// Only one process can open the directory at a time; a second one gets
/// [`StoreError::Locked`], which tells the CLI that a server is running.
pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (creating if needed) the sled database in `path`, with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        match sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => Ok(SledStore { db }),
            Err(e) if is_lock_error(&e) => Err(StoreError::Locked),
            Err(e) => Err(StoreError::Sled(e)),
        }
    }
}

/// Sled reports a held lock as a plain I/O error whose text names the lock (and, depending on
/// the platform, a `WouldBlock` kind); both forms are recognised.
impl SledStore {
    /// Up to `limit` pairs from `start` (inclusive) to the end of the key space, ascending:
    /// the pages of a whole-store copy, which no bounded [`KvStore::scan`] range can cover.
    pub(crate) fn pairs_from(&self, start: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        first_pairs(self.db.range(start..), false, limit, |item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

impl KvStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        // sled panics on an inverted range; an empty one needs no lookup either.
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let range = self.db.range(start..end);
        first_pairs(range, reverse, limit, |item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) | Op::DeleteOnce(k) => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{open, Engine, EngineConfig};

    /// The sled engine on `dir`, opened the way everything else opens it.
    fn open_sled(dir: &Path) -> Result<Arc<dyn KvStore>, StoreError> {
        open(&EngineConfig::new(Engine::Sled, dir))
    }

    /// The engine conformance suite, on sled.
    mod conformance {
        crate::conformance_tests!(super::open_sled);
    }

    fn keys(pairs: &[KvPair]) -> Vec<&[u8]> {
        pairs.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn put_get_scan_delete() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let s = open_sled(dir.path())?;
        s.apply(vec![
            Op::Put(b"a/1".to_vec(), b"x".to_vec()),
            Op::Put(b"a/2".to_vec(), b"y".to_vec()),
            Op::Put(b"a/3".to_vec(), b"z".to_vec()),
            Op::Put(b"b/1".to_vec(), b"w".to_vec()),
        ])?;
        assert_eq!(s.get(b"a/2")?, Some(b"y".to_vec()));
        assert_eq!(s.get(b"a/9")?, None);
        let fwd = s.scan(b"a/", b"a0", false, 10)?;
        assert_eq!(keys(&fwd), vec![&b"a/1"[..], b"a/2", b"a/3"]);
        let rev = s.scan(b"a/", b"a0", true, 2)?;
        assert_eq!(keys(&rev), vec![&b"a/3"[..], b"a/2"]);
        assert!(s.scan(b"b", b"a", false, 10)?.is_empty());
        assert!(s.scan(b"a/", b"a0", false, 0)?.is_empty());
        s.apply(vec![
            Op::Delete(b"a/2".to_vec()),
            Op::Delete(b"nope".to_vec()),
        ])?;
        assert_eq!(s.get(b"a/2")?, None);
        s.flush()?;
        Ok(())
    }

    #[test]
    fn second_open_is_locked() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let _first = open_sled(dir.path())?;
        match open_sled(dir.path()) {
            Err(StoreError::Locked) => Ok(()),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[test]
    fn reopen_after_drop_keeps_data() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        {
            let s = open_sled(dir.path())?;
            s.apply(vec![Op::Put(b"k".to_vec(), b"v".to_vec())])?;
            s.flush()?;
        }
        let s = open_sled(dir.path())?;
        assert_eq!(s.get(b"k")?, Some(b"v".to_vec()));
        Ok(())
    }
}
