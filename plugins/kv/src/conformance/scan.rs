//! Ordered range scans: bounds, direction, limits, byte order and prefixes.

use super::{keys, owned, put, scratch, Opener};
use crate::{KvStore, StoreError};

/// Stores `keys`, each with its own bytes as the value.
fn fill(store: &dyn KvStore, keys: &[&[u8]]) -> Result<(), StoreError> {
    store.apply(keys.iter().map(|k| put(k, k)).collect())
}

/// Ascending scans give keys in increasing byte order, descending ones in decreasing order,
/// each with its value.
pub fn scan_ascending_and_descending(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    // Written out of order, in two batches.
    fill(&*store, &[b"q/3", b"q/1"])?;
    fill(&*store, &[b"q/2", b"q/4"])?;
    let up = store.scan(b"q/", b"q0", false, 100)?;
    assert_eq!(keys(&up), owned(&[b"q/1", b"q/2", b"q/3", b"q/4"]));
    assert!(
        up.iter().all(|(k, v)| k == v),
        "every key with its own value"
    );
    let down = store.scan(b"q/", b"q0", true, 100)?;
    assert_eq!(keys(&down), owned(&[b"q/4", b"q/3", b"q/2", b"q/1"]));
    Ok(())
}

/// `start` is included and `end` excluded, in both directions, whether or not the bounds are
/// stored keys.
pub fn scan_bounds_are_half_open(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    fill(&*store, &[b"a", b"b", b"c", b"d", b"e"])?;
    assert_eq!(
        keys(&store.scan(b"b", b"d", false, 100)?),
        owned(&[b"b", b"c"])
    );
    assert_eq!(
        keys(&store.scan(b"b", b"d", true, 100)?),
        owned(&[b"c", b"b"]),
        "a descending scan starts just below `end`, not at it"
    );
    // Bounds between stored keys.
    assert_eq!(
        keys(&store.scan(b"a0", b"c0", false, 100)?),
        owned(&[b"b", b"c"])
    );
    assert_eq!(
        keys(&store.scan(b"a0", b"c0", true, 100)?),
        owned(&[b"c", b"b"])
    );
    // A one-key range, and the successor of a key as an exclusive end.
    assert_eq!(
        keys(&store.scan(b"c", b"c\x00", false, 100)?),
        owned(&[b"c"])
    );
    assert_eq!(
        keys(&store.scan(b"c", b"c\x00", true, 100)?),
        owned(&[b"c"])
    );
    // From the very first possible key, and up to past the last one.
    assert_eq!(keys(&store.scan(b"", b"b", false, 100)?), owned(&[b"a"]));
    assert_eq!(
        keys(&store.scan(b"d", b"\xff", true, 100)?),
        owned(&[b"e", b"d"])
    );
    Ok(())
}

/// At most `limit` pairs, taken from the start of the scan's direction.
pub fn scan_limit_is_honoured(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    fill(&*store, &[b"k/1", b"k/2", b"k/3", b"k/4", b"k/5"])?;
    assert_eq!(
        keys(&store.scan(b"k/", b"k0", false, 2)?),
        owned(&[b"k/1", b"k/2"])
    );
    assert_eq!(
        keys(&store.scan(b"k/", b"k0", true, 2)?),
        owned(&[b"k/5", b"k/4"])
    );
    assert_eq!(keys(&store.scan(b"k/", b"k0", false, 1)?), owned(&[b"k/1"]));
    assert_eq!(store.scan(b"k/", b"k0", false, 5)?.len(), 5);
    assert_eq!(store.scan(b"k/", b"k0", false, usize::MAX)?.len(), 5);
    assert!(
        store.scan(b"k/", b"k0", false, 0)?.is_empty(),
        "a zero limit gives nothing"
    );
    assert!(store.scan(b"k/", b"k0", true, 0)?.is_empty());
    Ok(())
}

/// `start == end` and `start > end` give nothing (and no error, and no panic).
pub fn empty_and_inverted_ranges_give_nothing(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    fill(&*store, &[b"a", b"b", b"c"])?;
    for reverse in [false, true] {
        assert!(
            store.scan(b"b", b"b", reverse, 10)?.is_empty(),
            "empty range"
        );
        assert!(
            store.scan(b"c", b"a", reverse, 10)?.is_empty(),
            "inverted range"
        );
        assert!(store.scan(b"\xff", b"", reverse, 10)?.is_empty());
        assert!(
            store.scan(b"x", b"z", reverse, 10)?.is_empty(),
            "a range without keys"
        );
        assert!(store.scan(b"", b"", reverse, 10)?.is_empty());
    }
    let empty_dir = scratch()?;
    let empty = open(empty_dir.path())?;
    assert!(
        empty.scan(b"", b"\xff\xff", false, 10)?.is_empty(),
        "empty store"
    );
    assert!(empty.scan(b"", b"\xff\xff", true, 10)?.is_empty());
    Ok(())
}

/// Keys are compared as unsigned bytes, shorter first on a common prefix, 0x00 and 0xFF
/// included, in keys and in bounds.
pub fn binary_keys_sort_as_unsigned_bytes(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    let sorted: [&[u8]; 10] = [
        b"\x00",
        b"\x00\x00",
        b"\x00\xff",
        b"\x01",
        b"\x7f",
        b"\x80",
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    ];
    // Written in an order unlike the sorted one.
    let mut shuffled = sorted;
    shuffled.reverse();
    shuffled.swap(0, 5);
    fill(&*store, &shuffled)?;
    for key in sorted {
        assert_eq!(store.get(key)?.as_deref(), Some(key), "key {key:?}");
    }
    assert_eq!(
        keys(&store.scan(b"", b"\xff\xff\xff", false, 100)?),
        owned(&sorted)
    );
    let mut descending = owned(&sorted);
    descending.reverse();
    assert_eq!(
        keys(&store.scan(b"", b"\xff\xff\xff", true, 100)?),
        descending
    );
    // Bounds made of 0x00 and 0xFF bytes.
    assert_eq!(
        keys(&store.scan(b"\x00", b"\x01", false, 100)?),
        owned(&[b"\x00", b"\x00\x00", b"\x00\xff"])
    );
    assert_eq!(
        keys(&store.scan(b"\x00\x00", b"\x00\xff", false, 100)?),
        owned(&[b"\x00\x00"])
    );
    assert_eq!(
        keys(&store.scan(b"\xff", b"\xff\xff", false, 100)?),
        owned(&[b"\xff", b"\xff\x00"])
    );
    assert_eq!(
        keys(&store.scan(b"\x7f", b"\xfe\xff", true, 100)?),
        owned(&[b"\x80", b"\x7f"]),
        "0x80 sorts above 0x7F (bytes are unsigned)"
    );
    Ok(())
}

/// The exclusive end of a scan over every key that starts with `prefix` (whose last byte is
/// below 0xFF), the way chatd's key layout builds it: the last byte plus one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// A scan from a prefix to its end sees exactly the keys with that prefix, including ones
/// continuing with 0x00 or 0xFF bytes, and none of its neighbours'.
pub fn prefix_scans_stay_inside_the_prefix(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    let inside: [&[u8]; 5] = [
        b"q/bob/",
        b"q/bob/\x00",
        b"q/bob/1",
        b"q/bob/2",
        b"q/bob/\xff\xff",
    ];
    let outside: [&[u8]; 6] = [
        b"q/bob",
        b"q/bob-1/1",
        b"q/bob.",
        b"q/bob0",
        b"q/bob1/1",
        b"q/bo",
    ];
    fill(&*store, &inside)?;
    fill(&*store, &outside)?;
    let end = prefix_end(b"q/bob/");
    assert_eq!(
        keys(&store.scan(b"q/bob/", &end, false, 100)?),
        owned(&inside)
    );
    let mut descending = owned(&inside);
    descending.reverse();
    assert_eq!(keys(&store.scan(b"q/bob/", &end, true, 100)?), descending);
    assert_eq!(
        keys(&store.scan(b"q/bob/", &end, true, 1)?),
        owned(&[b"q/bob/\xff\xff"]),
        "the newest entry of a prefix is one descending scan of limit 1"
    );
    Ok(())
}

/// Keys of every record kind chatd writes (some engines keep kinds apart internally) come back
/// from one scan in one byte order, both ways, limited, and over ranges that cross kinds.
pub fn every_record_kind_scans_in_one_order(open: Opener) -> Result<(), StoreError> {
    let dir = scratch()?;
    let store = open(dir.path())?;
    let mut all: Vec<&[u8]> = vec![
        b"a/pic/bob",
        b"h/bob:eve/2",
        b"h/bob:eve/1",
        b"j/bob/x/1",
        b"k/bob/c-1",
        b"l",
        b"l\xff",
        b"m",
        b"m/",
        b"m/0001",
        b"m/0002",
        b"m0",
        b"q/bob/0001",
        b"s/0001/bob",
        b"u/bob",
        b"v/bob/eve",
        b"x/last_id",
        b"\xff",
    ];
    // Written in two batches, out of order.
    let (first, second) = all.split_at(9);
    store.apply(second.iter().rev().map(|k| put(k, k)).collect())?;
    store.apply(first.iter().rev().map(|k| put(k, k)).collect())?;
    all.sort();
    let everything = store.scan(b"", b"\xff\xff", false, usize::MAX)?;
    assert_eq!(
        keys(&everything),
        owned(&all),
        "one scan of every kind, in byte order"
    );
    assert!(
        everything.iter().all(|(k, v)| k == v),
        "each key with its value"
    );
    let mut descending = keys(&store.scan(b"", b"\xff\xff", true, usize::MAX)?);
    descending.reverse();
    assert_eq!(descending, owned(&all), "descending");
    for limit in [1, 4, 9] {
        let first = keys(&store.scan(b"", b"\xff\xff", false, limit)?);
        assert_eq!(first, owned(&all[..limit]), "the first {limit}");
        let last = keys(&store.scan(b"", b"\xff\xff", true, limit)?);
        let want: Vec<&[u8]> = all.iter().rev().take(limit).copied().collect();
        assert_eq!(last, owned(&want), "the last {limit}");
    }
    // Ranges that start or end inside one kind and reach into others.
    for (start, end) in [
        (&b"k/bob/c-1"[..], &b"m/0002"[..]),
        (b"m/0001", b"s"),
        (b"l", b"m/0002"),
        (b"m", b"m0\x00"),
        (b"h/", b"h0"),
        (b"m/", b"m0"),
    ] {
        let want: Vec<&[u8]> = all
            .iter()
            .filter(|k| **k >= start && **k < end)
            .copied()
            .collect();
        let got = keys(&store.scan(start, end, false, usize::MAX)?);
        assert_eq!(got, owned(&want), "{start:?}..{end:?}");
        let mut back = keys(&store.scan(start, end, true, usize::MAX)?);
        back.reverse();
        assert_eq!(back, owned(&want), "{start:?}..{end:?} descending");
    }
    Ok(())
}
