//! Atomic batches: order inside a batch, and all-or-nothing visibility.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use super::{keys, owned, put, scratch, Opener};
use crate::{KvStore, Op, StoreError};

/// Ops of one batch apply in order: the last op on a key wins, whether it is a put or a delete.
pub fn batch_applies_in_order(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    store.apply(vec![put(b"gone", b"old"), put(b"kept", b"old")])?;
    store.apply(vec![
        // put, put: the second value stays.
        put(b"twice", b"1"),
        put(b"twice", b"2"),
        // put, delete: nothing stays.
        put(b"put-then-delete", b"x"),
        Op::Delete(b"put-then-delete".to_vec()),
        // delete, put: the put stays.
        Op::Delete(b"kept".to_vec()),
        put(b"kept", b"new"),
        // put, delete, put, delete of a key that existed before: gone.
        put(b"gone", b"a"),
        Op::Delete(b"gone".to_vec()),
        put(b"gone", b"b"),
        Op::Delete(b"gone".to_vec()),
    ])?;
    assert_eq!(store.get(b"twice")?.as_deref(), Some(&b"2"[..]));
    assert_eq!(store.get(b"put-then-delete")?, None);
    assert_eq!(store.get(b"kept")?.as_deref(), Some(&b"new"[..]));
    assert_eq!(store.get(b"gone")?, None);
    assert_eq!(
        keys(&store.scan(b"", b"\xff", false, 100)?),
        owned(&[b"kept", b"twice"]),
        "deleted keys must not show up in scans either"
    );
    store.apply(Vec::new())?;
    assert_eq!(
        store.scan(b"", b"\xff", false, 100)?.len(),
        2,
        "an empty batch changes nothing"
    );
    Ok(())
}

/// How many two-key batches the writer applies while readers look.
const BATCHES: u32 = 2_000;

/// The two keys of batch `i`: adjacent, and above every key of earlier batches.
fn pair(i: u32) -> [Vec<u8>; 2] {
    [
        format!("p/{i:08}/a").into_bytes(),
        format!("p/{i:08}/b").into_bytes(),
    ]
}

/// Checks one scan of `p/`: every batch it shows, it shows whole.
fn assert_whole(pairs: &[(Vec<u8>, Vec<u8>)]) {
    assert!(
        pairs.len().is_multiple_of(2),
        "a scan saw half a batch: {} keys",
        pairs.len()
    );
    for (n, two) in pairs.chunks(2).enumerate() {
        let expected = pair(n as u32);
        assert_eq!(
            [two[0].0.clone(), two[1].0.clone()],
            expected,
            "a scan saw half a batch, or batches out of order"
        );
    }
}

/// A reader scanning while a writer applies two-key batches sees each batch whole or not at
/// all, in both scan directions and through point reads of the second key first.
///
/// The writer only adds keys above all earlier ones, so an engine whose scans are not
/// snapshots still passes, while one that makes the keys of a batch visible one by one fails
/// (with a probability that grows with the number of batches).
pub fn readers_never_see_half_a_batch(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    let done = Arc::new(AtomicBool::new(false));
    // The writer starts once every reader runs, so that they overlap.
    let started = Arc::new(Barrier::new(4));
    let reader = |reverse: bool| {
        let store: Arc<dyn KvStore> = store.clone();
        let done = done.clone();
        let started = started.clone();
        std::thread::spawn(move || -> Result<(), StoreError> {
            started.wait();
            // At least one scan, and one more after the writer finished.
            loop {
                let last = done.load(Ordering::SeqCst);
                let mut seen = store.scan(b"p/", b"p0", reverse, usize::MAX)?;
                if reverse {
                    seen.reverse();
                }
                assert_whole(&seen);
                if last {
                    return Ok(());
                }
            }
        })
    };
    let forward = reader(false);
    let backward = reader(true);
    let pointwise = {
        let store = store.clone();
        let done = done.clone();
        let started = started.clone();
        std::thread::spawn(move || -> Result<(), StoreError> {
            started.wait();
            let mut i = 0;
            while !done.load(Ordering::SeqCst) && i < BATCHES {
                let [a, b] = pair(i);
                // The second key first: once it is there, the first must be too.
                if store.get(&b)?.is_some() {
                    assert!(store.get(&a)?.is_some(), "batch {i}: b visible without a");
                    i += 1;
                }
            }
            Ok(())
        })
    };
    started.wait();
    let written = write_pairs(&*store);
    done.store(true, Ordering::SeqCst);
    let joined = |handle: std::thread::JoinHandle<Result<(), StoreError>>| {
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    };
    joined(forward)?;
    joined(backward)?;
    joined(pointwise)?;
    written?;
    let all = store.scan(b"p/", b"p0", false, usize::MAX)?;
    assert_eq!(all.len(), 2 * BATCHES as usize);
    assert_whole(&all);
    Ok(())
}

/// The writer of [`readers_never_see_half_a_batch`]: batch `i` puts both keys of [`pair`]`(i)`.
fn write_pairs(store: &dyn KvStore) -> Result<(), StoreError> {
    for i in 0..BATCHES {
        let [a, b] = pair(i);
        store.apply(vec![Op::Put(a, b"1".to_vec()), Op::Put(b, b"2".to_vec())])?;
    }
    Ok(())
}
