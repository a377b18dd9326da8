//! The committer: the single thread that turns accepted sends into stored messages.
//!
//! It takes every send waiting in its channel (up to a batch limit), assigns ids in order,
//! writes one atomic batch and flushes once, then answers all of them and hands the new
//! messages to the broker in id order. One writer means commit order == id order, and one
//! flush for many sends is what makes durable acks affordable.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::records::{Message, Summary};
use super::reply::{self, ErrorCode, Failure};
use super::stats::Counters;
use super::validate::Draft;
use super::watermark::Watermark;
use crate::accounts::Accounts;
use crate::ids::IdGen;
use crate::keys;
use crate::outbox::{Deliver, Outgoing};
use crate::store::{KvStore, Op, StoreError};

/// One accepted send waiting for the committer.
pub struct Job {
    /// The authenticated sender.
    pub from: String,
    /// The checked message.
    pub draft: Draft,
    /// Where the ack goes once the batch is durable.
    pub reply: oneshot::Sender<Bytes>,
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
}

/// How one send of a batch came out before the batch is written.
enum Staged {
    /// A new message; the ack to give once durable.
    New(Bytes),
    /// A cid seen before; the first ack, given unchanged.
    Duplicate(Bytes),
}

/// Everything one batch writes, accumulated across its sends.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    /// Acks by `k/…` key for cids first used in this batch (or already looked up).
    acks: HashMap<Vec<u8>, Bytes>,
    /// Conversation summaries touched by this batch, with every change applied.
    summaries: HashMap<Vec<u8>, Summary>,
    /// New messages, in id order.
    fresh: Vec<Outgoing>,
}

impl Committer {
    /// Runs until every sender of the channel is gone and the channel is drained.
    pub fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            // A bug must not stop messaging for everyone: the batch's reply channels are
            // dropped by the unwind, so its senders get `internal`, and the next batch runs.
            if panic::catch_unwind(AssertUnwindSafe(|| self.commit(jobs))).is_err() {
                tracing::error!("committer batch panicked; its sends were answered `internal`");
            }
        }
        tracing::debug!("committer stopped");
    }

    fn commit(&mut self, jobs: Vec<Job>) {
        let mut batch = Batch::default();
        let mut pending = Vec::with_capacity(jobs.len());
        for job in jobs {
            let staged = self.stage(&mut batch, &job.from, &job.draft);
            pending.push((job.reply, job.draft.cid, staged));
        }
        let newest = batch.fresh.last().and_then(|o| o.queue_id.clone());
        let mut ops = std::mem::take(&mut batch.ops);
        for (key, summary) in &batch.summaries {
            match serde_json::to_vec(summary) {
                Ok(value) => ops.push(Op::Put(key.clone(), value)),
                Err(e) => tracing::error!("conversation summary not encoded: {e}"),
            }
        }
        let durable = self.write(ops, newest);
        if let Err(e) = &durable {
            tracing::error!("batch of {} sends not stored: {e}", pending.len());
        }
        Counters::add(&self.counters.batches, 1);
        for (reply, cid, staged) in pending {
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
        if durable.is_ok() {
            Counters::add(&self.counters.messages_stored, batch.fresh.len() as u64);
            for item in batch.fresh {
                self.deliver.deliver(item);
            }
        }
    }

    /// Applies the batch and flushes; raises the watermark once both succeeded.
    fn write(&mut self, ops: Vec<Op>, newest: Option<String>) -> Result<(), StoreError> {
        if !ops.is_empty() {
            self.store.apply(ops)?;
            if let Some(id) = newest {
                self.applied = id;
            }
        }
        // Flush even for a batch of retries only: their stored acks may come from a batch
        // whose flush failed, and must not be repeated before they are durable.
        self.store.flush()?;
        self.watermark.advance(&self.applied);
        Ok(())
    }

    /// Decides what one send does and adds its writes to the batch.
    fn stage(&mut self, batch: &mut Batch, from: &str, draft: &Draft) -> Result<Staged, Failure> {
        let cid_key = keys::cid(from, &draft.cid);
        if let Some(ack) = batch.acks.get(&cid_key) {
            return Ok(Staged::Duplicate(ack.clone()));
        }
        if let Some(ack) = self.store.get(&cid_key).map_err(store_failure)? {
            let ack = Bytes::from(ack);
            batch.acks.insert(cid_key, ack.clone());
            return Ok(Staged::Duplicate(ack));
        }
        let to = draft.to.as_str();
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
        let message = Message {
            id: id.clone(),
            from: from.to_string(),
            to: to.to_string(),
            kind: "text".to_string(),
            text: Some(draft.text.clone()),
            reply_to: draft.reply_to.clone(),
            ts,
            status: None,
        };
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
            topic: format!("user/{to}/inbox"),
            payload: Bytes::from(payload),
            queue_id: Some(id),
        });
        Ok(Staged::New(ack))
    }

    /// The current summary under `key`: this batch's version, else the stored one, else new.
    fn summary(&self, batch: &Batch, key: &[u8], peer: &str) -> Result<Summary, Failure> {
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
fn store_failure(e: StoreError) -> Failure {
    tracing::error!("store read failed: {e}");
    Failure::internal("the store could not be read; retry")
}
