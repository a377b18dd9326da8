//! 1:1 messaging: the [`Chat`] service behind `chat/{me}/send`, `chat/{me}/receipt` and
//! `chat/{me}/rpc`, the per-user queue the broker delivers from, history and conversations.
//!
//! Sends and receipts are checked on the caller's task, then stored by one committer thread
//! in group commits (see `committer`); requests read the message log directly. Everything is
//! kept through the message-log port (`ports::log`): this module never sees how a store lays
//! it out.

mod batch;
mod committer;
mod conversation_list;
mod create_limit;
mod direct_commit;
mod fanout;
mod fanout_commit;
mod group_commit;
mod group_ops;
mod group_read;
mod history;
mod member_index;
mod member_rooms;
mod purge;
mod purge_commit;
mod receipt_commit;
mod receipts;
mod reply_budget;
mod rpc;
mod stats;
mod validate;

use std::collections::HashMap;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use chatd_wire::reply::ErrorCode;
pub use stats::ChatStats;

use chatd_wire::reply::{self, Failure};
use chatd_wire::request::{
    ops, Answer, AnswerFuture, Caller, Outcome, Request, RpcHandler, RpcRouter,
};
use committer::{Committer, GroupJob, Job, ReceiptJob, SendJob};
use stats::Counters;

use crate::accounts::Accounts;
use crate::media_gate::MediaGate;
use crate::outbox::{Channel, Deliver, Outgoing};
use crate::ports::accounts::RecordError;
use crate::ports::log::{MessageLog, QueueItemKind};
use chatd_wire::ids::{valid_message_id, IdGen};

/// Settings of the messaging service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatConfig {
    /// This server's node number, part of every message id so ids are unique across nodes.
    pub node_id: u16,
    /// Longest `text` in bytes; longer ones are refused with `too_large`.
    pub max_text_bytes: usize,
    /// Most sends written by one batch (one apply + one flush).
    pub max_batch: usize,
    /// Most members of one group (the creator included).
    pub max_group_members: usize,
    /// Write a push job (`j/…`) for every message queued for a user with no device online,
    /// for the push bridge to pick up; off when no push service is configured.
    pub push_jobs: bool,
    /// Most group recipients one batch queues a message for; the rest follow in later
    /// batches, so 1:1 traffic never waits for a whole big group.
    pub fanout_slice: usize,
    /// Most recipients pending fan-outs may still have to reach before new group messages
    /// are refused with `rate_limited`.
    pub max_fanout_backlog: usize,
    /// Most groups one user may belong to at once; adding a user to more is refused
    /// `too_large`.
    pub max_groups_per_user: usize,
    /// Groups one user may create per hour (also the burst); more are refused
    /// `rate_limited`. 0: no limit.
    pub groups_created_per_hour: u32,
    /// Most bytes of one request reply that lists things (`conversations`): a page stops
    /// before it would grow past this, so a reply stays well under the packet size limit.
    pub max_reply_bytes: usize,
    /// Set when other processes share the message log (a cluster): the lease of a fan-out
    /// claim, renewed by every slice, and how unfinished fan-outs of a writer that died or
    /// stopped are found — an idle committer looks for them every half lease. `None`: this
    /// process is the store's only writer; it claims what is left over once, at start.
    pub fanout_takeover: Option<std::time::Duration>,
}

impl Default for ChatConfig {
    fn default() -> ChatConfig {
        ChatConfig {
            node_id: 1,
            max_text_bytes: 16 * 1024,
            max_batch: 512,
            max_group_members: 1024,
            push_jobs: false,
            fanout_slice: 64,
            max_fanout_backlog: 256 * 1024,
            max_groups_per_user: 512,
            groups_created_per_hour: 60,
            max_reply_bytes: 512 * 1024,
            fanout_takeover: None,
        }
    }
}

/// Why the messaging service could not start or a broker-side call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The message log failed.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// The configuration cannot work.
    #[error("invalid messaging configuration: {0}")]
    Config(String),
    /// The clean-up after an account removal failed (it is retried at the next start).
    #[error("the removed account's data could not be cleaned up: {0}")]
    Purge(String),
    /// The committer thread could not be started.
    #[error("cannot start the committer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// How many sends may wait for the committer per batch slot before new ones are refused
/// with `rate_limited` (the queue then holds this many full batches).
const QUEUE_BATCHES: usize = 64;

/// The messaging service. Shared as `Arc<Chat>` between all sessions.
pub struct Chat {
    log: Arc<dyn MessageLog>,
    /// Account states (a reclaimed id's history floor, pending clean-ups).
    accounts: Accounts,
    cfg: ChatConfig,
    /// The committer's channel; `None` once closing has begun.
    tx: RwLock<Option<SyncSender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// Checks media references of sends; without one, media messages are refused.
    media: RwLock<Option<Arc<dyn MediaGate>>>,
    /// Recipients that pending group fan-outs still have to reach.
    fanout_backlog: Arc<fanout::Backlog>,
    /// Group creations left per user.
    create_limit: create_limit::CreateLimit,
}

impl Chat {
    /// Starts the service on `log`: ids continue after the newest one the log holds, the
    /// unfinished fan-outs are claimed, clean-ups a crash interrupted are finished, and the
    /// committer thread starts.
    pub fn open(
        log: Arc<dyn MessageLog>,
        accounts: Accounts,
        cfg: ChatConfig,
        deliver: Arc<dyn Deliver>,
    ) -> Result<Arc<Chat>, ChatError> {
        if cfg.max_batch == 0 {
            return Err(ChatError::Config("max_batch must be at least 1".into()));
        }
        if cfg.max_group_members < 2 {
            return Err(ChatError::Config(
                "max_group_members must be at least 2".into(),
            ));
        }
        if cfg.fanout_slice == 0 {
            return Err(ChatError::Config("fanout_slice must be at least 1".into()));
        }
        if cfg.max_text_bytes == 0 {
            return Err(ChatError::Config(
                "max_text_bytes must be at least 1".into(),
            ));
        }
        if cfg.max_groups_per_user == 0 {
            return Err(ChatError::Config(
                "max_groups_per_user must be at least 1".into(),
            ));
        }
        let mut ids = IdGen::new(cfg.node_id);
        if let Some(id) = log.newest_id()? {
            ids.observe(&id);
        }
        let counters = Arc::new(Counters::default());
        // Unique per process, so that claims of two processes on one store never mix.
        let owner = format!("chatd-{}-{}", cfg.node_id, std::process::id());
        let lease = cfg.fanout_takeover.unwrap_or(fanout::FANOUT_LEASE);
        let fanouts = fanout::claim(log.as_ref(), &owner, lease)?;
        let fanout_backlog = Arc::new(fanout::Backlog::default());
        let mut committer = Committer {
            log: log.clone(),
            accounts: accounts.clone(),
            deliver,
            ids,
            counters: counters.clone(),
            max_batch: cfg.max_batch,
            push_jobs: cfg.push_jobs,
            max_members: cfg.max_group_members,
            max_groups_per_user: cfg.max_groups_per_user,
            owner,
            lease,
            takeover: cfg.fanout_takeover.map(|lease| lease / 2),
            next_takeover: std::time::Instant::now(),
            fanouts,
            fanout_slice: cfg.fanout_slice,
            fanout_backlog: fanout_backlog.clone(),
            last_flush: std::time::Instant::now(),
            failing_since: None,
            next_probe: std::time::Instant::now(),
            recipients: HashMap::new(),
        };
        committer.count_fanouts();
        purge_commit::resume(&mut committer)?;
        let (tx, rx) = mpsc::sync_channel(cfg.max_batch.saturating_mul(QUEUE_BATCHES));
        let worker = thread::Builder::new()
            .name("chatd-committer".into())
            .spawn(move || committer.run(rx))
            .map_err(ChatError::Spawn)?;
        Ok(Arc::new(Chat {
            log,
            accounts,
            tx: RwLock::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            counters,
            media: RwLock::new(None),
            fanout_backlog,
            create_limit: create_limit::CreateLimit::new(cfg.groups_created_per_hour),
            cfg,
        }))
    }

    /// Handles one publish on `chat/{from}/send` and returns the JSON for `user/{from}/ack`.
    ///
    /// A success is returned only after the message is durably stored; a repeated `cid`
    /// returns the first ack unchanged and stores nothing.
    pub async fn send(&self, from: &str, payload: &[u8]) -> Bytes {
        self.send_as(from, None, payload).await
    }

    /// [`Chat::send`] from a known device (client id): the sender's other devices get a
    /// copy of a group message, this one does not.
    pub async fn send_as(&self, from: &str, device: Option<&str>, payload: &[u8]) -> Bytes {
        let draft = match validate::parse_send(payload, self.cfg.max_text_bytes) {
            Ok(draft) => draft,
            Err(rejected) => {
                Counters::add(&self.counters.rejected, 1);
                return reply::ack_err(rejected.cid.as_deref(), &rejected.failure);
            }
        };
        let cid = draft.cid.clone();
        if matches!(draft.target, validate::Target::Group(_))
            && self.fanout_backlog.get() > self.cfg.max_fanout_backlog
        {
            Counters::add(&self.counters.rejected, 1);
            return reply::ack_err(
                Some(&cid),
                &Failure::new(
                    ErrorCode::RateLimited,
                    "group messages are still being delivered; retry shortly",
                ),
            );
        }
        if let Some(media) = &draft.media {
            let gate = self.media.read().unwrap_or_else(|p| p.into_inner()).clone();
            let checked = match gate {
                Some(gate) => gate.check_message(from, media, &draft.kind).await,
                None => Err(Failure::bad(
                    "media messages are not accepted: this server has no media service",
                )),
            };
            if let Err(failure) = checked {
                Counters::add(&self.counters.rejected, 1);
                return reply::ack_err(Some(&cid), &failure);
            }
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = Job::Send(SendJob {
            from: from.to_string(),
            device: device.map(str::to_string),
            draft,
            reply: reply_tx,
        });
        let answer = match self.enqueue(job) {
            Ok(()) => reply_rx
                .await
                .map_err(|_| Failure::internal("the message could not be stored; retry")),
            Err(failure) => Err(failure),
        };
        answer.unwrap_or_else(|failure| {
            Counters::add(&self.counters.rejected, 1);
            reply::ack_err(Some(&cid), &failure)
        })
    }

    /// Installs the media service's check for media messages (see [`MediaGate`]).
    pub fn set_media_gate(&self, gate: Arc<dyn MediaGate>) {
        *self.media.write().unwrap_or_else(|p| p.into_inner()) = Some(gate);
    }

    /// Handles one publish on `chat/{me}/receipt`
    /// (`{"ids":["…",…],"status":"delivered"|"read"}`, 1 to 100 ids).
    ///
    /// Returns `None` when every id was accepted, else the JSON to publish on `user/{me}/ack`:
    /// `{"receipt":["…",…],"error":{"code":…,"message":…}}` naming only the refused ids
    /// (`bad_request` refuses the whole publish; `not_found` for unknown ids, `forbidden` for
    /// messages `me` did not receive; with several reasons the code is the first refused id's
    /// and the message names each id's reason). The accepted ids are stored as one committer
    /// job, durably, before their status changes are handed to [`Deliver`] as
    /// `user/{author}/receipt` items with a queue id. A status that does not move forward
    /// (sent → delivered → read) is accepted and changes and forwards nothing.
    pub async fn receipt(&self, me: &str, payload: &[u8]) -> Option<Bytes> {
        let draft = match receipts::parse_receipt(payload) {
            Ok(draft) => draft,
            Err(bad) => {
                Counters::add(&self.counters.receipts_refused, bad.ids.len().max(1) as u64);
                return Some(reply::receipt_err(&bad.ids, &bad.failure));
            }
        };
        let ids = draft.ids.clone();
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = Job::Receipt(ReceiptJob {
            by: me.to_string(),
            draft,
            reply: reply_tx,
        });
        let refused = match self.enqueue(job) {
            Ok(()) => reply_rx
                .await
                .map_err(|_| Failure::internal("the receipt could not be stored; retry")),
            Err(failure) => Err(failure),
        };
        let refused = refused
            .unwrap_or_else(|failure| ids.into_iter().map(|id| (id, failure.clone())).collect());
        if refused.is_empty() {
            return None;
        }
        Counters::add(&self.counters.receipts_refused, refused.len() as u64);
        Some(reply::receipt_refusal(&refused))
    }

    /// Hands a job to the committer without waiting: refused with `rate_limited` when its
    /// channel is full, and `internal` once closing has begun.
    fn enqueue(&self, job: Job) -> Result<(), Failure> {
        let guard = self.tx.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None => Err(shutting_down()),
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => Failure::new(
                    ErrorCode::RateLimited,
                    "the server is busy storing messages; retry shortly",
                ),
                TrySendError::Disconnected(_) => shutting_down(),
            }),
        }
    }

    /// The reply to a payload on `chat/{me}/rpc` from a router that runs messaging alone (for
    /// tests and tools; the broker routes every request through its own router).
    pub async fn rpc(self: &Arc<Self>, me: &str, payload: &[u8]) -> Bytes {
        let mut router = RpcRouter::new();
        if let Err(e) = router.register(self.clone()) {
            return reply::rpc_err(None, &Failure::internal(e.to_string()));
        }
        let caller = Caller {
            user: me,
            client_id: me,
        };
        router.answer(caller, payload).await
    }

    /// Answers one request of `me` whose op is one of `ops::CHAT`: group changes go through
    /// the committer, reads are answered from the committed store.
    pub async fn request(&self, me: &str, request: &Request) -> Outcome {
        let Some(op) = group_ops::parse(&request.op, &request.obj, me, self.cfg.max_group_members)?
        else {
            return rpc::answer(
                self.log.as_ref(),
                &self.accounts,
                me,
                request,
                self.cfg.max_reply_bytes,
            );
        };
        let creates = matches!(op, group_ops::GroupOp::Create { .. });
        if creates {
            if let Err(wait) = self.create_limit.take(me) {
                return Err(Failure::new(
                    ErrorCode::RateLimited,
                    format!(
                        "you may create at most {} groups per hour; retry in {} s",
                        self.cfg.groups_created_per_hour,
                        wait.as_secs().max(1)
                    ),
                ));
            }
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = Job::Group(GroupJob {
            by: me.to_string(),
            op,
            reply: reply_tx,
        });
        let result = match self.enqueue(job) {
            Ok(()) => reply_rx.await.unwrap_or_else(|_| {
                Err(Failure::internal("the change could not be stored; retry"))
            }),
            Err(failure) => Err(failure),
        };
        if creates && result.is_err() {
            // Nothing was created: the attempt does not count.
            self.create_limit.give_back(me);
        }
        Answer::of(&result?)
    }

    /// The current members of `group`, or `None` when it does not exist or is closed (for
    /// group typing indicators).
    pub fn group_members(&self, group: &str) -> Result<Option<Vec<String>>, ChatError> {
        Ok(group_read::members(self.log.as_ref(), group)?)
    }

    /// Up to `limit` queued items of `user` with queue id > `after`, in queue id order, only
    /// committed ones: what a device gets when it subscribes. Two kinds are interleaved:
    /// messages (topic `user/{user}/inbox`, queue id = message id) and receipt events for
    /// messages `user` sent (topic `user/{user}/receipt`, queue id = a fresh id from the same
    /// generator). Both leave the queue through [`Chat::acked`].
    pub fn backlog(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Outgoing>, ChatError> {
        if limit == 0 || chatd_auth::validate_user_id(user).is_err() {
            return Ok(Vec::new());
        }
        let items = self.log.queue(user, after, limit)?;
        Ok(items
            .into_iter()
            .map(|item| {
                let (channel, payload) = match item.kind {
                    QueueItemKind::Message(payload) => (Channel::Inbox, payload),
                    QueueItemKind::Receipt(payload) => (Channel::Receipt, payload),
                };
                Outgoing {
                    user: user.to_string(),
                    channel,
                    payload,
                    queue_id: Some(item.qid),
                    skip_client: None,
                }
            })
            .collect())
    }

    /// A device of `user` acknowledged queue item `id` (a message or a receipt event): it
    /// leaves the queue. The committer deletes it with its next batch, and queue reads skip it
    /// until then (the caller never waits for the store). Not flushed: losing this in a crash
    /// only causes a redelivery, which clients de-duplicate.
    pub fn acked(&self, user: &str, id: &str) -> Result<(), ChatError> {
        if chatd_auth::validate_user_id(user).is_err() || !valid_message_id(id) {
            return Ok(());
        }
        let wake = self.log.dequeue(user, id)?;
        let handed_over = {
            let guard = self.tx.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                // Full: the committer is busy and takes the dequeue with its next batch.
                Some(tx) if wake => {
                    !matches!(tx.try_send(Job::Wake), Err(TrySendError::Disconnected(_)))
                }
                // Not the first one waiting: the committer has been woken already.
                Some(_) => true,
                None => false,
            }
        };
        if !handed_over {
            // Closing: no committer to hand it to; an empty batch carries it out.
            self.log.commit(Default::default())?;
        }
        Ok(())
    }

    /// Stops taking sends and receipts (later ones are answered `internal` "server is
    /// shutting down"), lets the committer finish every job already accepted, and flushes the store.
    /// Blocks until done; calling it again does nothing more.
    pub fn close(&self) {
        drop(self.tx.write().unwrap_or_else(|p| p.into_inner()).take());
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            if worker.thread().id() == thread::current().id() {
                // Dropped from inside a delivery: the thread ends by itself once it returns.
                return;
            }
            if worker.join().is_err() {
                tracing::error!("committer thread ended with a panic");
            }
            if let Err(e) = self.log.flush() {
                tracing::error!("final flush failed: {e}");
            }
        }
    }

    /// The counters for `/metrics`.
    pub fn stats(&self) -> ChatStats {
        self.counters.snapshot()
    }
}

impl RpcHandler for Chat {
    fn ops(&self) -> &'static [&'static str] {
        ops::CHAT
    }

    fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
        Box::pin(self.request(caller.user, request))
    }
}

impl Drop for Chat {
    /// Dropping the service finishes accepted sends too, and releases the committer's hold
    /// on the store so it can be reopened.
    fn drop(&mut self) {
        self.close();
    }
}

fn shutting_down() -> Failure {
    Failure::internal("server is shutting down")
}
