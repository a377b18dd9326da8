//! Presence: a user is online while at least one of its devices is connected, and offline, with
//! `last_seen`, from when the last one went away — however it went (DISCONNECT, a dropped socket,
//! keep-alive expiry, takeover). chatd terminates connections itself and rumqttd never sees
//! them, so the session layer reports every session's end here: this is every session's will.
//!
//! In a cluster, a user is online while a device is connected to any node: each node tells the
//! others about its users' first and last sessions (`cluster::wake_bus`), keeps which users
//! have devices on which other nodes, and drops a node's users when that node falls silent.
//! Watchers on every node thus see the same changes, each from its own node's view.
//!
//! Changes are published through the rumqttd router on `presence/{user}`; the presence relay
//! (`presence_relay.rs`) takes them from there to the sessions that subscribed. The current state
//! is written straight to a new subscriber (flagged retained), so the router keeps no per-user
//! retained message.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use chatd_core::presence::LastSeen;
use chatd_wire::ids::now_ms;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::Failure;
use chatd_wire::request::{ops, Answer, AnswerFuture, Caller, Request, RpcHandler};
use rumqttd::local::{LinkRx, LinkTx};
use serde_json::{json, Value};
use tracing::warn;

use crate::router::{Router, RouterError};

/// Most users one `presence.get` may ask about.
const MAX_USERS_PER_GET: usize = 100;

/// Connected sessions per user, and how many changes were announced.
#[derive(Default)]
struct Online {
    sessions: HashMap<String, usize>,
    /// In a cluster: the other nodes where each user has a device (`cluster::peers`).
    remote: HashMap<String, BTreeSet<u16>>,
    changes: u64,
}

impl Online {
    /// Whether `user` has a device on this node or, in a cluster, on another.
    fn has(&self, user: &str) -> bool {
        self.sessions.contains_key(user) || self.remote.contains_key(user)
    }
}

/// Where a node of a cluster tells the other nodes about its users' first and last sessions.
pub trait PresencePeers: Send + Sync + 'static {
    /// `user` has a first device on this node.
    fn online_here(&self, user: &str);
    /// `user`'s last device on this node went away at `last_seen`.
    fn offline_here(&self, user: &str, last_seen: u64);
}

/// A change as the router carries it: its number (8 bytes, big-endian), then the JSON state
/// clients receive. The number lets a new watcher skip changes its first state already shows.
pub struct RelayedChange;

impl RelayedChange {
    /// The router payload for change number `seq`.
    pub fn encode(seq: u64, state: &Value) -> Vec<u8> {
        let mut payload = seq.to_be_bytes().to_vec();
        payload.extend_from_slice(state.to_string().as_bytes());
        payload
    }

    /// The number and the client payload of a router payload; `None` if it is too short.
    pub fn decode(payload: &Bytes) -> Option<(u64, Bytes)> {
        let seq = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
        Some((seq, payload.slice(8..)))
    }
}

/// Who is online, and the link that announces changes.
pub struct Presence {
    /// Connected sessions per user and the change counter; publishing happens under this lock
    /// so that changes are announced, and numbered, in the order they happened.
    online: Mutex<Online>,
    last_seen: LastSeen,
    link: Mutex<LinkTx>,
    /// Kept so the router sees a live link; nothing is subscribed, so nothing arrives on it.
    _link_rx: LinkRx,
    /// The router, owned here: presence is what it carries.
    _router: Router,
    /// The other nodes of a cluster; unset on a node alone.
    peers: OnceLock<Arc<dyn PresencePeers>>,
}

impl Presence {
    /// Presence publishing on its own link of `router`.
    pub fn new(router: Router, last_seen: LastSeen) -> Result<Presence, RouterError> {
        let (link, link_rx) = router.link("chatd-presence")?;
        Ok(Presence {
            online: Mutex::new(Online::default()),
            last_seen,
            link: Mutex::new(link),
            _link_rx: link_rx,
            _router: router,
            peers: OnceLock::new(),
        })
    }

    /// Makes this node tell `peers` about its users' first and last sessions (cluster mode);
    /// set once, before any session starts.
    pub fn set_peers(&self, peers: Arc<dyn PresencePeers>) {
        if self.peers.set(peers).is_err() {
            warn!("presence peers already set");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Online> {
        // Every update leaves the map consistent, so a panic elsewhere changes nothing here.
        self.online.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session of `user` started.
    pub fn connected(&self, user: &str) {
        let mut online = self.lock();
        let count = online.sessions.entry(user.to_string()).or_insert(0);
        *count += 1;
        if *count == 1 {
            // Stored now too, so that a crash while the user is online still leaves a last seen.
            let now = now_ms();
            if let Err(e) = self.last_seen.set(user, now) {
                warn!(user, "cannot store last seen: {e}");
            }
            if let Some(peers) = self.peers.get() {
                peers.online_here(user);
            }
            if !online.remote.contains_key(user) {
                let state = online_state(user, now);
                self.announce(&mut online, user, &state);
            }
        }
    }

    /// A session of `user` ended.
    pub fn disconnected(&self, user: &str) {
        let mut online = self.lock();
        let Some(count) = online.sessions.get_mut(user) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            online.sessions.remove(user);
            let now = now_ms();
            if let Err(e) = self.last_seen.set(user, now) {
                warn!(user, "cannot store last seen: {e}");
            }
            if let Some(peers) = self.peers.get() {
                peers.offline_here(user, now);
            }
            if !online.remote.contains_key(user) {
                self.announce(&mut online, user, &offline(user, Some(now)));
            }
        }
    }

    /// Cluster mode: `users` have a device on node `node`. Watchers here see those who were
    /// offline everywhere come online.
    pub fn online_elsewhere(&self, node: u16, users: &[String]) {
        let mut online = self.lock();
        for user in users {
            let was = online.has(user);
            online.remote.entry(user.clone()).or_default().insert(node);
            if !was {
                self.announce(&mut online, user, &online_state(user, now_ms()));
            }
        }
    }

    /// Cluster mode: `user`'s last device on node `node` went away at `last_seen`. Watchers
    /// here see the user go offline if no device is left anywhere.
    pub fn offline_elsewhere(&self, node: u16, user: &str, last_seen: u64) {
        let mut online = self.lock();
        if Self::forget_remote(&mut online, node, user) && !online.has(user) {
            self.announce(&mut online, user, &offline(user, Some(last_seen)));
        }
    }

    /// Cluster mode: node `node` is gone (it stopped answering, or started again): none of
    /// its users' devices are there any more.
    pub fn node_gone(&self, node: u16) {
        let mut online = self.lock();
        let users: Vec<String> = online
            .remote
            .iter()
            .filter(|(_, nodes)| nodes.contains(&node))
            .map(|(user, _)| user.clone())
            .collect();
        let now = now_ms();
        for user in users {
            if Self::forget_remote(&mut online, node, &user) && !online.has(&user) {
                self.announce(&mut online, &user, &offline(&user, Some(now)));
            }
        }
    }

    /// Removes `node` from `user`'s remote nodes; true if it was there.
    fn forget_remote(online: &mut Online, node: u16, user: &str) -> bool {
        let Some(nodes) = online.remote.get_mut(user) else {
            return false;
        };
        let was = nodes.remove(&node);
        if nodes.is_empty() {
            online.remote.remove(user);
        }
        was
    }

    /// The users with a device on this node (what a node that joins asks the others for).
    pub fn users_here(&self) -> Vec<String> {
        self.lock().sessions.keys().cloned().collect()
    }

    /// Whether `user` has a device on this node or, in a cluster, on another.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().has(user)
    }

    /// Publishes a change, numbered, to the router (see [`RelayedChange`]).
    fn announce(&self, online: &mut Online, user: &str, state: &Value) {
        online.changes += 1;
        let payload = RelayedChange::encode(online.changes, state);
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = link.publish(format!("presence/{user}"), payload) {
            warn!(user, "cannot publish presence: {e}");
        }
    }

    /// The current presence of `user`, as published on `presence/{user}`.
    pub fn state(&self, user: &str) -> Value {
        self.state_at(user).0
    }

    /// The current presence of `user` and the number of the last change announced before it:
    /// a watcher skips relayed changes up to that number, which the state already shows.
    pub fn state_at(&self, user: &str) -> (Value, u64) {
        let online = self.lock();
        let state = if online.has(user) {
            online_state(user, now_ms())
        } else {
            // Read under the lock: a disconnect stores last seen before it announces.
            offline(user, self.last_seen.get(user).ok().flatten())
        };
        (state, online.changes)
    }
}

/// `presence.get`, answered from the same state a watcher gets.
impl RpcHandler for Presence {
    fn ops(&self) -> &'static [&'static str] {
        ops::PRESENCE
    }

    fn answer<'a>(&'a self, _caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
        let outcome = parse_get(&request.obj).and_then(|users| {
            let states: Vec<Value> = users.iter().map(|u| self.state(u)).collect();
            Answer::of(&json!({ "users": states }))
        });
        Box::pin(std::future::ready(outcome))
    }
}

/// Reads the arguments of a `presence.get` whose envelope the router checked: 1 to
/// [`MAX_USERS_PER_GET`] valid user ids. Pure, so every hostile request can be thrown at it in
/// tests.
pub fn parse_get(obj: &Object) -> Result<Vec<String>, Failure> {
    json::only_fields(obj, &["rid", "op", "users"])?;
    chatd_core::user_list::parse_users(obj, MAX_USERS_PER_GET)
}

/// One user's presence, in the contract's field order.
#[derive(serde::Serialize)]
struct State<'a> {
    user: &'a str,
    status: &'static str,
    last_seen: Option<u64>,
}

fn online_state(user: &str, now: u64) -> Value {
    state(user, "online", Some(now))
}

fn offline(user: &str, last_seen: Option<u64>) -> Value {
    state(user, "offline", last_seen)
}

fn state(user: &str, status: &'static str, last_seen: Option<u64>) -> Value {
    let state = State {
        user,
        status,
        last_seen,
    };
    serde_json::to_value(state).unwrap_or(Value::Null)
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_changes_keep_their_number_and_state() {
        let state = online_state("bob", 1_732_790_000_123);
        let payload = Bytes::from(RelayedChange::encode(42, &state));
        let (seq, json) = RelayedChange::decode(&payload).expect("decodes");
        assert_eq!(seq, 42);
        let back: Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(back, state);
        assert_eq!(
            std::str::from_utf8(&json).ok(),
            Some(r#"{"user":"bob","status":"online","last_seen":1732790000123}"#)
        );
    }

    #[test]
    fn a_payload_without_a_number_is_refused() {
        assert!(RelayedChange::decode(&Bytes::from_static(b"{}")).is_none());
        assert!(RelayedChange::decode(&Bytes::new()).is_none());
    }
}
