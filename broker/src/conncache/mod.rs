//! The connection cache: which node and devices each user is connected to, and when each
//! connection was last active. In-process by default ([`memory::MemoryCache`]); in Redis when
//! `[redis] url` is configured ([`redis::RedisCache`]), so that every node (and later the push
//! bridge) sees the whole deployment.
//!
//! Sessions call the non-blocking methods ([`ConnectionCache::connected`],
//! [`ConnectionCache::disconnected`], [`ConnectionCache::activity`]); they never wait for a
//! backend. The same client id may be connected twice for a moment (a takeover), so a cache
//! counts the sessions of each `(user, client id)` and forgets the connection only when the last
//! one ends.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// One connected device of a user, as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// `node.id` of the node that holds the connection.
    pub node: u16,
    /// The MQTT client id (`{user}` or `{user}:{device}`).
    pub client_id: String,
    /// When the connection started, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// When the client last published, milliseconds since the Unix epoch (may lag a little).
    pub last_activity_ms: u64,
}

/// Whether the cache's backend works, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheHealth {
    /// `"memory"` or `"redis"`.
    pub backend: &'static str,
    /// False while the backend cannot be reached.
    pub ok: bool,
    /// Why it is not ok (the last error); empty when ok.
    pub detail: String,
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend cannot be reached now.
    #[error("connection cache unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("connection cache error: {0}")]
    Backend(String),
    /// The backend took too long to answer.
    #[error("connection cache timed out")]
    Timeout,
}

/// Where connections are recorded. Implementations are cheap to call from sessions: the
/// recording methods never block on I/O.
pub trait ConnectionCache: Send + Sync {
    /// A session of `client_id` (belonging to `user`) started on this node.
    fn connected(&self, user: &str, client_id: &str);

    /// A session of `client_id` ended on this node.
    fn disconnected(&self, user: &str, client_id: &str);

    /// The client published something (cheap; backends may write it later, coalesced).
    fn activity(&self, user: &str, client_id: &str);

    /// Every connected device of `user`, on every node the backend knows about.
    fn devices<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<DeviceEntry>, CacheError>>;

    /// Whether the backend works now.
    fn health(&self) -> CacheHealth;

    /// Updates dropped because the backend's queue was full (they are repaired by the next
    /// periodic refresh or expire with the TTL).
    fn dropped(&self) -> u64 {
        0
    }

    /// Writes what is still queued, best effort and bounded in time (at graceful shutdown).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Builds the cache the configuration asks for: Redis when `[redis] url` is set (its first
/// connection is tried here, briefly; a node whose Redis is down still starts, degraded), else
/// the in-process cache.
pub async fn from_config(config: &Config) -> Arc<dyn ConnectionCache> {
    match &config.redis.url {
        Some(url) => Arc::new(
            redis::RedisCache::start(redis::RedisOptions {
                url: url.clone(),
                key_prefix: config.redis.key_prefix.clone(),
                ttl_secs: config.redis.ttl_secs,
                node: config.node.id,
            })
            .await,
        ),
        None => Arc::new(memory::MemoryCache::new(config.node.id)),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The live connections of one node: user → client id → connection. Shared by both backends.
#[derive(Debug, Default)]
pub(crate) struct LiveTable {
    users: std::collections::HashMap<String, std::collections::HashMap<String, LiveConn>>,
}

/// One live `(user, client id)` on this node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveConn {
    /// Sessions of this client id (more than one only during a takeover).
    pub sessions: u32,
    /// Start of the newest session.
    pub since_ms: u64,
    /// Last publish.
    pub last_activity_ms: u64,
}

impl LiveTable {
    /// Counts a new session.
    pub fn connected(&mut self, user: &str, client_id: &str, now: u64) {
        let conns = self.users.entry(user.to_string()).or_default();
        let conn = conns.entry(client_id.to_string()).or_insert(LiveConn {
            sessions: 0,
            since_ms: now,
            last_activity_ms: now,
        });
        conn.sessions += 1;
        conn.since_ms = now;
        conn.last_activity_ms = now;
    }

    /// Counts a session's end; forgets the connection with its last session.
    pub fn disconnected(&mut self, user: &str, client_id: &str) {
        let Some(conns) = self.users.get_mut(user) else {
            return;
        };
        if let Some(conn) = conns.get_mut(client_id) {
            conn.sessions = conn.sessions.saturating_sub(1);
            if conn.sessions == 0 {
                conns.remove(client_id);
            }
        }
        if conns.is_empty() {
            self.users.remove(user);
        }
    }

    /// Records a publish; false when the connection is unknown.
    pub fn activity(&mut self, user: &str, client_id: &str, now: u64) -> bool {
        match self.users.get_mut(user).and_then(|c| c.get_mut(client_id)) {
            Some(conn) => {
                conn.last_activity_ms = now;
                true
            }
            None => false,
        }
    }

    /// The connection of `(user, client id)`, if live.
    pub fn get(&self, user: &str, client_id: &str) -> Option<LiveConn> {
        self.users.get(user).and_then(|c| c.get(client_id)).copied()
    }

    /// The live connections of `user` as entries of node `node`.
    pub fn devices(&self, user: &str, node: u16) -> Vec<DeviceEntry> {
        let mut out: Vec<DeviceEntry> = self
            .users
            .get(user)
            .map(|conns| {
                conns
                    .iter()
                    .map(|(client_id, c)| DeviceEntry {
                        node,
                        client_id: client_id.clone(),
                        since_ms: c.since_ms,
                        last_activity_ms: c.last_activity_ms,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Every live connection: `(user, client id, connection)`.
    pub fn all(&self) -> Vec<(String, String, LiveConn)> {
        self.users
            .iter()
            .flat_map(|(user, conns)| {
                conns
                    .iter()
                    .map(move |(cid, c)| (user.clone(), cid.clone(), *c))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_keeps_the_connection_until_the_last_session_ends() {
        let mut t = LiveTable::default();
        t.connected("alice", "alice:phone", 1);
        t.connected("alice", "alice:phone", 2);
        t.disconnected("alice", "alice:phone");
        assert_eq!(t.devices("alice", 1).len(), 1);
        t.disconnected("alice", "alice:phone");
        assert!(t.devices("alice", 1).is_empty());
        assert!(t.all().is_empty());
    }

    #[test]
    fn activity_updates_only_known_connections() {
        let mut t = LiveTable::default();
        assert!(!t.activity("bob", "bob", 5));
        t.connected("bob", "bob", 1);
        assert!(t.activity("bob", "bob", 5));
        assert_eq!(t.get("bob", "bob").map(|c| c.last_activity_ms), Some(5));
    }
}
