//! Presence: a user is online while at least one of its devices is connected, and offline, with
//! `last_seen`, from when the last one went away — however it went (DISCONNECT, a dropped socket,
//! keep-alive expiry, takeover). chatd terminates connections itself and rumqttd never sees
//! them, so the session layer reports every session's end here: this is every session's will.
//!
//! Changes are published through the rumqttd router on `presence/{user}`; the presence relay
//! (`presence_relay.rs`) takes them from there to the sessions that subscribed. The current state
//! is written straight to a new subscriber (flagged retained), so the router keeps no per-user
//! retained message.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use chatd_core::presence::LastSeen;
use chatd_wire::ids::now_ms;
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
    changes: u64,
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
        })
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
            let state = online_state(user, now);
            self.announce(&mut online, user, &state);
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
            self.announce(&mut online, user, &offline(user, Some(now)));
        }
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
        let state = if online.sessions.contains_key(user) {
            online_state(user, now_ms())
        } else {
            // Read under the lock: a disconnect stores last seen before it announces.
            offline(user, self.last_seen.get(user).ok().flatten())
        };
        (state, online.changes)
    }

    /// Answers a `presence.get` request; `None` when `payload` is another op.
    pub fn answer_get(&self, payload: &[u8]) -> Option<Bytes> {
        let reply = match parse_get(payload)? {
            Ok(get) => {
                let states: Vec<Value> = get.users.iter().map(|u| self.state(u)).collect();
                json!({"rid": get.rid, "ok": true, "result": {"users": states}})
            }
            Err(refusal) => refusal,
        };
        Some(Bytes::from(reply.to_string()))
    }
}

/// A `presence.get` request that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceGet {
    /// The client's `rid`.
    pub rid: String,
    /// Valid user ids, 1 to [`MAX_USERS_PER_GET`].
    pub users: Vec<String>,
}

/// Reads a payload on `chat/{me}/rpc`: `None` when it is not a `presence.get` (the messaging
/// service answers it), else the request or the error reply to publish. Pure, so every hostile
/// payload can be thrown at it in tests.
pub fn parse_get(payload: &[u8]) -> Option<Result<PresenceGet, Value>> {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    if req.get("op").and_then(Value::as_str) != Some("presence.get") {
        return None;
    }
    let rid = req.get("rid").cloned().unwrap_or(Value::Null);
    let fail = |message: String| {
        // The rid is echoed only when it is a usable one, as for every other request.
        let mut reply = serde_json::Map::new();
        if let Some(r) = usable_rid(&rid) {
            reply.insert("rid".into(), Value::from(r));
        }
        reply.insert("ok".into(), Value::Bool(false));
        reply.insert(
            "error".into(),
            json!({"code": "bad_request", "message": message}),
        );
        Some(Err(Value::Object(reply)))
    };
    let Some(rid_text) = usable_rid(&rid) else {
        return fail("`rid` must be a string of 1 to 128 characters".into());
    };
    if let Some(field) = req
        .keys()
        .find(|k| !["rid", "op", "users"].contains(&k.as_str()))
    {
        return fail(format!("unknown field `{field}`"));
    }
    let Some(users) = req.get("users").and_then(Value::as_array) else {
        return fail("`users` (a list of user ids) is required".into());
    };
    if users.is_empty() || users.len() > MAX_USERS_PER_GET {
        return fail(format!("`users` must name 1 to {MAX_USERS_PER_GET} users"));
    }
    let mut valid = Vec::with_capacity(users.len());
    for user in users {
        match user.as_str() {
            Some(u) if chatd_auth::validate_user_id(u).is_ok() => valid.push(u.to_string()),
            _ => return fail(format!("{user} is not a valid user id")),
        }
    }
    Some(Ok(PresenceGet {
        rid: rid_text.to_string(),
        users: valid,
    }))
}

/// A `rid` that can be echoed: a string of 1 to 128 characters.
fn usable_rid(rid: &Value) -> Option<&str> {
    rid.as_str()
        .filter(|r| (1..=128).contains(&r.chars().count()))
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
