//! Persistent MQTT sessions: what a client that connects with CleanSession 0 (3.1.1), or
//! with Clean Start 0 and a Session Expiry Interval (5.0), finds again when it reconnects —
//! its subscriptions, and the QoS 1 PUBLISHes it had not acknowledged (see [`state`]).
//!
//! The messages that arrive while it is away need nothing of the session: they wait in the
//! user's queue, which every device of the user reads. So a kept session is small, and it is
//! written only when it changes (a SUBSCRIBE or UNSUBSCRIBE, the end of a connection), never
//! per message.
//!
//! The [`Keeper`] holds an index of the kept sessions (client id → user, end, expiry), so that
//! limits and expiry cost no store reads; the store is the truth, read when a session is
//! resumed. Writes go through one writer task in order, newest per client id; a read first
//! looks at the writes not carried out yet, so it never sees an older state than was saved.
//! Wills with a delay (5.0 Will Delay Interval) wait here too: cancelled when the session is
//! resumed in time, sent when the delay passes or the session ends, whichever comes first.

pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatd_core::ports::sessions::{SessionStore, StoredSession};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::hub::Hub;

use self::state::KeptState;

/// How long a new connection waits for the one it takes over to save its session.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// How often expired sessions and due wills are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A will to send later: what the session runs to send it.
pub type WillFn = Box<dyn FnOnce() + Send>;

/// What the keeper needs from config.
#[derive(Debug, Clone, Copy)]
pub struct KeepLimits {
    /// The longest a session outlives its connection (seconds; 0: no session is kept).
    pub max_expiry_secs: u32,
    /// Kept sessions per user.
    pub per_user: usize,
    /// Kept sessions on the node.
    pub total: usize,
}

/// What a CONNECT asks of its session.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// Its user.
    pub user: &'a str,
    /// The connection's ticket (newer connections have higher ones).
    pub ticket: u64,
    /// Clean Start (5.0) / CleanSession (3.1.1): discard any kept session first.
    pub clean_start: bool,
    /// How long the session should outlive the connection (seconds; `u32::MAX`: for ever).
    pub expiry_secs: u32,
}

/// What a CONNECT gets.
#[derive(Debug, Default)]
pub struct Begun {
    /// A kept session was resumed (CONNACK session present 1).
    pub present: bool,
    /// Its state (empty when none was resumed).
    pub state: KeptState,
    /// The expiry granted: the request, cut to the server's maximum, or 0 when no more
    /// sessions may be kept.
    pub expiry_secs: u32,
    /// Sessions could not be kept although one was asked for (a limit was reached).
    pub over_limit: bool,
}

/// A kept session, as the index knows it.
#[derive(Debug)]
struct Kept {
    user: String,
    /// When its last connection ended; `None` while one is open.
    ended: Option<Instant>,
    expiry_secs: u32,
}

#[derive(Debug, Clone)]
enum Write {
    Put(Arc<StoredSession>),
    Remove,
    /// The session's connection ended at this time (ms): a session stored as connected,
    /// found at start-up. Read and written back by the writer, one at a time.
    EndedAt(u64),
}

struct Live {
    ticket: u64,
    /// Cancelled once the connection has saved its session (or has none to save).
    done: CancellationToken,
}

struct DelayedWill {
    at: Instant,
    fire: WillFn,
}

/// A write waiting for the writer, and who waits for it to be on disk.
struct Queued {
    write: Write,
    waiters: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Inner {
    index: HashMap<String, Kept>,
    live: HashMap<String, Live>,
    pending: HashMap<String, Queued>,
    writing: HashMap<String, Write>,
    wills: HashMap<String, DelayedWill>,
}

/// The node's kept sessions.
pub struct Keeper {
    store: Arc<dyn SessionStore>,
    limits: KeepLimits,
    inner: Mutex<Inner>,
    wake_writer: Notify,
    /// Cancelled when the writer has nothing left to write after shutdown.
    drained: CancellationToken,
    /// On a cluster node the index knows only this node's sessions: a Clean Start must remove
    /// whatever the store holds. Alone, the index knows every stored session.
    cluster: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Keeper {
    /// The keeper of the sessions in `store`, which it reads once. Sessions whose expiry has
    /// passed are removed. A session stored as connected was cut off by a crash or a restart:
    /// on a node alone its connection ended now; in a cluster it may be open on another node,
    /// which keeps it, so it is left out of this node's index.
    pub fn open(
        store: Arc<dyn SessionStore>,
        limits: KeepLimits,
        cluster: bool,
    ) -> Result<Keeper, chatd_core::ports::accounts::RecordError> {
        let stored = store.list()?;
        let now = Instant::now();
        let wall = now_ms();
        let mut inner = Inner::default();
        for session in stored {
            let ended_ms = match session.ended_ms {
                Some(ms) => ms,
                None if cluster => continue,
                None => {
                    let write = Write::EndedAt(wall);
                    inner.pending.insert(
                        session.client_id.clone(),
                        Queued {
                            write,
                            waiters: Vec::new(),
                        },
                    );
                    wall
                }
            };
            let expiry = session.expiry_secs.min(limits.max_expiry_secs);
            let age = Duration::from_millis(wall.saturating_sub(ended_ms));
            if age >= Duration::from_secs(expiry.into()) {
                let write = Write::Remove;
                inner.pending.insert(
                    session.client_id,
                    Queued {
                        write,
                        waiters: Vec::new(),
                    },
                );
                continue;
            }
            inner.index.insert(
                session.client_id,
                Kept {
                    user: session.user,
                    ended: Some(now.checked_sub(age).unwrap_or(now)),
                    expiry_secs: expiry,
                },
            );
        }
        Ok(Keeper {
            store,
            limits,
            inner: Mutex::new(inner),
            wake_writer: Notify::new(),
            drained: CancellationToken::new(),
            cluster,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keeper's gauges for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let (kept, wills) = {
            let inner = self.lock();
            (inner.index.len(), inner.wills.len())
        };
        format!(
            "# HELP chatd_kept_sessions Persistent MQTT sessions kept, connected or not.\n\
             # TYPE chatd_kept_sessions gauge\n\
             chatd_kept_sessions {kept}\n\
             # HELP chatd_delayed_wills Wills waiting for their Will Delay Interval.\n\
             # TYPE chatd_delayed_wills gauge\n\
             chatd_delayed_wills {wills}\n"
        )
    }

    /// Starts the writer and the sweeper of expired sessions and due wills; they end after
    /// `stop`, once every write queued before it is carried out (see [`Keeper::drained`]).
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        let keeper = self.clone();
        let writer_stop = stop.clone();
        tokio::spawn(async move { keeper.write_loop(writer_stop).await });
        let keeper = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                }
                keeper.sweep(Instant::now());
            }
        });
    }

    /// Waits until every write queued so far is on disk (used at shutdown, after the
    /// sessions ended), at most `limit`.
    pub async fn drained(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.drained.cancelled())
            .await
            .is_ok()
    }

    async fn write_loop(&self, stop: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                _ = self.wake_writer.notified() => false,
                _ = stop.cancelled() => true,
            };
            // After stop, sessions still ending queue their last writes: keep writing until
            // a pass finds nothing.
            loop {
                let (batch, waiters) = {
                    let mut inner = self.lock();
                    let mut batch = Vec::new();
                    let mut waiters = Vec::new();
                    for (client_id, queued) in std::mem::take(&mut inner.pending) {
                        waiters.extend(queued.waiters);
                        batch.push((client_id, queued.write));
                    }
                    inner.writing = batch.iter().cloned().collect();
                    (batch, waiters)
                };
                if batch.is_empty() {
                    break;
                }
                let store = self.store.clone();
                let wrote = tokio::task::spawn_blocking(move || {
                    for (client_id, write) in batch {
                        let result = match &write {
                            Write::Put(session) => store.put(session),
                            Write::Remove => store.remove(&client_id),
                            Write::EndedAt(ms) => store.get(&client_id).and_then(|found| {
                                found.map_or(Ok(()), |session| {
                                    store.put(&StoredSession {
                                        ended_ms: Some(*ms),
                                        ..session
                                    })
                                })
                            }),
                        };
                        if let Err(e) = result {
                            warn!(%client_id, "cannot save an MQTT session: {e}");
                        }
                    }
                })
                .await;
                if wrote.is_err() {
                    warn!("the MQTT session writer failed");
                }
                self.lock().writing.clear();
                for waiter in waiters {
                    let _ = waiter.send(());
                }
                if !stopping {
                    break;
                }
            }
            if stopping {
                self.drained.cancel();
                return;
            }
        }
    }

    /// Queues `write` for `client_id`, replacing one not carried out yet (whose waiters now
    /// wait for this one); `waiter` hears when it is on disk.
    fn queue_for(
        &self,
        inner: &mut Inner,
        client_id: &str,
        write: Write,
        waiter: Option<oneshot::Sender<()>>,
    ) {
        let queued = inner
            .pending
            .entry(client_id.to_string())
            .or_insert_with(|| Queued {
                write: Write::Remove,
                waiters: Vec::new(),
            });
        queued.write = write;
        queued.waiters.extend(waiter);
        self.wake_writer.notify_one();
    }

    fn queue(&self, inner: &mut Inner, client_id: &str, write: Write) {
        self.queue_for(inner, client_id, write, None);
    }

    /// Removes expired sessions and sends the wills that are due.
    fn sweep(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let mut inner = self.lock();
            let expired: Vec<String> = inner
                .index
                .iter()
                .filter(|(_, k)| {
                    k.ended.is_some_and(|ended| {
                        now.duration_since(ended) >= Duration::from_secs(k.expiry_secs.into())
                    })
                })
                .map(|(id, _)| id.clone())
                .collect();
            for client_id in expired {
                debug!(%client_id, "MQTT session expired");
                inner.index.remove(&client_id);
                self.queue(&mut inner, &client_id, Write::Remove);
                // A will still waiting is sent when its session ends.
                if let Some(will) = inner.wills.remove(&client_id) {
                    due.push(will.fire);
                }
            }
            let ready: Vec<String> = inner
                .wills
                .iter()
                .filter(|(_, w)| w.at <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for client_id in ready {
                if let Some(will) = inner.wills.remove(&client_id) {
                    due.push(will.fire);
                }
            }
        }
        for fire in due {
            fire();
        }
    }

    /// Opens the session of a CONNECT: takes over a connection of this node that holds the
    /// same client id (and waits for it to save its session), discards or resumes what is
    /// kept, and keeps a new session within the limits.
    pub async fn begin(&self, hub: &Hub, req: Request<'_>) -> Begun {
        self.take_over(hub, req.client_id, req.ticket).await;
        let mut will_now = None;
        let mut begun = Begun::default();
        let stored = if req.clean_start {
            None
        } else {
            self.load(req.client_id, req.user).await
        };
        {
            let mut inner = self.lock();
            if inner
                .live
                .get(req.client_id)
                .is_none_or(|l| l.ticket < req.ticket)
            {
                inner.live.insert(
                    req.client_id.to_string(),
                    Live {
                        ticket: req.ticket,
                        done: CancellationToken::new(),
                    },
                );
            }
            // A will waiting for its delay: cancelled when the session is resumed in time,
            // sent now when the session ends here (Clean Start, or nothing left to resume).
            if let Some(will) = inner.wills.remove(req.client_id) {
                if stored.is_none() {
                    will_now = Some(will.fire);
                }
            }
            // Still indexed only if it was kept and not resumed.
            let had = stored.is_some();
            if let Some(state) = stored {
                begun.present = true;
                begun.state = state;
            } else if inner.index.remove(req.client_id).is_some()
                || (req.clean_start && self.cluster)
            {
                // Alone, a client id the index does not know has nothing stored: a clean
                // connect costs no store write (the embedded store flushes every one).
                self.queue(&mut inner, req.client_id, Write::Remove);
            }
            let asked = req.expiry_secs.min(self.limits.max_expiry_secs);
            begun.expiry_secs = if asked > 0 {
                self.make_room(&mut inner, req.client_id, req.user, &mut will_now)
            } else {
                0
            };
            begun.over_limit = asked > 0 && begun.expiry_secs == 0;
            if begun.expiry_secs > 0 {
                begun.expiry_secs = asked;
                inner.index.insert(
                    req.client_id.to_string(),
                    Kept {
                        user: req.user.to_string(),
                        ended: None,
                        expiry_secs: asked,
                    },
                );
                let record = StoredSession {
                    client_id: req.client_id.to_string(),
                    user: req.user.to_string(),
                    expiry_secs: asked,
                    ended_ms: None,
                    state: begun.state.encode(),
                };
                self.queue(&mut inner, req.client_id, Write::Put(Arc::new(record)));
            } else if had && inner.index.remove(req.client_id).is_some() {
                // Resumed for this connection only (5.0 Session Expiry 0): it ends with it.
                self.queue(&mut inner, req.client_id, Write::Remove);
            }
        }
        if let Some(fire) = will_now {
            fire();
        }
        begun
    }

    /// Room for one more kept session of `user`: `u32::MAX` (any expiry) when there is, after
    /// discarding, at the per-user limit, that user's session that ended longest ago; 0 when
    /// there is none. A will that waited on a discarded session is sent.
    fn make_room(
        &self,
        inner: &mut Inner,
        client_id: &str,
        user: &str,
        wills: &mut Option<WillFn>,
    ) -> u32 {
        if inner.index.contains_key(client_id) {
            return u32::MAX;
        }
        let mine = inner.index.values().filter(|k| k.user == user).count();
        if mine >= self.limits.per_user {
            let oldest = inner
                .index
                .iter()
                .filter(|(_, k)| k.user == user)
                .filter_map(|(id, k)| k.ended.map(|ended| (ended, id.clone())))
                .min();
            let Some((_, victim)) = oldest else {
                return 0;
            };
            debug!(client_id = %victim, "MQTT session discarded: the user keeps too many");
            inner.index.remove(&victim);
            self.queue(inner, &victim, Write::Remove);
            if let Some(will) = inner.wills.remove(&victim) {
                // Only one will can be sent by the caller; the rest go now.
                match wills {
                    None => *wills = Some(will.fire),
                    Some(_) => (will.fire)(),
                }
            }
        } else if inner.index.len() >= self.limits.total {
            return 0;
        }
        u32::MAX
    }

    /// Stops the connection of this node that holds `client_id` with an older ticket, and
    /// waits until it has saved its session.
    async fn take_over(&self, hub: &Hub, client_id: &str, ticket: u64) {
        let done = {
            let inner = self.lock();
            match inner.live.get(client_id) {
                Some(live) if live.ticket < ticket => live.done.clone(),
                _ => return,
            }
        };
        let deadline = Instant::now() + TAKEOVER_WAIT;
        // The old connection may be between its CONNACK and its registration with the hub:
        // asked again until it stops.
        while !done.is_cancelled() && Instant::now() < deadline {
            hub.stop_client(client_id);
            let _ = tokio::time::timeout(Duration::from_millis(20), done.cancelled()).await;
        }
    }

    /// The kept state of `client_id` if it has one that has not expired: from the writes not
    /// yet carried out, else from the store.
    async fn load(&self, client_id: &str, user: &str) -> Option<KeptState> {
        let queued = {
            let inner = self.lock();
            inner
                .pending
                .get(client_id)
                .map(|q| &q.write)
                .or_else(|| inner.writing.get(client_id))
                .cloned()
        };
        let stored = match queued {
            Some(Write::Put(session)) => Some((*session).clone()),
            Some(Write::Remove) => None,
            // Only its end changes: the state is the stored one.
            Some(Write::EndedAt(_)) | None => {
                let store = self.store.clone();
                let id = client_id.to_string();
                match tokio::task::spawn_blocking(move || store.get(&id)).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(e)) => {
                        warn!(%client_id, "cannot read an MQTT session: {e}");
                        None
                    }
                    Err(_) => None,
                }
            }
        }?;
        if stored.user != user {
            return None;
        }
        if let Some(ended) = stored.ended_ms {
            let expiry = stored.expiry_secs.min(self.limits.max_expiry_secs);
            if now_ms().saturating_sub(ended) >= u64::from(expiry) * 1000 {
                return None;
            }
        }
        match KeptState::decode(&stored.state) {
            Ok(state) => Some(state),
            Err(e) => {
                warn!(%client_id, "a kept MQTT session cannot be read, starting anew: {e}");
                None
            }
        }
    }

    /// Saves the state of a connected session (after its subscriptions changed); the answer
    /// comes when it is on disk (at once when there is nothing to save), so that a SUBACK
    /// never promises a subscription a crash could lose.
    pub fn save(
        &self,
        client_id: &str,
        user: &str,
        expiry_secs: u32,
        state: &KeptState,
    ) -> oneshot::Receiver<()> {
        let (saved, on_disk) = oneshot::channel();
        let mut inner = self.lock();
        // A session discarded meanwhile (its user removed, a limit) is not brought back.
        if expiry_secs == 0 || !inner.index.contains_key(client_id) {
            let _ = saved.send(());
            return on_disk;
        }
        let record = StoredSession {
            client_id: client_id.to_string(),
            user: user.to_string(),
            expiry_secs,
            ended_ms: None,
            state: state.encode(),
        };
        self.queue_for(
            &mut inner,
            client_id,
            Write::Put(Arc::new(record)),
            Some(saved),
        );
        on_disk
    }

    /// A connection ended. With a state and an expiry its session is kept (and its will, if
    /// it has a delay, waits: see the module documentation); without, it is discarded. Returns
    /// the will when it is to be sent now. A connection that was taken over after the wait
    /// for it ran out changes nothing.
    pub fn end(
        &self,
        client_id: &str,
        ticket: u64,
        user: &str,
        expiry_secs: u32,
        state: Option<KeptState>,
        will: Option<(u32, WillFn)>,
    ) -> Option<WillFn> {
        let mut inner = self.lock();
        let mine = inner
            .live
            .get(client_id)
            .is_some_and(|l| l.ticket == ticket);
        if !mine {
            return will.map(|(_, fire)| fire);
        }
        let done = inner.live.remove(client_id).map(|l| l.done);
        let expiry_secs = expiry_secs.min(self.limits.max_expiry_secs);
        let mut back = will;
        match state {
            Some(state) if expiry_secs > 0 && inner.index.contains_key(client_id) => {
                let now = Instant::now();
                if let Some(kept) = inner.index.get_mut(client_id) {
                    kept.ended = Some(now);
                    kept.expiry_secs = expiry_secs;
                }
                let record = StoredSession {
                    client_id: client_id.to_string(),
                    user: user.to_string(),
                    expiry_secs,
                    ended_ms: Some(now_ms()),
                    state: state.encode(),
                };
                self.queue(&mut inner, client_id, Write::Put(Arc::new(record)));
                if let Some((delay, fire)) = back.take() {
                    if delay > 0 {
                        let wait = Duration::from_secs(delay.min(expiry_secs).into());
                        inner.wills.insert(
                            client_id.to_string(),
                            DelayedWill {
                                at: now + wait,
                                fire,
                            },
                        );
                    } else {
                        back = Some((0, fire));
                    }
                }
            }
            _ => {
                if inner.index.remove(client_id).is_some() {
                    self.queue(&mut inner, client_id, Write::Remove);
                }
            }
        }
        drop(inner);
        if let Some(done) = done {
            done.cancel();
        }
        back.map(|(_, fire)| fire)
    }

    /// Forgets every session of `user` (the account was removed; the store's records go
    /// with the account's other records). Wills waiting for them are dropped.
    pub fn forget_user(&self, user: &str) {
        let mut inner = self.lock();
        let doomed: Vec<String> = inner
            .index
            .iter()
            .filter(|(_, k)| k.user == user)
            .map(|(id, _)| id.clone())
            .collect();
        for client_id in doomed {
            inner.index.remove(&client_id);
            inner.wills.remove(&client_id);
            self.queue(&mut inner, &client_id, Write::Remove);
        }
    }
}
