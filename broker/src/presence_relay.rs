//! Fan-out of presence changes to the sessions watching them, through one rumqttd link.
//!
//! The router carries every change on `presence/{user}`; this relay holds the only subscription,
//! `presence/+`, and hands each change to the sessions that subscribed to that user. Why not a
//! router link and filter per session: rumqttd preallocates ~36 KB per local link and filter
//! (its per-link queues and per-filter commit log), and scans every known topic when a filter
//! is new, so with a `presence/{user}` filter per watcher the cost grows with users × watchers
//! (measured: 546 connects/s with one presence subscription each, against 5,000 without; see
//! `docs/benchmarks-connections.md`). With one wildcard filter the router does constant work per
//! change, and a watch costs one entry in a map here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rumqttd::local::LinkRx;
use rumqttd::Notification;
use tracing::warn;

use crate::hub::{PresenceChange, SessionEntry};
use crate::presence::RelayedChange;
use crate::router::{Router, RouterError};

/// The one router filter that carries all presence changes.
const ALL_PRESENCE: &str = "presence/+";

/// The sessions watching one user, by session id.
type Watchers = HashMap<u64, Arc<SessionEntry>>;

/// Who watches whose presence.
#[derive(Default)]
pub struct PresenceRelay {
    /// Watched user → the sessions subscribed to `presence/{user}`, by session id (a popular
    /// user's watchers come and go in constant time each).
    watchers: Mutex<HashMap<String, Watchers>>,
}

impl PresenceRelay {
    /// Subscribes to every presence change on the router and starts relaying them to watchers.
    /// Must run inside the tokio runtime.
    pub fn start(router: &Router) -> Result<Arc<PresenceRelay>, RouterError> {
        let (mut tx, rx) = router.link("chatd-presence-relay")?;
        tx.subscribe(ALL_PRESENCE)
            .map_err(|e| RouterError::new(e.to_string()))?;
        let relay = Arc::new(PresenceRelay::default());
        tokio::spawn(relay.clone().run(tx, rx));
        Ok(relay)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Watchers>> {
        // Each operation leaves the map consistent, so a panic elsewhere changes nothing here.
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Session `entry` now receives changes of `user`'s presence (once, however often it asks).
    pub fn watch(&self, user: &str, entry: &Arc<SessionEntry>) {
        self.lock()
            .entry(user.to_string())
            .or_default()
            .insert(entry.id(), entry.clone());
    }

    /// Session `entry` no longer receives changes of `user`'s presence.
    pub fn unwatch(&self, user: &str, entry: &SessionEntry) {
        let mut watchers = self.lock();
        if let Some(sessions) = watchers.get_mut(user) {
            sessions.remove(&entry.id());
            if sessions.is_empty() {
                watchers.remove(user);
            }
        }
    }

    /// How many (user, session) watches exist.
    pub fn watch_count(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// The watch count in Prometheus text format (for `/metrics`).
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP chatd_presence_watches Presence subscriptions held by connected sessions.\n\
             # TYPE chatd_presence_watches gauge\n\
             chatd_presence_watches {}\n",
            self.watch_count()
        )
    }

    /// Hands one change to every session watching the user it is about.
    fn relay(&self, topic: &str, payload: &Bytes) {
        let Some(user) = topic.strip_prefix("presence/") else {
            return;
        };
        let Some((seq, state)) = RelayedChange::decode(payload) else {
            warn!(topic, "presence change without its number");
            return;
        };
        let sessions: Vec<Arc<SessionEntry>> = match self.lock().get(user) {
            Some(sessions) => sessions.values().cloned().collect(),
            None => return,
        };
        let topic: Arc<str> = Arc::from(topic);
        for session in sessions {
            session.push_presence(PresenceChange {
                topic: topic.clone(),
                payload: state.clone(),
                seq,
            });
        }
    }

    /// Reads the router link until the router goes away. The link's sender is kept alive here:
    /// dropping it would leave the router with a half-gone link.
    async fn run(self: Arc<PresenceRelay>, _tx: rumqttd::local::LinkTx, mut rx: LinkRx) {
        loop {
            match rx.next().await {
                Ok(Some(Notification::Forward(forward))) => {
                    let publish = forward.publish;
                    match std::str::from_utf8(&publish.topic) {
                        Ok(topic) => self.relay(topic, &publish.payload),
                        Err(_) => warn!("presence change on a topic that is not UTF-8"),
                    }
                }
                Ok(Some(Notification::Unschedule)) => {
                    // The router paused the link because its buffer filled; everything in it
                    // has been handed on, so ask for more.
                    if rx.wake().await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!("presence relay stopped: {e}");
                    break;
                }
            }
        }
    }
}
