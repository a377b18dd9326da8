//! The committer's side of group fan-out (see `fanout.rs` for the design): starting a fan-out,
//! writing its next slice into a batch, and taking note of what a durable batch finished.

use bytes::Bytes;

use super::committer::{Batch, Committer};
use super::fanout::{Fanout, FanoutRecord, Progress, POINTER};
use crate::keys;
use crate::outbox::{Channel, Outgoing};
use chatd_kv::Op;

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
