//! The committer: the single thread that turns accepted sends and receipts into stored
//! records.
//!
//! It takes every job waiting in its channel (up to a batch limit), assigns ids in order,
//! writes one atomic batch and flushes once, then answers all of them and hands the new
//! messages and receipt events to the broker in id order. One writer means commit order ==
//! id order (and makes every status change a read-modify-write without races), and one flush
//! for many jobs is what makes durable acks affordable.
//!
//! Receipts: a status change of message `id` for recipient `by` is stored as
//! `s/{id}/{by}` = `{"status":…,"ts":…}` and queued for the author as `q/{author}/{qid}` whose
//! value is the `user/{author}/receipt` payload (message queue entries have an empty value).
//! `qid` comes from the same id generator as message ids, so the queue stays in one order.
//! Every batch that issued ids also records the highest one under `x/last_id`.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::acked::AckedKeys;
use super::fanout::{Backlog, Fanout, Progress};
use super::group_ops::GroupOp;
use super::group_records::Group;
use super::receipts::ReceiptDraft;
use super::records::{Message, ReceiptEvent, Status, StatusRecord, Summary};
use super::stats::Counters;
use super::validate::{Draft, Target};
use super::watermark::Watermark;
use crate::accounts::{AccountStatus, Accounts};
use crate::keys;
use crate::outbox::{Channel, Deliver, Outgoing};
use chatd_kv::{KvStore, Op, StoreError};
use chatd_wire::ids::IdGen;
use chatd_wire::reply::{self, ErrorCode, Failure};

/// A removed account whose data the committer must clean up.
pub struct PurgeJob {
    /// The removed user.
    pub user: String,
    /// Told once the batch is durable.
    pub reply: oneshot::Sender<Result<(), Failure>>,
}

/// One piece of work for the committer.
pub enum Job {
    /// A message to store.
    Send(SendJob),
    /// The ids of one receipt publish, handled together.
    Receipt(ReceiptJob),
    /// A change to a group.
    Group(GroupJob),
    /// Nothing to store: acknowledged queue entries wait to be deleted.
    Wake,
    /// The clean-up after an account removal; always committed in a batch of its own.
    Purge(PurgeJob),
}

/// One checked group change waiting for the committer.
pub struct GroupJob {
    /// The authenticated caller.
    pub by: String,
    /// What to change.
    pub op: GroupOp,
    /// Where the result (or refusal) goes once the batch is durable.
    pub reply: oneshot::Sender<Result<Value, Failure>>,
}

/// One accepted send waiting for the committer.
pub struct SendJob {
    /// The authenticated sender.
    pub from: String,
    /// The sender's client id: its other devices get a copy of a group message.
    pub device: Option<String>,
    /// The checked message.
    pub draft: Draft,
    /// Where the ack goes once the batch is durable.
    pub reply: oneshot::Sender<Bytes>,
}

/// One checked receipt publish waiting for the committer.
pub struct ReceiptJob {
    /// The authenticated user who sent the receipt.
    pub by: String,
    /// The checked ids and status.
    pub draft: ReceiptDraft,
    /// Where the refused ids (with why) go once the batch is durable; empty = all accepted.
    pub reply: oneshot::Sender<Vec<(String, Failure)>>,
}

/// The committer's state; owned by its thread.
pub struct Committer {
    /// Where messages are written.
    pub store: Arc<dyn KvStore>,
    /// Recipient existence checks.
    pub accounts: Accounts,
    /// Where new messages go after the flush.
    pub deliver: Arc<dyn Deliver>,
    /// Issues the message ids.
    pub ids: IdGen,
    /// Raised after every successful flush.
    pub watermark: Arc<Watermark>,
    /// Metrics.
    pub counters: Arc<Counters>,
    /// Most sends per batch.
    pub max_batch: usize,
    /// The highest id ever applied to the store (durable only once a flush succeeds).
    pub applied: String,
    /// Whether to write a push job for each message queued for a user with no device online.
    pub push_jobs: bool,
    /// Most members of one group.
    pub max_members: usize,
    /// Most groups one user may belong to at once.
    pub max_groups_per_user: usize,
    /// Groups read or changed lately, so a group message does not rescan its members; any
    /// failed batch empties it (the store is the truth).
    pub groups: HashMap<String, Group>,
    /// Group messages and events still being queued for their recipients, oldest first.
    pub fanouts: VecDeque<Fanout>,
    /// Most recipients one batch queues a fan-out for.
    pub fanout_slice: usize,
    /// How many recipients the fan-outs still have to reach (read by the service).
    pub fanout_backlog: Arc<Backlog>,
    /// Queue entries acknowledged by devices, deleted by the next batch.
    pub acked: Arc<AckedKeys>,
    /// When the store was last flushed.
    pub last_flush: Instant,
}

/// Longest a fan-out runs without a flush. Its slices need none to be correct: the message
/// and the `n/` record were flushed with the send, and a slice lost in a crash is written
/// again from that record (a recipient who saw it live gets it once more, under the same
/// message id). But queue reads stop at the last flush, so an offline member who connects
/// meanwhile sees slices only once one is flushed; and the last slice of a run is flushed.
const FANOUT_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// How one send of a batch came out before the batch is written.
pub(super) enum Staged {
    /// A new message; the ack to give once durable.
    New(Bytes),
    /// A cid seen before; the first ack, given unchanged.
    Duplicate(Bytes),
}

/// Everything one batch writes, accumulated across its sends.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) ops: Vec<Op>,
    /// Acks by `k/…` key for cids first used in this batch (or already looked up).
    pub(super) acks: HashMap<Vec<u8>, Bytes>,
    /// Conversation summaries touched by this batch, with every change applied.
    pub(super) summaries: HashMap<Vec<u8>, Summary>,
    /// Receipt statuses (`s/…` keys) changed by this batch.
    statuses: HashMap<Vec<u8>, Status>,
    /// New messages, group events and receipt events, in id order.
    pub(super) fresh: Vec<Outgoing>,
    /// How many messages (group events included) this batch stores.
    pub(super) messages: u64,
    /// How many of `fresh` are receipt events.
    receipts: u64,
    /// Fan-outs started by this batch.
    pub(super) new_fanouts: Vec<Fanout>,
    /// How far this batch takes each fan-out it writes a slice of.
    pub(super) progress: Vec<Progress>,
    /// Groups joined and left per user by this batch (not yet visible in the store).
    pub(super) group_counts: super::member_index::StagedCounts,
}

impl Committer {
    /// Runs until every sender of the channel is gone and the channel is drained.
    ///
    /// While fan-outs are pending it does not wait for jobs: each batch then carries
    /// whatever jobs are waiting plus the next fan-out slice. When the channel closes,
    /// unfinished fan-outs stay in the store for the next start.
    pub fn run(mut self, rx: Receiver<Job>) {
        loop {
            let first = if self.fanouts.is_empty() {
                match rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                }
            } else {
                match rx.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            let mut jobs: Vec<Job> = first.into_iter().collect();
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // A clean-up reads the user's keys from the store, so what the jobs before it
            // write must be applied first, and what it deletes must not be written again by
            // jobs after it in the same batch: it gets a batch of its own.
            while let Some(at) = jobs.iter().position(|j| matches!(j, Job::Purge(_))) {
                let rest = jobs.split_off(at + 1);
                let purge = jobs.pop().into_iter().collect();
                if !jobs.is_empty() {
                    self.commit_guarded(jobs);
                }
                self.commit_guarded(purge);
                jobs = rest;
            }
            self.commit_guarded(jobs);
        }
        // Deletes acknowledged after the last batch.
        if panic::catch_unwind(AssertUnwindSafe(|| self.commit(Vec::new()))).is_err() {
            tracing::error!("committer's last batch panicked");
        }
        tracing::debug!("committer stopped");
    }

    /// Commits one batch. A bug must not stop messaging for everyone: the batch's reply
    /// channels are dropped by the unwind, so its senders (and receipts) get `internal`, and
    /// the next batch runs.
    fn commit_guarded(&mut self, jobs: Vec<Job>) {
        if panic::catch_unwind(AssertUnwindSafe(|| self.commit(jobs))).is_err() {
            tracing::error!("committer batch panicked; its jobs were answered `internal`");
            // What the failed batch did to the fan-outs is unknown: start again from the store.
            self.reload_fanouts();
        }
    }

    fn reload_fanouts(&mut self) {
        match super::fanout::load(self.store.as_ref()) {
            Ok(fanouts) => self.fanouts = fanouts,
            Err(e) => tracing::error!("pending fan-outs not reloaded: {e}"),
        }
        self.count_fanouts();
    }

    pub(super) fn commit(&mut self, jobs: Vec<Job>) {
        let mut batch = Batch::default();
        // Whatever this batch stores carries an id issued from here on.
        let before = self.ids.last_issued();
        // Only stores that answer someone need the flush; deletes of acked entries and fan-out
        // slices do not (see `FANOUT_FLUSH_INTERVAL`).
        let mut must_flush = false;
        let mut sends = Vec::with_capacity(jobs.len());
        let mut receipts = Vec::new();
        let mut group_jobs = Vec::new();
        let mut purges = Vec::new();
        for job in jobs {
            match job {
                Job::Send(job) => {
                    let staged =
                        self.stage(&mut batch, &job.from, job.device.as_deref(), &job.draft);
                    sends.push((job.reply, job.draft.cid, staged));
                }
                Job::Receipt(job) => {
                    let refused = self.stage_receipt(&mut batch, &job.by, &job.draft);
                    receipts.push((job.reply, job.draft.ids, refused));
                }
                Job::Group(job) => {
                    let result = self.stage_group(&mut batch, &job.by, job.op);
                    group_jobs.push((job.reply, result));
                }
                Job::Purge(job) => {
                    let result = self.stage_purge(&mut batch, &job.user);
                    purges.push((job.reply, result));
                }
                Job::Wake => continue,
            }
            must_flush = true;
        }
        self.stage_fanouts(&mut batch);
        if !batch.progress.is_empty()
            && (self.last_flush.elapsed() >= FANOUT_FLUSH_INTERVAL || self.finishes_all(&batch))
        {
            must_flush = true;
        }
        let acked = self.acked.take();
        // The highest id issued by this batch, whatever it named: a message, a group event, a
        // queue entry or a receipt. The watermark must cover all of them, or a message whose
        // batch queued nothing (a group with no other member) would be acknowledged but not
        // readable. An id issued for a change that was refused names nothing; covering it is
        // harmless.
        let newest = self
            .ids
            .last_issued()
            .filter(|last| Some(last) != before.as_ref());
        let mut ops = std::mem::take(&mut batch.ops);
        for (key, summary) in &batch.summaries {
            match serde_json::to_vec(summary) {
                Ok(value) => ops.push(Op::Put(key.clone(), value)),
                Err(e) => tracing::error!("conversation summary not encoded: {e}"),
            }
        }
        if let Some(id) = &newest {
            ops.push(Op::Put(keys::LAST_ID.to_vec(), id.clone().into_bytes()));
        }
        ops.extend(acked.iter().cloned().map(Op::Delete));
        let durable = self.write(ops, newest, must_flush);
        if let Err(e) = &durable {
            tracing::error!(
                "batch of {} sends, {} receipts and {} group changes not stored: {e}",
                sends.len(),
                receipts.len(),
                group_jobs.len()
            );
            // Cached groups may hold changes that were never stored.
            self.groups.clear();
        } else {
            // Before anyone is answered, so that a sender who got its ack already sees the
            // fan-out backlog its message added.
            self.acked.done(&acked);
            self.fanouts_written(&mut batch);
        }
        for (reply, result) in purges {
            let answer = match &durable {
                Ok(()) => result,
                Err(_) => Err(Failure::internal("the clean-up could not be stored; retry")),
            };
            let _ = reply.send(answer);
        }
        for (reply, result) in group_jobs {
            let answer = match &durable {
                Ok(()) => result,
                Err(_) => Err(Failure::internal("the change could not be stored; retry")),
            };
            let _ = reply.send(answer);
        }
        Counters::add(&self.counters.batches, 1);
        for (reply, cid, staged) in sends {
            let answer = match (&durable, staged) {
                (Ok(()), Ok(Staged::New(ack))) => ack,
                (Ok(()), Ok(Staged::Duplicate(ack))) => {
                    Counters::add(&self.counters.duplicate_cids, 1);
                    ack
                }
                (_, Err(failure)) => {
                    Counters::add(&self.counters.rejected, 1);
                    reply::ack_err(Some(&cid), &failure)
                }
                (Err(_), Ok(_)) => {
                    Counters::add(&self.counters.rejected, 1);
                    reply::ack_err(
                        Some(&cid),
                        &Failure::internal("the message could not be stored; retry"),
                    )
                }
            };
            // The sender may have gone away meanwhile; the message is stored regardless.
            let _ = reply.send(answer);
        }
        for (reply, ids, refused) in receipts {
            let refused = match &durable {
                Ok(()) => refused,
                Err(_) => {
                    // Nothing of this batch may be relied on: every id is refused, each
                    // with its own reason where it had one.
                    let lost = Failure::internal("the receipt could not be stored; retry");
                    ids.into_iter()
                        .map(|id| {
                            let why = refused
                                .iter()
                                .find(|(r, _)| *r == id)
                                .map_or_else(|| lost.clone(), |(_, f)| f.clone());
                            (id, why)
                        })
                        .collect()
                }
            };
            let _ = reply.send(refused);
        }
        if durable.is_ok() {
            Counters::add(&self.counters.messages_stored, batch.messages);
            Counters::add(&self.counters.receipts_stored, batch.receipts);
            for item in batch.fresh {
                self.deliver.deliver(item);
            }
        }
    }

    /// Applies the batch and flushes; raises the watermark once both succeeded.
    fn write(
        &mut self,
        ops: Vec<Op>,
        newest: Option<String>,
        must_flush: bool,
    ) -> Result<(), StoreError> {
        if !ops.is_empty() {
            self.store.apply(ops)?;
            if let Some(id) = newest {
                self.applied = id;
            }
        }
        if !must_flush {
            return Ok(());
        }
        // Flush even for a batch of retries only: their stored acks may come from a batch
        // whose flush failed, and must not be repeated before they are durable.
        self.store.flush()?;
        self.last_flush = Instant::now();
        self.watermark.advance(&self.applied);
        Ok(())
    }

    /// Decides what one send does and adds its writes to the batch.
    fn stage(
        &mut self,
        batch: &mut Batch,
        from: &str,
        device: Option<&str>,
        draft: &Draft,
    ) -> Result<Staged, Failure> {
        let cid_key = keys::cid(from, &draft.cid);
        if let Some(ack) = batch.acks.get(&cid_key) {
            return Ok(Staged::Duplicate(ack.clone()));
        }
        if let Some(ack) = self.store.get(&cid_key).map_err(store_failure)? {
            let ack = Bytes::from(ack);
            batch.acks.insert(cid_key, ack.clone());
            return Ok(Staged::Duplicate(ack));
        }
        match &draft.target {
            Target::User(to) => self.stage_direct(batch, from, to, draft, cid_key),
            Target::Group(group) => {
                self.stage_group_send(batch, from, device, group, draft, cid_key)
            }
        }
    }

    /// A 1:1 message: stored once, queued for the recipient, counted unread in their summary.
    fn stage_direct(
        &mut self,
        batch: &mut Batch,
        from: &str,
        to: &str,
        draft: &Draft,
        cid_key: Vec<u8>,
    ) -> Result<Staged, Failure> {
        if !self.accounts.exists(to).map_err(|e| {
            tracing::error!("account lookup failed: {e}");
            Failure::internal("the recipient could not be looked up; retry")
        })? {
            return Err(Failure::new(
                ErrorCode::NotFound,
                format!("no such user `{to}`"),
            ));
        }
        let conversation = keys::direct_conversation(from, to);
        let sender_key = keys::summary(from, &conversation);
        let recipient_key = keys::summary(to, &conversation);
        let mut sender = self.summary(batch, &sender_key, to)?;
        let mut recipient = self.summary(batch, &recipient_key, from)?;

        let (id, ts) = self.ids.next();
        let mut message = Message::new(id.clone(), &draft.kind, ts);
        message.from = from.to_string();
        message.to = Some(to.to_string());
        message.text = draft.text.clone();
        message.media = draft.media.clone();
        message.reply_to = draft.reply_to.clone();
        let payload = serde_json::to_vec(&message)
            .map_err(|e| Failure::internal(format!("message not encoded: {e}")))?;
        let ack = reply::ack_ok(&draft.cid, &id, ts);

        batch.ops.push(Op::Put(keys::message(&id), payload.clone()));
        batch.ops.push(Op::Put(
            format!("{}{id}", keys::history_prefix(&conversation)).into_bytes(),
            Vec::new(),
        ));
        batch.ops.push(Op::Put(
            format!("{}{id}", keys::queue_prefix(to)).into_bytes(),
            Vec::new(),
        ));
        batch.ops.push(Op::Put(cid_key.clone(), ack.to_vec()));
        if let Some(media) = &draft.media {
            for user in [from, to] {
                batch
                    .ops
                    .push(Op::Put(keys::media_access(media, user), Vec::new()));
            }
        }
        if self.push_jobs && to != from && !self.deliver.is_online(to) {
            batch
                .ops
                .push(Op::Put(keys::push_job(to, &conversation, &id), Vec::new()));
        }

        sender.last_id = id.clone();
        recipient.last_id = id.clone();
        if sender_key == recipient_key {
            // A note to oneself: one summary, and nothing unread in it.
            batch.summaries.insert(sender_key, sender);
        } else {
            recipient.unread += 1;
            batch.summaries.insert(sender_key, sender);
            batch.summaries.insert(recipient_key, recipient);
        }
        batch.acks.insert(cid_key, ack.clone());
        batch.fresh.push(Outgoing {
            user: to.to_string(),
            channel: Channel::Inbox,
            payload: Bytes::from(payload),
            queue_id: Some(id),
            skip_client: None,
        });
        batch.messages += 1;
        Ok(Staged::New(ack))
    }

    /// Decides what each id of one receipt does and adds the writes to the batch; returns
    /// the refused ids with why. Ids whose status would not move forward are accepted and
    /// change nothing.
    fn stage_receipt(
        &mut self,
        batch: &mut Batch,
        by: &str,
        draft: &ReceiptDraft,
    ) -> Vec<(String, Failure)> {
        let mut refused = Vec::new();
        for id in &draft.ids {
            if let Err(failure) = self.stage_status(batch, by, id, draft.status) {
                refused.push((id.clone(), failure));
            }
        }
        refused
    }

    /// One id of a receipt: checks it, and when its status moves forward stores the new
    /// status, queues the event for the author and updates `by`'s unread count.
    fn stage_status(
        &mut self,
        batch: &mut Batch,
        by: &str,
        id: &str,
        status: Status,
    ) -> Result<(), Failure> {
        let Some(bytes) = self.store.get(&keys::message(id)).map_err(store_failure)? else {
            return Err(Failure::new(ErrorCode::NotFound, "no such message"));
        };
        let message = Message::decode(&bytes).map_err(|e| {
            tracing::error!("message {id}: {e}");
            Failure::internal("the message could not be read")
        })?;
        let received = match &message.group {
            // Events are information, not messages: a receipt for one changes nothing.
            Some(_) if message.kind == "event" => return Ok(()),
            Some(group) => message.from != by && self.member_saw(group, by, id)?,
            None => message.to.as_deref() == Some(by) && self.owns(by, id)?,
        };
        if !received {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "receipts are only accepted for messages you received",
            ));
        }
        let status_key = keys::status(id, by);
        let current = match batch.statuses.get(&status_key) {
            Some(s) => *s,
            None => match self.store.get(&status_key).map_err(store_failure)? {
                None => Status::Sent,
                Some(bytes) => StatusRecord::decode(&bytes).map_or_else(
                    |e| {
                        tracing::warn!("replacing unreadable receipt status: {e}");
                        Status::Sent
                    },
                    |r| r.status,
                ),
            },
        };
        if status <= current {
            return Ok(());
        }
        let author = message.from.as_str();
        let unread = match &message.group {
            _ if status != Status::Read || author == by => None,
            Some(group) => {
                // A group summary remembers how far the member has read; the unread count
                // is worked out from the history index when asked.
                let key = keys::summary(by, &keys::group_conversation(group));
                let mut summary = self.summary(batch, &key, group)?;
                summary.group = true;
                if summary.read_upto.as_str() < id {
                    summary.read_upto = id.to_string();
                }
                Some((key, summary))
            }
            None => {
                let key = keys::summary(by, &keys::direct_conversation(author, by));
                let mut summary = self.summary(batch, &key, author)?;
                summary.unread = summary.unread.saturating_sub(1);
                Some((key, summary))
            }
        };
        let (qid, ts) = self.ids.next();
        let record = serde_json::to_vec(&StatusRecord { status, ts })
            .map_err(|e| Failure::internal(format!("status not encoded: {e}")))?;
        let event = serde_json::to_vec(&ReceiptEvent {
            id: id.to_string(),
            by: by.to_string(),
            status,
            ts,
        })
        .map_err(|e| Failure::internal(format!("receipt not encoded: {e}")))?;

        batch.ops.push(Op::Put(status_key.clone(), record));
        batch.statuses.insert(status_key, status);
        if let Some((key, summary)) = unread {
            batch.summaries.insert(key, summary);
        }
        // The status is kept, but a removed author (or a later owner of the id) is not told.
        if !self.owns(author, id)? {
            return Ok(());
        }
        batch.ops.push(Op::Put(
            format!("{}{qid}", keys::queue_prefix(author)).into_bytes(),
            event.clone(),
        ));
        batch.fresh.push(Outgoing {
            user: author.to_string(),
            channel: Channel::Receipt,
            payload: Bytes::from(event),
            queue_id: Some(qid),
            skip_client: None,
        });
        batch.receipts += 1;
        Ok(())
    }

    /// Whether message `id` belongs to the current account `user`: the account is live and
    /// the message is newer than its history floor (a reclaimed id owns nothing older).
    fn owns(&self, user: &str, id: &str) -> Result<bool, Failure> {
        match self.accounts.status(user) {
            Ok(AccountStatus::Live { floor }) => Ok(floor.is_none_or(|f| id > f.as_str())),
            Ok(_) => Ok(false),
            Err(e) => {
                tracing::error!("account lookup failed: {e}");
                Err(Failure::internal(
                    "the account could not be looked up; retry",
                ))
            }
        }
    }

    /// The current summary under `key`: this batch's version, else the stored one, else new.
    pub(super) fn summary(
        &self,
        batch: &Batch,
        key: &[u8],
        peer: &str,
    ) -> Result<Summary, Failure> {
        if let Some(s) = batch.summaries.get(key) {
            return Ok(s.clone());
        }
        let fresh = || Summary {
            peer: peer.to_string(),
            ..Summary::default()
        };
        match self.store.get(key).map_err(store_failure)? {
            None => Ok(fresh()),
            Some(bytes) => Ok(Summary::decode(&bytes).unwrap_or_else(|e| {
                // Rebuilding the summary loses only the unread count; refusing would block
                // the conversation for good.
                tracing::warn!("replacing unreadable conversation summary: {e}");
                fresh()
            })),
        }
    }
}

/// A store read failure, as the client sees it.
pub(super) fn store_failure(e: StoreError) -> Failure {
    tracing::error!("store read failed: {e}");
    Failure::internal("the store could not be read; retry")
}
