//! Group fan-out in slices, so a big group never holds up anybody else's messages.
//!
//! Accepting a group message (or a membership event) stores it once and records who must get
//! it under `n/{id}`; the committer then writes the members' queue entries a slice at a time,
//! at most `fanout_slice` recipients per batch, beside whatever else that batch carries. A 1:1
//! message sent while a 1024-member group fans out therefore waits for one slice, not for the
//! whole group. Online members come first in the list, so they get the message in the first
//! slice.
//!
//! Every slice takes a fresh queue id from the message id generator, and its entries are
//! `q/{user}/{qid}` = `@{message id}`: a recipient's queue and live deliveries stay in commit
//! order (what sessions rely on to skip what they already sent), while the message itself is
//! stored once. Slices of one fan-out, and fan-outs among themselves, run in acceptance order,
//! so each member gets one group's messages in order. The `n/{id}` record is rewritten with
//! the progress by every slice and deleted by the last one, all in the slice's atomic batch:
//! after a crash the committer picks up where the last durable slice ended. Batches that only
//! carry slices are not flushed each time (see `FANOUT_FLUSH_INTERVAL` in `committer.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::committer::{Batch, Committer};
use crate::keys;
use crate::outbox::{Channel, Outgoing};
use chatd_kv::{KvStore, Op, StoreError};

/// The queue-entry value that points at a stored message (`@{message id}`).
pub(crate) const POINTER: u8 = b'@';

/// A message stored but not yet queued for all of its recipients.
pub(crate) struct Fanout {
    /// The message id.
    pub id: String,
    /// The message as delivered.
    pub payload: Bytes,
    /// What is stored under `n/{id}`.
    pub record: FanoutRecord,
    /// Whether the record is in the store yet (a fan-out finished by its first slice never is).
    pub stored: bool,
}

/// The durable part of a pending fan-out.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct FanoutRecord {
    /// The group conversation (push jobs and history name it).
    pub conversation: String,
    /// Media the message references: each recipient gets the right to download it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Whether recipients with no device online get a push job (messages yes, events no).
    #[serde(default)]
    pub push: bool,
    /// Everyone who gets the message, online members first.
    pub recipients: Vec<String>,
    /// How many of `recipients` are queued already.
    pub done: usize,
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

    fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// The slice of one fan-out a batch writes: fan-out `index` (counting the committer's pending
/// ones first, then the batch's new ones) reaches `done`.
pub(super) struct Progress {
    index: usize,
    done: usize,
}

/// Reads the fan-outs a previous run left unfinished, in acceptance order.
pub(crate) fn load(store: &dyn KvStore) -> Result<VecDeque<Fanout>, StoreError> {
    let prefix = keys::FANOUT_PREFIX;
    let mut out = VecDeque::new();
    for (key, value) in store.scan(
        prefix.as_bytes(),
        &keys::prefix_end(prefix),
        false,
        usize::MAX,
    )? {
        let id = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
        let record: FanoutRecord = match serde_json::from_slice(&value) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("pending fan-out of {id} unreadable, dropped: {e}");
                continue;
            }
        };
        let Some(payload) = store.get(&keys::message(&id))? else {
            tracing::error!("pending fan-out of {id} has no message, dropped");
            continue;
        };
        out.push_back(Fanout {
            id,
            payload: Bytes::from(payload),
            record,
            stored: true,
        });
    }
    Ok(out)
}

impl Committer {
    /// Starts fanning out message `id` to `recipients` (put online ones first here).
    pub(super) fn start_fanout(
        &self,
        batch: &mut Batch,
        id: &str,
        payload: Bytes,
        mut record: FanoutRecord,
    ) {
        record
            .recipients
            .sort_by_key(|user| !self.deliver.is_online(user));
        batch.new_fanouts.push(Fanout {
            id: id.to_string(),
            payload,
            record,
            stored: false,
        });
    }

    /// Adds to the batch the next slice of the pending fan-outs, oldest first, at most
    /// `fanout_slice` recipients in all.
    pub(super) fn stage_fanouts(&mut self, batch: &mut Batch) {
        let mut budget = self.fanout_slice;
        let pending = self.fanouts.len();
        for index in 0..pending + batch.new_fanouts.len() {
            if budget == 0 {
                break;
            }
            let fanout = match index.checked_sub(pending) {
                None => &self.fanouts[index],
                Some(i) => &batch.new_fanouts[i],
            };
            let record = &fanout.record;
            let start = record.done;
            let end = record.recipients.len().min(start + budget);
            budget -= end - start;
            if start == end {
                // Nobody to queue (a group whose only member sent it).
                batch.progress.push(Progress { index, done: end });
                continue;
            }
            let (qid, _) = self.ids.next();
            let pointer = [&[POINTER], fanout.id.as_bytes()].concat();
            for user in &record.recipients[start..end] {
                batch.ops.push(Op::Put(
                    format!("{}{qid}", keys::queue_prefix(user)).into_bytes(),
                    pointer.clone(),
                ));
                if let Some(media) = &record.media {
                    batch
                        .ops
                        .push(Op::Put(keys::media_access(media, user), Vec::new()));
                }
                if record.push && self.push_jobs && !self.deliver.is_online(user) {
                    // The job names where the message waits in the queue (a slice's queue id,
                    // not the message id), so the push bridge can tell whether it was
                    // delivered meanwhile.
                    batch.ops.push(Op::Put(
                        keys::push_job(user, &record.conversation, &fanout.id),
                        qid.clone().into_bytes(),
                    ));
                }
                batch.fresh.push(Outgoing {
                    user: user.clone(),
                    channel: Channel::Inbox,
                    payload: fanout.payload.clone(),
                    queue_id: Some(qid.clone()),
                    skip_client: None,
                });
            }
            let key = keys::fanout(&fanout.id);
            if end == record.recipients.len() {
                if fanout.stored {
                    batch.ops.push(Op::Delete(key));
                }
            } else {
                let mut next = record.clone();
                next.done = end;
                match serde_json::to_vec(&next) {
                    Ok(value) => batch.ops.push(Op::Put(key, value)),
                    Err(e) => tracing::error!("fan-out record not encoded: {e}"),
                }
            }
            batch.progress.push(Progress { index, done: end });
        }
        // New fan-outs this batch did not reach must be durable with the message itself.
        let reached = batch.progress.iter().filter(|p| p.index >= pending).count();
        for fanout in batch.new_fanouts.iter().skip(reached) {
            match serde_json::to_vec(&fanout.record) {
                Ok(value) => batch.ops.push(Op::Put(keys::fanout(&fanout.id), value)),
                Err(e) => tracing::error!("fan-out record not encoded: {e}"),
            }
        }
    }

    /// After the batch is durable: records the slices' progress, takes on the batch's new
    /// fan-outs and forgets finished ones.
    pub(super) fn fanouts_written(&mut self, batch: &mut Batch) {
        self.fanouts.extend(batch.new_fanouts.drain(..));
        for p in batch.progress.drain(..) {
            if let Some(fanout) = self.fanouts.get_mut(p.index) {
                fanout.record.done = p.done;
            }
        }
        // Every unfinished one has its record in the store now; finished ones go below.
        for fanout in self.fanouts.iter_mut() {
            fanout.stored = true;
        }
        while self
            .fanouts
            .front()
            .is_some_and(|f| f.record.done >= f.record.recipients.len())
        {
            self.fanouts.pop_front();
        }
        self.count_fanouts();
    }

    /// Whether this batch's slices finish every pending and new fan-out.
    pub(super) fn finishes_all(&self, batch: &Batch) -> bool {
        let total = self.fanouts.len() + batch.new_fanouts.len();
        batch.progress.len() == total
            && batch.progress.iter().all(|p| {
                let fanout = match p.index.checked_sub(self.fanouts.len()) {
                    None => &self.fanouts[p.index],
                    Some(i) => &batch.new_fanouts[i],
                };
                p.done >= fanout.record.recipients.len()
            })
    }

    /// Publishes how many recipients wait.
    pub(super) fn count_fanouts(&self) {
        let waiting = self
            .fanouts
            .iter()
            .map(|f| f.record.recipients.len() - f.record.done)
            .sum();
        self.fanout_backlog.set(waiting);
    }
}
