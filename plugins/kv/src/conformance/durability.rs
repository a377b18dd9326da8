//! What survives closing the store, and the lock that keeps a second process out.

use super::{put, reopen, scratch, Opener};
use crate::{Op, StoreError};

/// After `flush`, dropping the store and opening its directory again gives back every put,
/// overwrite and delete.
pub fn flush_drop_reopen_keeps_everything(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let path = dir.path().join("store");
    {
        let store = open(&path)?;
        store.apply(vec![put(b"a", b"1"), put(b"b", b"2"), put(b"c", b"3")])?;
        store.apply(vec![put(b"b", b"two"), Op::Delete(b"c".to_vec())])?;
        store.apply(vec![put(b"empty", b"")])?;
        store.flush()?;
    }
    let store = reopen(open, &path)?;
    assert_eq!(store.get(b"a")?.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        store.get(b"b")?.as_deref(),
        Some(&b"two"[..]),
        "the overwrite"
    );
    assert_eq!(store.get(b"c")?, None, "the delete");
    assert_eq!(store.get(b"empty")?, Some(Vec::new()), "the empty value");
    assert_eq!(store.scan(b"", b"\xff", false, 100)?.len(), 3);
    // And it keeps working after the reopen.
    store.apply(vec![put(b"d", b"4")])?;
    store.flush()?;
    drop(store);
    let store = reopen(open, &path)?;
    assert_eq!(store.get(b"d")?.as_deref(), Some(&b"4"[..]));
    Ok(())
}

/// How many keys [`many_keys_scan_in_order_after_reopen`] writes.
const MANY: u32 = 10_000;

/// The key of number `n`: four scrambled bytes (0x00 and 0xFF among them), so that byte order is
/// not number order, then `n` itself, so that keys are distinct.
fn numbered(n: u32) -> Vec<u8> {
    let mut key = b"n/".to_vec();
    key.extend_from_slice(&(n.wrapping_mul(0x0101_0101) ^ 0xFF00_00FF).to_be_bytes());
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Ten thousand keys written in scrambled order and many batches come back after a reopen in
/// byte order, whole, both ways, and page by page with a limit.
pub fn many_keys_scan_in_order_after_reopen(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let path = dir.path().join("store");
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = (0..MANY)
        .map(|n| (numbered(n), format!("value {n}").into_bytes()))
        .collect();
    {
        let store = open(&path)?;
        // A fixed scramble: 7919 is prime to MANY, so every n comes exactly once.
        let scrambled: Vec<u32> = (0..MANY).map(|i| (i * 7919) % MANY).collect();
        for chunk in scrambled.chunks(250) {
            store.apply(
                chunk
                    .iter()
                    .map(|&n| Op::Put(numbered(n), format!("value {n}").into_bytes()))
                    .collect(),
            )?;
        }
        store.flush()?;
    }
    expected.sort();
    let store = reopen(open, &path)?;
    let ascending = store.scan(b"n/", b"n0", false, usize::MAX)?;
    assert_eq!(ascending.len(), MANY as usize, "every key is back");
    assert!(
        ascending == expected,
        "keys in byte order, each with its value"
    );
    let mut descending = store.scan(b"n/", b"n0", true, usize::MAX)?;
    descending.reverse();
    assert!(
        descending == expected,
        "the descending scan is the mirror image"
    );
    // Paging: each page starts just after the last key of the previous one.
    let mut paged = Vec::new();
    let mut start = b"n/".to_vec();
    loop {
        let page = store.scan(&start, b"n0", false, 999)?;
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0);
        paged.extend(page);
    }
    assert!(
        paged == expected,
        "paging with a limit loses nothing and repeats nothing"
    );
    Ok(())
}

/// While a store is open, opening its directory again fails with [`StoreError::Locked`]; once
/// it is closed, the directory opens again.
///
/// Required of every engine: the `chatd user …` commands open the store directly and take
/// `Locked` as the sign that a server runs, and then ask the server instead.
pub fn second_open_is_locked(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let path = dir.path().join("store");
    let first = open(&path)?;
    first.apply(vec![put(b"k", b"v")])?;
    match open(&path) {
        Err(StoreError::Locked) => {}
        Err(e) => panic!("a second open must fail with StoreError::Locked, not {e:?}"),
        Ok(_) => panic!("a second open of an open store succeeded"),
    }
    first.flush()?;
    drop(first);
    let again = reopen(open, &path)?;
    assert_eq!(again.get(b"k")?.as_deref(), Some(&b"v"[..]));
    Ok(())
}
