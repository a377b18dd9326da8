//! The committer: the single thread of a process that turns accepted sends, receipts and
//! group changes into message-log batches.
//!
//! It takes every job waiting in its channel (up to a batch limit), assigns ids in order,
//! stages each job as one unit of intents (`batch.rs`, `ports::log`), commits the batch (one
//! atomic, durable write), then hands the new messages and receipt events to the broker in id
//! order and answers all of them once the broker has them on their way. One committer per process means commit order == id
//! order, and one durable write for many jobs is what makes durable acks affordable. The files
//! beside it stage each kind of job: `direct_commit.rs` (1:1 sends), `receipt_commit.rs`,
//! `group_commit.rs`, `fanout_commit.rs` and `purge_commit.rs`.

use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::batch::{Batch, Staged};
use super::fanout::{Backlog, Fanout};
use super::group_ops::GroupOp;
use super::receipts::ReceiptDraft;
use super::stats::Counters;
use super::validate::{Draft, Target};
use crate::accounts::Accounts;
use crate::outbox::{Answers, Deliver};
use crate::ports::accounts::RecordError;
use crate::ports::log::{CidClaim, Claimant, MessageLog, UnitOutcome};
use chatd_wire::ids::IdGen;
use chatd_wire::reply::{self, Failure};

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
    pub log: Arc<dyn MessageLog>,
    /// Recipient existence checks.
    pub accounts: Accounts,
    /// Where new messages go after the commit.
    pub deliver: Arc<dyn Deliver>,
    /// Issues the message ids.
    pub ids: IdGen,
    /// Metrics.
    pub counters: Arc<Counters>,
    /// Most sends per batch.
    pub max_batch: usize,
    /// Whether to write a push job for each message queued for a user with no device online.
    pub push_jobs: bool,
    /// Most members of one group.
    pub max_members: usize,
    /// Most groups one user may belong to at once.
    pub max_groups_per_user: usize,
    /// Who this committer is when it claims fan-outs (unique per process).
    pub owner: String,
    /// How long its fan-out claims last without renewal.
    pub lease: Duration,
    /// With other writers on the store: how often an idle committer looks for fan-outs whose
    /// claim ran out (their writer died or stopped).
    pub takeover: Option<Duration>,
    /// When it looks next.
    pub next_takeover: Instant,
    /// Group messages and events still being queued for their recipients, oldest first.
    pub fanouts: VecDeque<Fanout>,
    /// Most recipients one batch queues a fan-out for.
    pub fanout_slice: usize,
    /// How many recipients the fan-outs still have to reach (read by the service).
    pub fanout_backlog: Arc<Backlog>,
    /// When a batch was last made durable.
    pub last_flush: Instant,
    /// Since when the storage is failing (see [`Committer::storage_failed`]); `None` while
    /// it works.
    pub failing_since: Option<Instant>,
    /// When to try the next recovery while the storage is failing.
    pub next_probe: Instant,
    /// Whether each 1:1 recipient of the batch being staged has an account, read for the
    /// whole batch at once (see [`Committer::look_up_recipients`]).
    pub recipients: HashMap<String, bool>,
}

/// How often a failing storage is tried again ([`MessageLog::recover`]), and how long an idle
/// committer waits before it asks whether the storage failed under someone else's write.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest a fan-out runs without a durable batch. Its slices need none to be correct: the
/// message and the fan-out record were durable with the send, and a slice lost in a crash is
/// written again from that record (a recipient who saw it live gets it once more, under the
/// same message id). But queue reads show only committed data, so an offline member who
/// connects meanwhile sees slices only once one is durable; and the last slice of a run is.
const FANOUT_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

impl Committer {
    /// Runs until every sender of the channel is gone and the channel is drained.
    ///
    /// While fan-outs are pending it does not wait for jobs: each batch then carries
    /// whatever jobs are waiting plus the next fan-out slice. When the channel closes,
    /// unfinished fan-outs stay in the store for the next start.
    pub fn run(mut self, rx: Receiver<Job>) {
        loop {
            self.take_over_fanouts();
            let first = if self.failing_since.is_some() {
                if Instant::now() >= self.next_probe {
                    self.probe();
                    continue;
                }
                match rx.recv_timeout(self.next_probe.saturating_duration_since(Instant::now())) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if self.fanouts.is_empty() {
                let wait = match self.takeover {
                    Some(_) => self
                        .next_takeover
                        .saturating_duration_since(Instant::now())
                        .min(PROBE_INTERVAL),
                    None => PROBE_INTERVAL,
                };
                match rx.recv_timeout(wait) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => {
                        // Another writer of the store (accounts, presence, media) may have
                        // met the failure: recover without waiting for a send to fail.
                        if self.log.failing() {
                            self.storage_failed();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
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
        // Deletes acknowledged after the last batch (a failing store takes none).
        if self.failing_since.is_none()
            && panic::catch_unwind(AssertUnwindSafe(|| self.commit(Vec::new()))).is_err()
        {
            tracing::error!("committer's last batch panicked");
        }
        tracing::debug!("committer stopped");
    }

    /// Commits one batch. A bug must not stop messaging for everyone: the batch's reply
    /// channels are dropped by the unwind, so its senders (and receipts) get `internal`, and
    /// the next batch runs.
    fn commit_guarded(&mut self, jobs: Vec<Job>) {
        if self.failing_since.is_some() {
            self.refuse(jobs);
            return;
        }
        if panic::catch_unwind(AssertUnwindSafe(|| self.commit(jobs))).is_err() {
            tracing::error!("committer batch panicked; its jobs were answered `internal`");
            // What the failed batch did to the fan-outs is unknown: start again from the store.
            self.reload_fanouts();
        }
    }

    /// The storage is failing: from now on every job is refused `unavailable` at once
    /// ([`Committer::refuse`]) and the log is tried again every [`PROBE_INTERVAL`]. The store
    /// logs the failure once and reports it to `/healthz`; the committer adds nothing per job.
    fn storage_failed(&mut self) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            self.next_probe = Instant::now() + PROBE_INTERVAL;
        }
    }

    /// Tries to make the failing log take durable commits again; on success the committer
    /// goes back to work, the pending fan-outs read again from the store (what the failed
    /// batches did to them is unknown).
    fn probe(&mut self) {
        // A panic in the adapter's recovery must not end the committer: it is a failed probe.
        let log = self.log.clone();
        let recovered = panic::catch_unwind(AssertUnwindSafe(|| log.recover()))
            .unwrap_or_else(|_| Err(RecordError::Store("the recovery panicked".into())));
        match recovered {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        "messaging resumes after {:.1} s of failing storage",
                        since.elapsed().as_secs_f64()
                    );
                }
                self.last_flush = Instant::now();
                self.reload_fanouts();
            }
            Err(e) => {
                tracing::debug!("storage still failing: {e}");
                self.next_probe = Instant::now() + PROBE_INTERVAL;
            }
        }
    }

    /// Answers `jobs` without touching the store: it is failing, and nothing may be reported
    /// as stored that was not flushed.
    fn refuse(&mut self, jobs: Vec<Job>) {
        let failure = storage_failing();
        for job in jobs {
            match job {
                Job::Send(job) => {
                    Counters::add(&self.counters.rejected, 1);
                    let _ = job
                        .reply
                        .send(reply::ack_err(Some(&job.draft.cid), &failure));
                }
                Job::Receipt(job) => {
                    let refused = job
                        .draft
                        .ids
                        .into_iter()
                        .map(|id| (id, failure.clone()))
                        .collect();
                    let _ = job.reply.send(refused);
                }
                Job::Group(job) => {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                Job::Purge(job) => {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                // The dequeues stay recorded for the first batch after the recovery.
                Job::Wake => {}
            }
        }
    }

    /// Reads whether the 1:1 recipients of `jobs` have accounts, all in one store call: with
    /// accounts in a database (a cluster), one round trip per batch instead of one per
    /// message. A failure leaves them to be looked up one by one (and fail there).
    fn look_up_recipients(&mut self, jobs: &[Job]) {
        self.recipients.clear();
        let mut users: Vec<String> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Send(send) => match &send.draft.target {
                    Target::User(to) => Some(to.clone()),
                    Target::Group(_) => None,
                },
                _ => None,
            })
            .collect();
        users.sort_unstable();
        users.dedup();
        if users.len() < 2 {
            return;
        }
        match self.accounts.exists_many(&users) {
            Ok(known) => self.recipients = known,
            Err(e) => tracing::debug!("recipients not looked up together: {e}"),
        }
    }

    /// With other writers on the store, and nothing of its own to fan out: claims the
    /// unfinished fan-outs whose claim ran out, every [`Committer::takeover`].
    fn take_over_fanouts(&mut self) {
        let Some(every) = self.takeover else {
            return;
        };
        if self.failing_since.is_some()
            || !self.fanouts.is_empty()
            || Instant::now() < self.next_takeover
        {
            return;
        }
        self.next_takeover = Instant::now() + every;
        self.reload_fanouts();
        if !self.fanouts.is_empty() {
            tracing::info!(
                "took over {} unfinished fan-outs whose claim ran out",
                self.fanouts.len()
            );
        }
    }

    /// Reads the fan-outs this committer may carry out from the store again (those it holds,
    /// and those nobody holds any more), claiming them.
    pub(super) fn reload_fanouts(&mut self) {
        match super::fanout::claim(self.log.as_ref(), &self.owner, self.lease) {
            Ok(fanouts) => self.fanouts = fanouts,
            Err(e) => tracing::error!("pending fan-outs not reloaded: {e}"),
        }
        self.count_fanouts();
    }

    pub(super) fn commit(&mut self, jobs: Vec<Job>) {
        self.look_up_recipients(&jobs);
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
                    match &staged {
                        Ok(Staged::New { ack, .. }) => batch.seal(Some(CidClaim {
                            user: job.from.clone(),
                            cid: job.draft.cid.clone(),
                            ack: ack.clone(),
                        })),
                        _ => batch.discard(),
                    }
                    sends.push((job.reply, job.draft.cid, staged));
                }
                Job::Receipt(job) => {
                    let refused = self.stage_receipt(&mut batch, &job.by, &job.draft);
                    batch.seal(None);
                    receipts.push((job.reply, job.draft.ids, refused));
                }
                Job::Group(job) => {
                    let result = self.stage_group(&mut batch, &job.by, job.op);
                    if result.is_err() {
                        batch.discard();
                    }
                    batch.seal(None);
                    group_jobs.push((job.reply, result));
                }
                Job::Purge(job) => {
                    let result = self.stage_purge(&mut batch, &job.user);
                    if result.is_err() {
                        batch.discard();
                    }
                    batch.seal(None);
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
        // The highest id issued by this batch, whatever it named: a message, a group event, a
        // queue entry or a receipt. Readers must see all of them, or a message whose batch
        // queued nothing (a group with no other member) would be acknowledged but not
        // readable. An id issued for a change that was refused names nothing; covering it is
        // harmless.
        let newest = self
            .ids
            .last_issued()
            .filter(|last| Some(last) != before.as_ref());
        let claimant = Claimant {
            owner: self.owner.clone(),
            lease: self.lease,
        };
        let log_batch = batch.take_log(newest, must_flush, claimant);
        let outcomes = self.log.commit(log_batch);
        // Why the batch's jobs are refused when it failed: `unavailable` when the storage is
        // failing (the store has logged it once), else `internal` with one line per batch.
        let durable = match &outcomes {
            Ok(_) => Ok(()),
            Err(_) if self.log.failing() => {
                self.storage_failed();
                Err(Some(storage_failing()))
            }
            Err(e) => {
                tracing::error!(
                    "batch of {} sends, {} receipts and {} group changes not stored: {e}",
                    sends.len(),
                    receipts.len(),
                    group_jobs.len()
                );
                Err(None)
            }
        };
        // The failure of a job of a batch that was not stored.
        let lost = |what: &str| match &durable {
            Err(Some(failing)) => failing.clone(),
            _ => Failure::internal(format!("the {what} could not be stored; retry")),
        };
        let outcomes = outcomes.unwrap_or_default();
        if durable.is_ok() {
            if must_flush {
                self.last_flush = Instant::now();
            }
            // Before anyone is answered, so that a sender who got its ack already sees the
            // fan-out backlog its message added.
            self.fanouts_written(&mut batch, &outcomes);
        }
        // Every answer waits until the batch's items are handed over (see the end).
        let mut answers: Vec<Answers> = Vec::with_capacity(sends.len() + receipts.len());
        for (reply, result) in purges {
            let answer = match &durable {
                Ok(()) => result,
                Err(_) => Err(lost("clean-up")),
            };
            answers.push(Box::new(move || {
                let _ = reply.send(answer);
            }));
        }
        for (reply, result) in group_jobs {
            let answer = match &durable {
                Ok(()) => result,
                Err(_) => Err(lost("change")),
            };
            answers.push(Box::new(move || {
                let _ = reply.send(answer);
            }));
        }
        Counters::add(&self.counters.batches, 1);
        let mut stored = batch.messages;
        for (reply, cid, staged) in sends {
            let answer = match (&durable, staged) {
                (Ok(()), Ok(Staged::New { unit, ack })) => match outcomes.get(unit) {
                    // The cid was remembered already (by an earlier batch, or by another
                    // writer): the first ack stands, and nothing of this unit was stored.
                    Some(UnitOutcome::Duplicate(first)) => {
                        Counters::add(&self.counters.duplicate_cids, 1);
                        stored = stored.saturating_sub(1);
                        first.clone()
                    }
                    _ => ack,
                },
                (Ok(()), Ok(Staged::Again { unit, ack })) => {
                    Counters::add(&self.counters.duplicate_cids, 1);
                    match outcomes.get(unit) {
                        Some(UnitOutcome::Duplicate(first)) => first.clone(),
                        _ => ack,
                    }
                }
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
                    reply::ack_err(Some(&cid), &lost("message"))
                }
            };
            // The sender may have gone away meanwhile; the message is stored regardless.
            answers.push(Box::new(move || {
                let _ = reply.send(answer);
            }));
        }
        for (reply, ids, refused) in receipts {
            let refused = match &durable {
                Ok(()) => refused,
                Err(_) => {
                    // Nothing of this batch may be relied on: every id is refused, each
                    // with its own reason where it had one.
                    let lost = lost("receipt");
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
            answers.push(Box::new(move || {
                let _ = reply.send(refused);
            }));
        }
        if durable.is_ok() {
            Counters::add(&self.counters.messages_stored, stored);
            Counters::add(&self.counters.receipts_stored, batch.receipts);
            for item in batch.delivered(&outcomes) {
                self.deliver.deliver(item);
            }
        }
        // Only once the items are on their way: a client that has its ack and sends again
        // (on any node) must not see its next message overtake this batch's anywhere. In a
        // cluster that is after the items' publish to the other nodes (`cluster::deliver`).
        self.deliver
            .answer(Box::new(move || answers.into_iter().for_each(|a| a())));
        // After the answers, so that no one waits for this batch's acks meanwhile.
        self.log.give_way();
    }
}

/// How a job is refused while the storage is failing.
fn storage_failing() -> Failure {
    Failure::unavailable("the server's storage is failing; retry later")
}

/// A store read failure, as the client sees it.
pub(super) fn store_failure(e: RecordError) -> Failure {
    super::rpc::read_failure(e)
}
