//! Timestamps shared by every client of one run.
//!
//! Senders embed a timestamp in each message and receivers subtract it from their own reading,
//! so both must read the same clock. The clock is monotonic (an [`Instant`]) but anchored once to
//! the wall clock, so its values read like Unix-epoch nanoseconds.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    epoch_ns: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        epoch_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    })
}

/// Nanoseconds since the Unix epoch, read from a monotonic clock (never goes backwards).
pub fn now_ns() -> u64 {
    let a = anchor();
    a.epoch_ns + a.instant.elapsed().as_nanos() as u64
}
