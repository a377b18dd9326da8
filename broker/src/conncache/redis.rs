//! The connection cache in Redis, shared by every node of a deployment.
//!
//! Layout (`{prefix}` is `redis.key_prefix`):
//! * `{prefix}:conn:{user}:{node}:{client_id}` → JSON [`DeviceEntry`], with a TTL of
//!   `redis.ttl_secs`;
//! * `{prefix}:user:{user}` → set of that user's connection keys, with the same TTL.
//!
//! Sessions only touch an in-process table and a bounded queue; one background task writes to
//! Redis (pipelined), refreshes the TTL of every live connection of this node every TTL/3 (which
//! also writes the latest activity times), and pings Redis every second. A node that dies without
//! cleaning up stops refreshing, so its entries vanish after the TTL. While Redis cannot be
//! reached the node keeps serving: the outage is logged once, health reports it, the task retries
//! with backoff and, once Redis answers again, registers every live connection anew.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, sleep, timeout, MissedTickBehavior};
use tracing::{info, warn};

use super::{now_ms, CacheError, CacheHealth, ConnectionCache, DeviceEntry, LiveConn, LiveTable};

/// Updates waiting for the writer task; past this they are dropped (and counted).
const QUEUE: usize = 16 * 1024;
/// Connections whose update waits while Redis is down; past this they are dropped (and counted).
const MAX_PENDING: usize = 64 * 1024;
/// Connections written per pipeline.
const CHUNK: usize = 500;
/// Longest wait for one Redis round trip (or connection attempt).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an idle writer checks that Redis still answers.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// How long the initial connection attempt at start may take.
const START_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `close` waits for the queue to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the Redis cache needs from the configuration.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis.url` (`redis://…`).
    pub url: String,
    /// `redis.key_prefix`.
    pub key_prefix: String,
    /// `redis.ttl_secs`.
    pub ttl_secs: u64,
    /// `node.id` of this node.
    pub node: u16,
}

/// Connections of every node, in Redis; see the module documentation.
pub struct RedisCache {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Op>,
}

/// A request to the writer task.
enum Op {
    /// Make Redis match the table for this `(user, client id)`: write it if live, else delete.
    Sync(String, String),
    /// Answer once everything queued before has been handled.
    Flush(oneshot::Sender<()>),
}

struct Inner {
    node: u16,
    prefix: String,
    ttl_secs: u64,
    table: Mutex<LiveTable>,
    status: Mutex<Status>,
    /// The writer's current connection, for lookups; `None` while Redis is down.
    conn: Mutex<Option<MultiplexedConnection>>,
    dropped: AtomicU64,
}

struct Status {
    ok: bool,
    detail: String,
    /// The current outage was logged already.
    logged: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisCache {
    /// Connects (trying once, briefly: a Redis that is down makes the node start degraded, not
    /// fail) and starts the writer task.
    pub async fn start(opts: RedisOptions) -> RedisCache {
        let inner = Arc::new(Inner {
            node: opts.node,
            prefix: opts.key_prefix,
            ttl_secs: opts.ttl_secs,
            table: Mutex::new(LiveTable::default()),
            status: Mutex::new(Status {
                ok: false,
                detail: "not connected yet".into(),
                logged: false,
            }),
            conn: Mutex::new(None),
            dropped: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        match Client::open(opts.url.as_str()) {
            Ok(client) => {
                let conn = match timeout(START_TIMEOUT, connect(&client)).await {
                    Ok(Ok(conn)) => {
                        info!("connection cache: Redis reachable");
                        inner.set_up(conn.clone());
                        Some(conn)
                    }
                    Ok(Err(e)) => {
                        inner.set_down(&e);
                        None
                    }
                    Err(_) => {
                        inner.set_down(&CacheError::Timeout);
                        None
                    }
                };
                tokio::spawn(writer(inner.clone(), client, rx, conn));
            }
            Err(e) => {
                // Config validation parses the URL first, so this is not expected.
                inner.set_down(&CacheError::Backend(e.to_string()));
            }
        }
        RedisCache { inner, tx }
    }

    fn queue(&self, user: &str, client_id: &str) {
        let op = Op::Sync(user.to_string(), client_id.to_string());
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(op) {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ConnectionCache for RedisCache {
    fn connected(&self, user: &str, client_id: &str) {
        let now = now_ms();
        lock(&self.inner.table).connected(user, client_id, now);
        self.queue(user, client_id);
    }

    fn disconnected(&self, user: &str, client_id: &str) {
        lock(&self.inner.table).disconnected(user, client_id);
        self.queue(user, client_id);
    }

    fn activity(&self, user: &str, client_id: &str) {
        // Written with the next TTL refresh (every TTL/3): coalesced, no Redis traffic here.
        let now = now_ms();
        lock(&self.inner.table).activity(user, client_id, now);
    }

    fn devices<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<DeviceEntry>, CacheError>> {
        Box::pin(self.inner.devices(user))
    }

    fn health(&self) -> CacheHealth {
        let status = lock(&self.inner.status);
        CacheHealth {
            backend: "redis",
            ok: status.ok,
            detail: if status.ok {
                String::new()
            } else {
                status.detail.clone()
            },
        }
    }

    fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (done, answer) = oneshot::channel();
            let _ = timeout(CLOSE_TIMEOUT, async {
                if self.tx.send(Op::Flush(done)).await.is_ok() {
                    let _ = answer.await;
                }
            })
            .await;
        })
    }
}

async fn connect(client: &Client) -> Result<MultiplexedConnection, CacheError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT);
    let conn = bounded(client.get_multiplexed_async_connection_with_config(&config)).await?;
    let mut probe = conn.clone();
    bounded(redis::cmd("PING").query_async::<String>(&mut probe)).await?;
    Ok(conn)
}

/// Runs one Redis round trip with [`COMMAND_TIMEOUT`].
async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, CacheError> {
    match timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CacheError::Backend(e.to_string())),
        Err(_) => Err(CacheError::Timeout),
    }
}

impl Inner {
    fn conn_key(&self, user: &str, client_id: &str) -> String {
        format!("{}:conn:{user}:{}:{client_id}", self.prefix, self.node)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    fn set_up(&self, conn: MultiplexedConnection) {
        *lock(&self.conn) = Some(conn);
        let mut status = lock(&self.status);
        status.ok = true;
        status.detail.clear();
        status.logged = false;
    }

    /// Marks Redis unreachable; logs only when it was reachable (once per outage).
    fn set_down(&self, e: &CacheError) {
        *lock(&self.conn) = None;
        let mut status = lock(&self.status);
        if !status.logged {
            status.logged = true;
            warn!(
                "connection cache: Redis unreachable ({e}); the node keeps serving, \
                 retrying in the background"
            );
        }
        status.ok = false;
        status.detail = e.to_string();
    }

    /// Adds the commands that write one live connection to `pipe`.
    fn write_cmds(&self, pipe: &mut redis::Pipeline, user: &str, client_id: &str, c: LiveConn) {
        let key = self.conn_key(user, client_id);
        let user_key = self.user_key(user);
        let entry = DeviceEntry {
            node: self.node,
            client_id: client_id.to_string(),
            since_ms: c.since_ms,
            last_activity_ms: c.last_activity_ms,
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        pipe.cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("EX")
            .arg(self.ttl_secs)
            .ignore();
        pipe.cmd("SADD").arg(&user_key).arg(&key).ignore();
        pipe.cmd("EXPIRE")
            .arg(&user_key)
            .arg(self.ttl_secs)
            .ignore();
    }

    /// Makes Redis match the table for these connections.
    async fn sync(
        &self,
        conn: &mut MultiplexedConnection,
        ids: &[(String, String)],
    ) -> Result<(), CacheError> {
        for chunk in ids.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            {
                let table = lock(&self.table);
                for (user, client_id) in chunk {
                    match table.get(user, client_id) {
                        Some(c) => self.write_cmds(&mut pipe, user, client_id, c),
                        None => {
                            let key = self.conn_key(user, client_id);
                            pipe.cmd("DEL").arg(&key).ignore();
                            pipe.cmd("SREM").arg(self.user_key(user)).arg(&key).ignore();
                        }
                    }
                }
            }
            bounded(pipe.query_async::<()>(conn)).await?;
        }
        Ok(())
    }

    /// Writes every live connection of this node (refreshing the TTLs); returns how many.
    async fn register_all(&self, conn: &mut MultiplexedConnection) -> Result<usize, CacheError> {
        let all = lock(&self.table).all();
        for chunk in all.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (user, client_id, c) in chunk {
                self.write_cmds(&mut pipe, user, client_id, *c);
            }
            bounded(pipe.query_async::<()>(conn)).await?;
        }
        Ok(all.len())
    }

    async fn devices(&self, user: &str) -> Result<Vec<DeviceEntry>, CacheError> {
        let conn = lock(&self.conn).clone();
        let Some(mut conn) = conn else {
            return Err(CacheError::Unavailable(lock(&self.status).detail.clone()));
        };
        let user_key = self.user_key(user);
        let keys: Vec<String> =
            bounded(redis::cmd("SMEMBERS").arg(&user_key).query_async(&mut conn)).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> =
            bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (key, value) in keys.iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<DeviceEntry>(&v).ok()) {
                Some(entry) => out.push(entry),
                None => expired.push(key.clone()),
            }
        }
        if !expired.is_empty() {
            // Members whose key expired (a node that died): tidy up, best effort.
            let _ = bounded(
                redis::cmd("SREM")
                    .arg(&user_key)
                    .arg(&expired)
                    .query_async::<()>(&mut conn),
            )
            .await;
        }
        out.sort_by(|a, b| (a.node, &a.client_id).cmp(&(b.node, &b.client_id)));
        Ok(out)
    }
}

/// The writer task: applies queued updates, refreshes TTLs, watches Redis, reconnects.
async fn writer(
    inner: Arc<Inner>,
    client: Client,
    mut rx: mpsc::Receiver<Op>,
    mut conn: Option<MultiplexedConnection>,
) {
    let refresh_every = Duration::from_millis(inner.ttl_secs.max(1) * 1000 / 3);
    let mut refresh = interval(refresh_every);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut check = interval(CHECK_EVERY);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = BACKOFF_MIN;
    // Connections updated while Redis was down: synced after reconnecting (deletes mostly; the
    // live ones are rewritten by the full registration anyway).
    let mut pending: HashSet<(String, String)> = HashSet::new();
    loop {
        let Some(c) = conn.as_mut() else {
            let wake = sleep(backoff);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    op = rx.recv() => match op {
                        None => return,
                        Some(Op::Flush(done)) => { let _ = done.send(()); }
                        Some(Op::Sync(user, client_id)) => {
                            if pending.len() < MAX_PENDING {
                                pending.insert((user, client_id));
                            } else {
                                inner.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    },
                    _ = &mut wake => break,
                }
            }
            match reconnect(&inner, &client, &mut pending).await {
                Ok((fresh, n)) => {
                    info!(
                        "connection cache: Redis reachable again; re-registered {n} live connections"
                    );
                    inner.set_up(fresh.clone());
                    conn = Some(fresh);
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    inner.set_down(&e);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        let result = tokio::select! {
            op = rx.recv() => match op {
                None => return,
                Some(op) => apply(&inner, c, op, &mut rx, &mut pending).await,
            },
            _ = refresh.tick() => inner.register_all(c).await.map(|_| ()),
            _ = check.tick() => bounded(redis::cmd("PING").query_async::<String>(c)).await.map(|_| ()),
        };
        if let Err(e) = result {
            inner.set_down(&e);
            conn = None;
        }
    }
}

/// Connects, registers every live connection and syncs what changed during the outage.
async fn reconnect(
    inner: &Inner,
    client: &Client,
    pending: &mut HashSet<(String, String)>,
) -> Result<(MultiplexedConnection, usize), CacheError> {
    let mut conn = connect(client).await?;
    let n = inner.register_all(&mut conn).await?;
    let ids: Vec<(String, String)> = pending.iter().cloned().collect();
    inner.sync(&mut conn, &ids).await?;
    pending.clear();
    Ok((conn, n))
}

/// Handles `first` and whatever else is already queued, in one pipeline per [`CHUNK`].
async fn apply(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    first: Op,
    rx: &mut mpsc::Receiver<Op>,
    pending: &mut HashSet<(String, String)>,
) -> Result<(), CacheError> {
    let mut ids = Vec::new();
    let mut flushes = Vec::new();
    let mut next = Some(first);
    while let Some(op) = next {
        match op {
            Op::Sync(user, client_id) => ids.push((user, client_id)),
            Op::Flush(done) => flushes.push(done),
        }
        if ids.len() >= CHUNK * 4 {
            break;
        }
        next = rx.try_recv().ok();
    }
    let result = inner.sync(conn, &ids).await;
    if result.is_err() {
        // Synced again once Redis answers.
        pending.extend(
            ids.into_iter()
                .take(MAX_PENDING.saturating_sub(pending.len())),
        );
    }
    for done in flushes {
        let _ = done.send(());
    }
    result
}
