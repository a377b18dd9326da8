//! The worker: finds due job groups, sends their notifications with bounded concurrency and
//! retries, and deletes the jobs it handled.
//!
//! * **When.** A (user, conversation) group is due once its oldest job is older than the
//!   collapse window. The worker claims due groups from the store ([`PushJobs::claim`], with a
//!   lease, so that no other worker sharing the store sends them too) on start-up (jobs left by
//!   a previous run), whenever it is woken ([`PushBridge::wake`], called by the broker when a
//!   message is queued for a user with no session), at the next due time, and every
//!   `scan_interval` as a safety net.
//! * **Whether.** A user who is online when the group is due, or who received every message of
//!   it meanwhile (no longer in the queue under the id its job names), gets nothing; a user without tokens
//!   gets nothing. Either way the jobs are deleted.
//! * **How.** One notification per token of the user; at most `concurrency` requests in flight
//!   (a semaphore held only for the request, not while waiting to retry); retries with
//!   exponential backoff that honours `Retry-After`; invalid tokens deleted.
//! * **Shutdown.** Waits up to `shutdown_grace` for requests in flight; groups interrupted while
//!   waiting to retry keep their jobs (their claim is released), so the next start sends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::{PushJobs, PushTokens};
use chatd_wire::ids::now_ms;
use chatd_wire::reply::Failure;
use chatd_wire::request::{ops, AnswerFuture, Caller, Request, RpcHandler};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::adapter::{Outcome, PushAdapter};
use crate::config::BridgeSettings;
use crate::jobs::JobGroup;
use crate::payload::Notification;
use crate::retry;
use crate::rpc;
use crate::stats::{Counters, PushStats};
use crate::tokens::{DeviceToken, Platform, Tokens};

/// Added to the longest retry waits of a group to bound how long handling it can take: the
/// claim's lease, after which another worker may take the group.
const LEASE_SLACK: Duration = Duration::from_secs(600);

/// Whether a user has a device connected right now; the broker answers from its session hub.
pub trait OnlineCheck: Send + Sync + 'static {
    /// True while at least one device of `user` is connected. Must not block.
    fn is_online(&self, user: &str) -> bool;
}

/// The configured services, one adapter per platform.
#[derive(Clone, Default)]
pub struct Adapters {
    /// Firebase Cloud Messaging, when configured.
    pub fcm: Option<Arc<dyn PushAdapter>>,
    /// Apple Push Notification service, when configured.
    pub apns: Option<Arc<dyn PushAdapter>>,
}

impl Adapters {
    /// The adapter for `platform`, if configured.
    pub fn get(&self, platform: Platform) -> Option<&Arc<dyn PushAdapter>> {
        match platform {
            Platform::Fcm => self.fcm.as_ref(),
            Platform::Apns => self.apns.as_ref(),
        }
    }

    /// The platforms that have an adapter (tokens of others are refused at registration).
    pub fn platforms(&self) -> Vec<Platform> {
        [Platform::Fcm, Platform::Apns]
            .into_iter()
            .filter(|p| self.get(*p).is_some())
            .collect()
    }
}

struct Inner {
    jobs: Arc<dyn PushJobs>,
    /// Who this worker is to the store's claims.
    owner: String,
    /// How long a claim holds its group.
    lease: Duration,
    settings: BridgeSettings,
    adapters: Adapters,
    online: Arc<dyn OnlineCheck>,
    tokens: Tokens,
    counters: Counters,
    wake: Notify,
    stop: CancellationToken,
    permits: Semaphore,
}

/// The running bridge. Dropping it stops the worker (without the grace of
/// [`PushBridge::shutdown`]).
pub struct PushBridge {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// What became of one group.
enum GroupEnd {
    /// Handled: its jobs can go.
    Done,
    /// Stopped by shutdown before it was finished: its jobs stay for the next start.
    Interrupted,
}

/// What one scan found.
struct Pass {
    /// The earliest time a group not yet due becomes due (ms since the epoch).
    next_due: Option<u64>,
    /// Due work was left for later (its group was busy, or too many groups were in flight).
    deferred: bool,
}

impl PushBridge {
    /// Starts the worker on the current Tokio runtime, claiming `jobs` and sending to the
    /// `tokens` users register. Its first claim picks up the jobs a previous run left.
    pub fn start(
        jobs: Arc<dyn PushJobs>,
        tokens: Arc<dyn PushTokens>,
        settings: BridgeSettings,
        adapters: Adapters,
        online: Arc<dyn OnlineCheck>,
    ) -> Arc<PushBridge> {
        let tokens = Tokens::new(tokens, adapters.platforms());
        let inner = Arc::new(Inner {
            permits: Semaphore::new(settings.concurrency.max(1)),
            jobs,
            owner: format!("push-bridge-{}-{}", std::process::id(), now_ms()),
            lease: lease(&settings),
            settings,
            adapters,
            online,
            tokens,
            counters: Counters::default(),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        let worker = tokio::spawn(run(inner.clone()));
        Arc::new(PushBridge {
            inner,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Asks for a scan now: a job may have been written (cheap; wakes coalesce).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The counters.
    pub fn stats(&self) -> PushStats {
        self.inner.counters.snapshot()
    }

    /// The token store.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// Stops the worker: no new groups start; requests in flight get `shutdown_grace` to end;
    /// anything unfinished keeps its jobs for the next start.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            if let Err(e) = worker.await {
                warn!("push worker ended abnormally: {e}");
            }
        }
    }
}

/// `push.register` and `push.unregister` for the device the request came from.
impl RpcHandler for PushBridge {
    fn ops(&self) -> &'static [&'static str] {
        ops::PUSH
    }

    fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
        // A token belongs to the device named in the client id (`{user}:{device}`).
        let device = caller
            .client_id
            .split_once(':')
            .map(|(_, device)| device.to_string());
        let user = caller.user.to_string();
        let inner = self.inner.clone();
        // The token store blocks (it flushes): the blocking pool gets its own copy of the
        // request, which is small.
        let request = request.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                rpc::answer(&inner.tokens, &user, device.as_deref(), &request)
            })
            .await
            .unwrap_or_else(|e| {
                warn!("push rpc task failed: {e}");
                Err(Failure::internal(
                    "the request could not be answered; retry",
                ))
            })
        })
    }
}

impl Drop for PushBridge {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

/// How long a claim holds its group: longer than handling it can take (every retry waiting
/// the longest, plus slack for the requests themselves).
fn lease(settings: &BridgeSettings) -> Duration {
    settings
        .retry_max
        .saturating_mul(settings.max_retries.saturating_add(1))
        .saturating_add(settings.shutdown_grace)
        .saturating_add(LEASE_SLACK)
}

/// Most groups handled at once: enough to keep `concurrency` requests busy while others wait
/// to retry, few enough to bound memory after a long outage.
fn max_groups(concurrency: usize) -> usize {
    concurrency.saturating_mul(64).clamp(1024, 65_536)
}

async fn run(inner: Arc<Inner>) {
    // Groups in flight; new jobs of one of them wait in the store until it is done (the store
    // does not hand out a group while its claim is held, and says so with `deferred`).
    let mut busy: HashMap<(String, String), JobGroup> = HashMap::new();
    let mut tasks: JoinSet<((String, String), GroupEnd)> = JoinSet::new();
    let cap = max_groups(inner.settings.concurrency);
    let min_gap = (inner.settings.collapse_window / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    'scan: while !inner.stop.is_cancelled() {
        let pass = match inner.pass(&mut busy, &mut tasks, cap) {
            Ok(pass) => pass,
            Err(e) => {
                warn!("cannot claim push jobs: {e}");
                Pass {
                    next_due: None,
                    deferred: false,
                }
            }
        };
        let scanned = Instant::now();
        let mut wake_at = scanned + inner.settings.scan_interval;
        if let Some(due) = pass.next_due {
            let wait = Duration::from_millis(due.saturating_sub(now_ms()));
            wake_at = wake_at.min(scanned + wait);
        }
        loop {
            tokio::select! {
                _ = inner.stop.cancelled() => break 'scan,
                // A wake only needs the new job's due time known well before it is due: under
                // a stream of messages to offline users, scans stay `min_gap` apart.
                _ = inner.wake.notified() => wake_at = wake_at.min(scanned + min_gap),
                _ = sleep_until(wake_at) => continue 'scan,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((key, _)) = done {
                        busy.remove(&key);
                    }
                    // Refill in halves rather than rescanning after every group.
                    if pass.deferred && busy.len() <= cap / 2 {
                        continue 'scan;
                    }
                }
            }
        }
    }
    let grace = inner.settings.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            "{} push groups still running after {grace:?}; their jobs stay for the next start",
            tasks.len()
        );
        tasks.abort_all();
    }
    // Claims of groups cut short here go back to the store (a finished group's claim is gone
    // already, so releasing it again changes nothing).
    for group in busy.values() {
        inner.jobs.release(&inner.owner, group);
    }
    debug!("push worker stopped");
}

impl Inner {
    /// One claim: starts every due group the store hands out (up to `cap` in flight).
    fn pass(
        self: &Arc<Self>,
        busy: &mut HashMap<(String, String), JobGroup>,
        tasks: &mut JoinSet<((String, String), GroupEnd)>,
        cap: usize,
    ) -> Result<Pass, RecordError> {
        let limit = cap.saturating_sub(busy.len());
        let claim = self.jobs.claim(
            &self.owner,
            self.lease,
            self.settings.collapse_window,
            limit,
        )?;
        let mut pass = Pass {
            next_due: claim.next_due,
            deferred: claim.deferred,
        };
        for group in claim.groups {
            let key = group.key();
            if busy.contains_key(&key) {
                // Its earlier claim ran out while it is still being handled: this claim ends
                // with that one, and what is new waits for the next pass.
                pass.deferred = true;
                continue;
            }
            busy.insert(key.clone(), group.clone());
            let inner = self.clone();
            tasks.spawn(async move {
                let end = inner.handle(group).await;
                (key, end)
            });
        }
        Ok(pass)
    }

    /// Pushes one group and finishes its jobs (deleted) unless interrupted or the store failed
    /// (then the claim is released and the next pass tries again).
    async fn handle(self: Arc<Self>, group: JobGroup) -> GroupEnd {
        match self.clone().push_group(&group).await {
            Ok(GroupEnd::Done) => {
                if let Err(e) = self.jobs.finish(&self.owner, &group) {
                    warn!(user = %group.user, "cannot delete push jobs: {e}");
                }
                GroupEnd::Done
            }
            Ok(GroupEnd::Interrupted) => {
                self.jobs.release(&self.owner, &group);
                GroupEnd::Interrupted
            }
            Err(e) => {
                warn!(user = %group.user, "push jobs not handled, will retry: {e}");
                self.jobs.release(&self.owner, &group);
                GroupEnd::Interrupted
            }
        }
    }

    async fn push_group(self: Arc<Self>, group: &JobGroup) -> Result<GroupEnd, RecordError> {
        let user = group.user.as_str();
        if self.online.is_online(user) {
            debug!(user, "online: push skipped");
            Counters::inc(&self.counters.skipped);
            return Ok(GroupEnd::Done);
        }
        let mut pending = Vec::with_capacity(group.ids.len());
        for (id, queued) in group.ids.iter().zip(&group.queued) {
            if self.jobs.still_queued(user, queued)? {
                pending.push(id.clone());
            }
        }
        if pending.is_empty() {
            debug!(user, "messages already delivered: push skipped");
            Counters::inc(&self.counters.skipped);
            return Ok(GroupEnd::Done);
        }
        let tokens = self.tokens.list(user)?;
        if tokens.is_empty() {
            return Ok(GroupEnd::Done);
        }
        let notification = Arc::new(Notification::load(
            self.jobs.as_ref(),
            user,
            &group.conversation,
            &pending,
            self.settings.previews,
        )?);
        let mut sends = JoinSet::new();
        for token in tokens {
            sends.spawn(self.clone().deliver(token, notification.clone()));
        }
        let mut end = GroupEnd::Done;
        while let Some(result) = sends.join_next().await {
            match result {
                Ok(GroupEnd::Done) => {}
                Ok(GroupEnd::Interrupted) | Err(_) => end = GroupEnd::Interrupted,
            }
        }
        Ok(end)
    }

    /// Sends one notification to one token, retrying as the service allows.
    async fn deliver(self: Arc<Self>, token: DeviceToken, n: Arc<Notification>) -> GroupEnd {
        let user = n.user.as_str();
        let short = short(&token.token);
        let Some(adapter) = self.adapters.get(token.record.platform) else {
            debug!(
                user,
                token = short,
                "no adapter for {}: dropped",
                token.record.platform.name()
            );
            Counters::inc(&self.counters.dropped);
            return GroupEnd::Done;
        };
        let mut retries = 0;
        loop {
            let outcome = {
                let permit = tokio::select! {
                    p = self.permits.acquire() => p,
                    _ = self.stop.cancelled() => return GroupEnd::Interrupted,
                };
                let Ok(_permit) = permit else {
                    return GroupEnd::Interrupted;
                };
                adapter.send(&token.token, &n).await
            };
            match outcome {
                Outcome::Sent => {
                    Counters::inc(&self.counters.sent);
                    return GroupEnd::Done;
                }
                Outcome::TokenInvalid { reason } => {
                    match self.tokens.remove_invalid(user, &token) {
                        Ok(true) => {
                            Counters::inc(&self.counters.tokens_deleted);
                            info!(user, token = short, "push token deleted: {reason}");
                        }
                        Ok(false) => {}
                        Err(e) => warn!(user, token = short, "cannot delete push token: {e}"),
                    }
                    // Counted last, so whoever sees the failure also sees the deletion.
                    Counters::inc(&self.counters.failed);
                    return GroupEnd::Done;
                }
                Outcome::Failed { reason } => {
                    Counters::inc(&self.counters.failed);
                    warn!(
                        user,
                        token = short,
                        "{} push failed: {reason}",
                        adapter.name()
                    );
                    return GroupEnd::Done;
                }
                Outcome::Retry { after, reason } => {
                    if retries >= self.settings.max_retries {
                        Counters::inc(&self.counters.dropped);
                        warn!(
                            user,
                            token = short,
                            "{} push dropped after {retries} retries: {reason}",
                            adapter.name()
                        );
                        return GroupEnd::Done;
                    }
                    retries += 1;
                    Counters::inc(&self.counters.retried);
                    let s = &self.settings;
                    let wait = retry::delay(retries, s.retry_base, s.retry_max, after);
                    debug!(user, token = short, "retry {retries} in {wait:?}: {reason}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => return GroupEnd::Interrupted,
                    }
                    if self.online.is_online(user) {
                        debug!(user, "came online while a push waited to retry");
                        return GroupEnd::Done;
                    }
                }
            }
        }
    }
}

/// The start of a token, enough to tell tokens apart in a log without printing them whole.
fn short(token: &str) -> &str {
    token.get(..8).unwrap_or(token)
}
