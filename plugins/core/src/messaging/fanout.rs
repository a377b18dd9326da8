//! Group fan-out in slices, so a big group never holds up anybody else's messages.
//!
//! Accepting a group message (or a membership event) stores it once and records who must get
//! it (a fan-out record); the committer then writes the members' queue entries a slice at a time,
//! at most `fanout_slice` recipients per batch, beside whatever else that batch carries. A 1:1
//! message sent while a 1024-member group fans out therefore waits for one slice, not for the
//! whole group. Online members come first in the list, so they get the message in the first
//! slice.
//!
//! Every slice takes a fresh queue id from the message id generator, and its entries point at
//! the message: a recipient's queue and live deliveries stay in commit
//! order (what sessions rely on to skip what they already sent), while the message itself is
//! stored once. Slices of one fan-out, and fan-outs among themselves, run in acceptance order,
//! so each member gets one group's messages in order. The record is rewritten with the progress
//! by every slice and dropped by the last one, all in the slice's atomic batch: after a crash
//! the committer picks up where the last durable slice ended. Unfinished fan-outs are claimed
//! from the message log with a lease, so two processes sharing a store never both run one. Batches that only
//! carry slices are not flushed each time (see `FANOUT_FLUSH_INTERVAL` in `committer.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use bytes::Bytes;

use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
pub(crate) use crate::records::fanout::FanoutRecord;

/// How long a claim of the pending fan-outs lasts when the process is the store's only
/// writer (a cluster configures its own); every slice written renews it.
pub(crate) const FANOUT_LEASE: Duration = Duration::from_secs(60);

/// A message stored but not yet queued for all of its recipients.
pub(crate) struct Fanout {
    /// The message id.
    pub id: String,
    /// The message as delivered.
    pub payload: Bytes,
    /// Who gets it, and how many are queued.
    pub record: FanoutRecord,
    /// Whether the record is in the store yet (a fan-out finished by its first slice never is).
    pub stored: bool,
}

/// How many recipients wait in pending fan-outs; shared with the service, which refuses new
/// group messages with `rate_limited` while it is above the configured bound.
#[derive(Default)]
pub(crate) struct Backlog(AtomicUsize);

impl Backlog {
    /// Recipients still to be queued.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Records how many recipients are still to be queued (the committer, after each batch).
    pub(super) fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// The slice of one fan-out a batch writes: fan-out `index` (counting the committer's pending
/// ones first, then the batch's new ones) reaches `done`.
pub(super) struct Progress {
    /// Which fan-out.
    pub(super) index: usize,
    /// How many of its recipients are queued once the batch is written.
    pub(super) done: usize,
}

/// Claims, for `owner`, for `lease`, the fan-outs left unfinished (by a previous run, or by a
/// process whose claim ran out), in acceptance order.
pub(crate) fn claim(
    log: &dyn MessageLog,
    owner: &str,
    lease: Duration,
) -> Result<VecDeque<Fanout>, RecordError> {
    Ok(log
        .claim_fanouts(owner, lease)?
        .into_iter()
        .map(|pending| Fanout {
            id: pending.id,
            payload: pending.payload,
            record: pending.record,
            stored: true,
        })
        .collect())
}
