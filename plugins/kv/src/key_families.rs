//! Which keyspace of a fjall store holds a key: the key families that get a keyspace of their
//! own, and how a key or a scanned range is routed to them.
//!
//! Why: an LSM tree's leveled compaction rewrites a level's tables wherever a newer table
//! overlaps their key range. With every record in one keyspace, each table written from a
//! memtable spans nearly the whole key space (cids, history, messages, queues, summaries), so
//! every compaction into level 1 rewrote most of it. Messages (`m/{id}`) are keyed by
//! time-ordered ids and never change: in a keyspace of their own each new table lies above all
//! older ones, and compaction moves it down without rewriting it.

/// A family of keys with a keyspace of its own: every key that starts with `prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Family {
    /// The key prefix of the family (a record kind of `chatd_embedded::keys`).
    pub(crate) prefix: &'static [u8],
    /// The name of its fjall keyspace.
    pub(crate) keyspace: &'static str,
}

/// The families kept apart in stores created with them (see `FjallStore::open`), in key order.
pub(crate) const FAMILIES: [Family; 4] = [
    Family {
        prefix: b"h/",
        keyspace: "history",
    },
    Family {
        prefix: b"k/",
        keyspace: "cids",
    },
    Family {
        prefix: b"m/",
        keyspace: "messages",
    },
    Family {
        prefix: b"q/",
        keyspace: "queues",
    },
];

/// Where a key or a range lives: in one family's keyspace (its index in [`FAMILIES`]), in the
/// keyspace of everything else, or across several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only in the family with this index.
    Family(usize),
    /// Only in the keyspace of every other record.
    Rest,
    /// Spread over several keyspaces: read from all of them and merged.
    Several,
}

/// The family `key` belongs to, if any.
pub(crate) fn family_of(key: &[u8]) -> Option<usize> {
    FAMILIES.iter().position(|f| key.starts_with(f.prefix))
}

/// The first key after every key that starts with `prefix` (`prefix` is never all `0xff`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            break;
        }
    }
    end
}

/// Where the keys from `start` (inclusive) to `end` (exclusive, `None` for no end) live.
pub(crate) fn route(start: &[u8], end: Option<&[u8]>) -> Route {
    let mut touched = None;
    for (index, family) in FAMILIES.iter().enumerate() {
        let family_end = prefix_end(family.prefix);
        let overlaps = start < family_end.as_slice() && end.is_none_or(|end| end > family.prefix);
        if !overlaps {
            continue;
        }
        let inside = start >= family.prefix && end.is_some_and(|end| end <= family_end.as_slice());
        if inside {
            return Route::Family(index);
        }
        touched = Some(index);
    }
    match touched {
        None => Route::Rest,
        Some(_) => Route::Several,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_their_family_or_to_the_rest() {
        assert_eq!(family_of(b"h/bob:eve/0001"), Some(0));
        assert_eq!(family_of(b"k/bob/c-1"), Some(1));
        assert_eq!(family_of(b"m/0001"), Some(2));
        assert_eq!(family_of(b"m/"), Some(2));
        assert_eq!(family_of(b"q/bob/0001"), Some(3));
        assert_eq!(family_of(b"m"), None);
        assert_eq!(family_of(b"mx"), None);
        assert_eq!(family_of(b"u/bob"), None);
        assert_eq!(family_of(b""), None);
    }

    #[test]
    fn ranges_inside_a_family_read_only_its_keyspace() {
        assert_eq!(route(b"m/", Some(b"m0")), Route::Family(2));
        assert_eq!(route(b"m/0001", Some(b"m/0009")), Route::Family(2));
        assert_eq!(route(b"q/bob/", Some(b"q/bob0")), Route::Family(3));
        assert_eq!(route(b"h/bob:eve/", Some(b"h/bob:eve0")), Route::Family(0));
    }

    #[test]
    fn ranges_outside_every_family_read_only_the_rest() {
        assert_eq!(route(b"u/", Some(b"u0")), Route::Rest);
        assert_eq!(route(b"v/bob/", Some(b"v/bob0")), Route::Rest);
        // Ends exactly where a family starts, or starts where one ends: no overlap.
        assert_eq!(route(b"a", Some(b"h/")), Route::Rest);
        assert_eq!(route(b"m0", Some(b"q/")), Route::Rest);
        assert_eq!(route(b"q0", None), Route::Rest);
    }

    #[test]
    fn ranges_across_a_family_boundary_read_all() {
        assert_eq!(route(b"", None), Route::Several);
        assert_eq!(route(b"a", Some(b"z")), Route::Several);
        assert_eq!(route(b"m/5", Some(b"q")), Route::Several);
        assert_eq!(route(b"l", Some(b"m/5")), Route::Several);
        assert_eq!(route(b"m/5", None), Route::Several);
    }
}
