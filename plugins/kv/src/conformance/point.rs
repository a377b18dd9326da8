//! Point reads, overwrites and deletes.

use super::{put, reopen, scratch, Opener};
use crate::{Op, StoreError};

/// A missing key reads as `None`, a stored key as its value.
pub fn get_missing_and_present(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    assert_eq!(
        store.get(b"k/1")?,
        None,
        "a never-written key must be missing"
    );
    store.apply(vec![put(b"k/1", b"one"), put(b"k/2", b"two")])?;
    assert_eq!(store.get(b"k/1")?.as_deref(), Some(&b"one"[..]));
    assert_eq!(store.get(b"k/2")?.as_deref(), Some(&b"two"[..]));
    assert_eq!(store.get(b"k/")?, None, "a prefix of a key is another key");
    assert_eq!(
        store.get(b"k/10")?,
        None,
        "an extension of a key is another key"
    );
    Ok(())
}

/// A put replaces the value of an existing key, in a later batch and in the same one.
pub fn put_overwrites(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    store.apply(vec![put(b"k", b"first")])?;
    store.apply(vec![put(b"k", b"second, and longer")])?;
    assert_eq!(
        store.get(b"k")?.as_deref(),
        Some(&b"second, and longer"[..])
    );
    store.apply(vec![put(b"k", b"3")])?;
    assert_eq!(
        store.get(b"k")?.as_deref(),
        Some(&b"3"[..]),
        "a shorter value must not keep the tail of the longer one"
    );
    let all = store.scan(b"", b"\xff", false, 10)?;
    assert_eq!(
        all,
        vec![(b"k".to_vec(), b"3".to_vec())],
        "one key, one value"
    );
    Ok(())
}

/// An empty value is stored as a value (markers rely on it), and large values come back whole.
pub fn empty_and_large_values_round_trip(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    let large: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    store.apply(vec![put(b"empty", b""), put(b"large", &large)])?;
    assert_eq!(
        store.get(b"empty")?,
        Some(Vec::new()),
        "an empty value is not a missing key"
    );
    assert_eq!(store.get(b"large")?, Some(large.clone()));
    let scanned = store.scan(b"empty", b"emptz", false, 10)?;
    assert_eq!(scanned, vec![(b"empty".to_vec(), Vec::new())]);
    Ok(())
}

/// Deleting a missing key succeeds and changes nothing; deleting a present one removes it.
pub fn delete_of_a_missing_key_is_fine(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    store.apply(vec![Op::Delete(b"never".to_vec())])?;
    store.apply(vec![put(b"a", b"1"), put(b"b", b"2")])?;
    store.apply(vec![
        Op::Delete(b"a".to_vec()),
        Op::Delete(b"nope".to_vec()),
    ])?;
    assert_eq!(store.get(b"a")?, None);
    assert_eq!(store.get(b"b")?.as_deref(), Some(&b"2"[..]));
    assert_eq!(store.get(b"nope")?, None);
    store.apply(vec![Op::Delete(b"a".to_vec())])?;
    assert_eq!(store.scan(b"", b"\xff", false, 10)?.len(), 1);
    Ok(())
}

/// [`Op::DeleteOnce`] removes a key put once, before and after a reopen; removing a missing
/// key with it is fine, and a key put again after it is there until removed again.
pub fn delete_once_removes_what_was_put_once(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let path = dir.path().join("store");
    let once = |key: &[u8]| Op::DeleteOnce(key.to_vec());
    {
        let store = open(&path)?;
        store.apply(vec![once(b"q/never")])?;
        store.apply(vec![
            put(b"q/bob/1", b"one"),
            put(b"q/bob/2", b"two"),
            put(b"q/bob/3", b"three"),
        ])?;
        // Removed in a later batch, in the same batch as its put, and put again after removal.
        store.apply(vec![
            once(b"q/bob/1"),
            put(b"q/bob/4", b"four"),
            once(b"q/bob/4"),
        ])?;
        store.apply(vec![once(b"q/bob/3")])?;
        store.apply(vec![put(b"q/bob/3", b"again")])?;
        assert_eq!(store.get(b"q/bob/1")?, None, "removed once");
        assert_eq!(store.get(b"q/bob/4")?, None, "put and removed in one batch");
        assert_eq!(store.get(b"q/never")?, None);
        store.flush()?;
    }
    let store = reopen(open, &path)?;
    assert_eq!(
        store.scan(b"q/", b"q0", false, 10)?,
        vec![
            (b"q/bob/2".to_vec(), b"two".to_vec()),
            (b"q/bob/3".to_vec(), b"again".to_vec()),
        ],
        "what stays after a reopen"
    );
    store.apply(vec![once(b"q/bob/3"), once(b"q/bob/2")])?;
    assert_eq!(store.scan(b"q/", b"q0", false, 10)?, Vec::new());
    Ok(())
}
