//! The committer's side of group fan-out (see `fanout.rs` for the design): starting a fan-out,
//! writing its next slice into a batch, and taking note of what a durable batch finished.

use bytes::Bytes;

use super::batch::{applied, taken, Batch};
use super::committer::Committer;
use super::fanout::{Fanout, FanoutRecord, Progress};
use crate::outbox::{Channel, Outgoing};
use crate::ports::log::{Intent, Queued, UnitOutcome};

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
        let unit = batch.unit();
        batch.new_fanouts.push((
            unit,
            Fanout {
                id: id.to_string(),
                payload,
                record,
                stored: false,
            },
        ));
    }

    /// Adds to the batch the next slice of the pending fan-outs, oldest first, at most
    /// `fanout_slice` recipients in all. Slices of pending fan-outs form a unit of their own;
    /// the first slice of a fan-out this batch started goes into the unit of its message, so
    /// that a message skipped as a duplicate queues nothing.
    pub(super) fn stage_fanouts(&mut self, batch: &mut Batch) {
        let mut budget = self.fanout_slice;
        let pending = self.fanouts.len();
        // The unit that collects the slices of pending fan-outs.
        let slices = batch.unit();
        for index in 0..pending + batch.new_fanouts.len() {
            if budget == 0 {
                break;
            }
            let (unit, fanout) = match index.checked_sub(pending) {
                // A stored fan-out is continued only while this writer still holds it.
                None => {
                    batch.fence.push(self.fanouts[index].id.clone());
                    (slices, &self.fanouts[index])
                }
                Some(i) => {
                    let (unit, fanout) = &batch.new_fanouts[i];
                    (*unit, fanout)
                }
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
            let mut intents = Vec::new();
            let mut items = Vec::new();
            for user in &record.recipients[start..end] {
                intents.push(Intent::Enqueue {
                    user: user.clone(),
                    qid: qid.clone(),
                    entry: Queued::Pointer(fanout.id.clone()),
                });
                if let Some(media) = &record.media {
                    intents.push(Intent::MediaRight {
                        media: media.clone(),
                        user: user.clone(),
                    });
                }
                if record.push && self.push_jobs && !self.deliver.is_online(user) {
                    // The job names where the message waits in the queue (a slice's queue id,
                    // not the message id), so the push bridge can tell whether it was
                    // delivered meanwhile.
                    intents.push(Intent::PushJob {
                        user: user.clone(),
                        conversation: record.conversation.clone(),
                        id: fanout.id.clone(),
                        queued: Some(qid.clone()),
                    });
                }
                items.push(Outgoing {
                    user: user.clone(),
                    channel: Channel::Inbox,
                    payload: fanout.payload.clone(),
                    queue_id: Some(qid.clone()),
                    skip_client: None,
                });
            }
            if end == record.recipients.len() {
                if fanout.stored {
                    intents.push(Intent::Fanout {
                        id: fanout.id.clone(),
                        record: None,
                    });
                }
            } else {
                let mut next = record.clone();
                next.done = end;
                intents.push(Intent::Fanout {
                    id: fanout.id.clone(),
                    record: Some(next),
                });
            }
            for intent in intents {
                batch.push_to(unit, intent);
            }
            for item in items {
                batch.deliver_for(unit, item);
            }
            batch.progress.push(Progress { index, done: end });
        }
        // New fan-outs this batch did not reach must be durable with the message itself.
        let reached = batch.progress.iter().filter(|p| p.index >= pending).count();
        let unreached: Vec<(usize, Intent)> = batch
            .new_fanouts
            .iter()
            .skip(reached)
            .map(|(unit, fanout)| {
                let record = Intent::Fanout {
                    id: fanout.id.clone(),
                    record: Some(fanout.record.clone()),
                };
                (*unit, record)
            })
            .collect();
        for (unit, intent) in unreached {
            batch.push_to(unit, intent);
        }
    }

    /// After the batch is durable: records the slices' progress, takes on the batch's new
    /// fan-outs (but not those of a message skipped as a duplicate) and forgets finished ones.
    pub(super) fn fanouts_written(&mut self, batch: &mut Batch, outcomes: &[UnitOutcome]) {
        if taken(outcomes) {
            // Another writer took over a fan-out this one held (its claim had run out while
            // this process stood still): none of the pending slices were written, and what
            // this committer still holds is what the store says.
            batch.progress.clear();
            batch.new_fanouts.clear();
            tracing::warn!("a fan-out this node held was taken over by another node");
            self.reload_fanouts();
            return;
        }
        let pending = self.fanouts.len();
        let mut progress = std::mem::take(&mut batch.progress);
        let mut kept = vec![true; batch.new_fanouts.len()];
        for (i, (unit, fanout)) in batch.new_fanouts.drain(..).enumerate() {
            kept[i] = applied(outcomes, unit);
            self.fanouts.push_back(fanout);
        }
        for p in progress.drain(..) {
            if let Some(fanout) = self.fanouts.get_mut(p.index) {
                fanout.record.done = p.done;
            }
        }
        // Every unfinished one has its record in the store now; finished ones go below.
        for fanout in self.fanouts.iter_mut() {
            fanout.stored = true;
        }
        let mut index = 0;
        self.fanouts.retain(|_| {
            let keep = index < pending || kept[index - pending];
            index += 1;
            keep
        });
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
                    Some(i) => &batch.new_fanouts[i].1,
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
