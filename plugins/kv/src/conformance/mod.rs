//! The engine conformance suite: what chatd needs from a [`KvStore`], as checks that any engine
//! must pass before the messaging layer can run on it.
//!
//! The contract, one check (or a few) per line:
//! - point reads: a missing key gives `None`, a stored one its value; a put overwrites; an empty
//!   value is a value (not a missing key); large values come back whole ([`point`]);
//! - deleting a missing key is not an error; [`Op::DeleteOnce`] removes a key put once, also
//!   in the batch that put it, and a later put of it stays ([`point`]);
//! - scans: `[start, end)` exactly (start included, end excluded), ascending or descending,
//!   at most `limit` pairs, nothing for an empty or inverted range or a zero limit, keys compared
//!   as unsigned bytes (0x00 and 0xFF included), prefix scans that stay inside the prefix,
//!   keys of every record kind in one order, also over ranges across kinds ([`scan`]);
//! - batches: applied in order (the last op on a key wins) and all-or-nothing, also as seen by a
//!   concurrent reader ([`batch`]);
//! - durability: after `flush`, dropping every handle and opening the directory again gives
//!   everything back, many keys included, in order; a second open of a directory that is
//!   already open fails with [`StoreError::Locked`] (the CLI relies on it to detect a running
//!   server) ([`durability`]);
//! - crashes: a process killed with SIGKILL after `flush` leaves every flushed batch whole on
//!   disk, and every other batch whole or absent, batches over several record kinds and with
//!   [`Op::DeleteOnce`] included ([`crash`], run by the macro only).
//!
//! An engine runs the suite with [`conformance_tests!`](crate::conformance_tests), which expands
//! to one `#[test]` per check; [`run_all`] runs the same checks (but not the crash check, which
//! needs its own test process) from any other harness.
//!
//! Checks return store errors as errors and panic (with a message naming the broken rule) when
//! the engine answers wrongly, like any test.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{KvPair, KvStore, Op, StoreError};

pub mod batch;
pub mod crash;
pub mod durability;
pub mod point;
pub mod scan;

/// How the suite opens the engine under test on a directory (which may not exist yet).
pub type Opener<'a> = &'a dyn Fn(&Path) -> Result<Arc<dyn KvStore>, StoreError>;

/// One named check of the suite.
pub struct Check {
    /// The check's function name, also the name of the test the macro generates for it.
    pub name: &'static str,
    /// Runs the check on an engine.
    pub run: fn(Opener) -> Result<(), StoreError>,
}

/// Every check that runs in-process, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "get_missing_and_present",
        run: point::get_missing_and_present,
    },
    Check {
        name: "put_overwrites",
        run: point::put_overwrites,
    },
    Check {
        name: "empty_and_large_values_round_trip",
        run: point::empty_and_large_values_round_trip,
    },
    Check {
        name: "delete_of_a_missing_key_is_fine",
        run: point::delete_of_a_missing_key_is_fine,
    },
    Check {
        name: "delete_once_removes_what_was_put_once",
        run: point::delete_once_removes_what_was_put_once,
    },
    Check {
        name: "scan_ascending_and_descending",
        run: scan::scan_ascending_and_descending,
    },
    Check {
        name: "scan_bounds_are_half_open",
        run: scan::scan_bounds_are_half_open,
    },
    Check {
        name: "scan_limit_is_honoured",
        run: scan::scan_limit_is_honoured,
    },
    Check {
        name: "empty_and_inverted_ranges_give_nothing",
        run: scan::empty_and_inverted_ranges_give_nothing,
    },
    Check {
        name: "binary_keys_sort_as_unsigned_bytes",
        run: scan::binary_keys_sort_as_unsigned_bytes,
    },
    Check {
        name: "prefix_scans_stay_inside_the_prefix",
        run: scan::prefix_scans_stay_inside_the_prefix,
    },
    Check {
        name: "every_record_kind_scans_in_one_order",
        run: scan::every_record_kind_scans_in_one_order,
    },
    Check {
        name: "batch_applies_in_order",
        run: batch::batch_applies_in_order,
    },
    Check {
        name: "readers_never_see_half_a_batch",
        run: batch::readers_never_see_half_a_batch,
    },
    Check {
        name: "flush_drop_reopen_keeps_everything",
        run: durability::flush_drop_reopen_keeps_everything,
    },
    Check {
        name: "many_keys_scan_in_order_after_reopen",
        run: durability::many_keys_scan_in_order_after_reopen,
    },
    Check {
        name: "second_open_is_locked",
        run: durability::second_open_is_locked,
    },
];

/// Runs every check of [`CHECKS`] on the engine `open` opens, stopping at the first failure.
pub fn run_all(open: Opener) -> Result<(), StoreError> {
    for check in CHECKS {
        (check.run)(open)?;
    }
    Ok(())
}

/// A fresh scratch directory, removed when dropped.
pub fn scratch() -> Result<tempfile::TempDir, StoreError> {
    Ok(tempfile::Builder::new()
        .prefix("chatd-kv-suite")
        .tempdir()?)
}

/// Opens `path` again after the caller dropped its last handle to the store there.
///
/// An engine may release its directory lock a moment after the last handle is dropped (sled's
/// background threads do); the suite waits up to ten seconds for it rather than calling that a
/// failure. [`durability::second_open_is_locked`] checks that the lock exists at all.
pub fn reopen(open: Opener, path: &Path) -> Result<Arc<dyn KvStore>, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(path) {
            Err(StoreError::Locked) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

/// A put of `key` → `value`.
fn put(key: &[u8], value: &[u8]) -> Op {
    Op::Put(key.to_vec(), value.to_vec())
}

/// The keys of `pairs`, in their order.
fn keys(pairs: &[KvPair]) -> Vec<Vec<u8>> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

/// `[a, b, …]` as owned keys, for comparing with [`keys`].
fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// Expands to one `#[test]` per conformance check for the engine that `$open` opens.
///
/// `$open` is an expression usable as a
/// [`conformance::Opener`](crate::conformance::Opener) (for example the path of a
/// `fn(&Path) -> Result<Arc<dyn KvStore>, StoreError>`). Invoke it inside a module of its own,
/// whose name then prefixes the tests:
///
/// ```ignore
/// mod sled_conformance {
///     fn open(dir: &std::path::Path) -> Result<std::sync::Arc<dyn chatd_kv::KvStore>, chatd_kv::StoreError> {
///         chatd_kv::open(&chatd_kv::EngineConfig::new(chatd_kv::Engine::Sled, dir))
///     }
///     chatd_kv::conformance_tests!(open);
/// }
/// ```
///
/// Besides the checks of [`CHECKS`](crate::conformance::CHECKS) it generates the crash check
/// (which runs the test binary again as a child, through the generated `crash_child` test) and
/// a test that fails when the macro and `CHECKS` disagree.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::__conformance_tests!(
            $open;
            get_missing_and_present,
            put_overwrites,
            empty_and_large_values_round_trip,
            delete_of_a_missing_key_is_fine,
            delete_once_removes_what_was_put_once,
            scan_ascending_and_descending,
            scan_bounds_are_half_open,
            scan_limit_is_honoured,
            empty_and_inverted_ranges_give_nothing,
            binary_keys_sort_as_unsigned_bytes,
            prefix_scans_stay_inside_the_prefix,
            every_record_kind_scans_in_one_order,
            batch_applies_in_order,
            readers_never_see_half_a_batch,
            flush_drop_reopen_keeps_everything,
            many_keys_scan_in_order_after_reopen,
            second_open_is_locked,
        );
    };
}

/// The expansion of [`conformance_tests!`], given the list of checks.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($open:expr; $($check:ident,)+) => {
        $(
            #[test]
            fn $check() -> ::std::result::Result<(), $crate::StoreError> {
                let check = $crate::conformance::CHECKS
                    .iter()
                    .find(|check| check.name == stringify!($check))
                    .expect("every check the macro names is in CHECKS");
                (check.run)(&$open)
            }
        )+

        #[test]
        fn the_macro_runs_every_check() {
            let generated = [$(stringify!($check)),+];
            let listed: ::std::vec::Vec<&str> =
                $crate::conformance::CHECKS.iter().map(|check| check.name).collect();
            assert_eq!(generated.as_slice(), listed.as_slice());
        }

        #[test]
        fn flushed_batches_survive_sigkill() -> ::std::result::Result<(), $crate::StoreError> {
            $crate::conformance::crash::flushed_batches_survive_sigkill(
                &$open,
                &$crate::conformance::crash::test_path(module_path!(), "crash_child"),
            )
        }

        /// The child process of `flushed_batches_survive_sigkill`; does nothing when run
        /// as an ordinary test.
        #[test]
        fn crash_child() -> ::std::result::Result<(), $crate::StoreError> {
            $crate::conformance::crash::crash_child(&$open)
        }
    };
}
