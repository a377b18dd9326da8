//! How long chatd's allocator (mimalloc, chosen in `main.rs`) keeps memory that was freed
//! before it hands it back to the system.
//!
//! Why: fjall's memtables are built by the committer as messages arrive and freed whole once
//! written out to a table, a few megabytes at a time every few seconds under load. mimalloc
//! hands freed memory back 1 s after it is freed by default, so every new memtable faulted its
//! pages in again, each zeroed by the kernel (2 MiB at a time where transparent huge pages are
//! on) inside the committer, while the messages of its batch waited. Kept for 10 s, freed
//! memory is reused by the next memtable: at full load the process took 23,000–58,000 page
//! faults over 2 million messages instead of 208,000–241,000, with the same peak resident memory
//! (docs/benchmarks.md, "freed memory kept for 10 s"). Memory nobody reuses still goes back
//! to the system, 10 s later.
//!
//! An operator can still choose otherwise with mimalloc's own `MIMALLOC_PURGE_DELAY`
//! (milliseconds; `-1` never hands memory back), which is read when the process starts and
//! wins over the default set here.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};

// The allocator itself, so that its C symbols below are linked into every binary of the crate.
use libmimalloc_sys as _;

/// How long freed memory stays with the process before it goes back to the system, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise: 10 s.
pub const PURGE_DELAY_MS: c_long = 10_000;

/// mimalloc's number for its `purge_delay` option: its place in `mi_option_e` in the bundled
/// v3 header (`libmimalloc-sys`, which does not name it). The tests check it by name.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// What mimalloc calls with each piece of text it prints.
type Output = unsafe extern "C" fn(msg: *const c_char, arg: *mut c_void);

extern "C" {
    /// Sets an option unless the environment set it already.
    fn mi_option_set_default(option: c_int, value: c_long);
    /// Prints every option with its name and value through `out`.
    fn mi_options_print_out(out: Option<Output>, arg: *mut c_void);
}

/// Makes mimalloc keep freed memory for [`PURGE_DELAY_MS`] (unless `MIMALLOC_PURGE_DELAY` is
/// set). Call it first thing in `main`: mimalloc's options are not meant to change while other
/// threads allocate.
pub fn keep_freed_memory() {
    // SAFETY: a plain store into mimalloc's option table, with an option number from its header.
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}

/// mimalloc's options as it prints them (`option 'purge_delay': 10000` and so on): what the
/// tests check the setting by, and a way to see the allocator's settings when diagnosing.
pub fn options() -> String {
    unsafe extern "C" fn collect(msg: *const c_char, arg: *mut c_void) {
        if msg.is_null() || arg.is_null() {
            return;
        }
        // SAFETY: `arg` is the `String` passed below, alive for the whole call; `msg` is a
        // NUL-terminated string from mimalloc.
        let (text, msg) = unsafe { (&mut *(arg as *mut String), CStr::from_ptr(msg)) };
        text.push_str(&msg.to_string_lossy());
    }
    let mut text = String::new();
    // SAFETY: `collect` only appends to `text`, which outlives the call.
    unsafe { mi_options_print_out(Some(collect), &mut text as *mut String as *mut c_void) };
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_kept_for_ten_seconds_under_its_own_name() {
        keep_freed_memory();
        let options = options();
        let line = options
            .lines()
            .find(|l| l.starts_with("option 'purge_delay'"))
            .unwrap_or_else(|| panic!("mimalloc prints no purge_delay:\n{options}"));
        assert_eq!(line.trim_end(), "option 'purge_delay': 10000");
    }
}
