//! Which sessions are connected, per user and per client id, and the delivery of per-user
//! traffic straight to their outbound queues (without a rumqttd topic per user).
//!
//! Delivery never blocks the caller (the store's committer thread): each session has a bounded
//! mailbox (allocated only while something waits in it), and a session whose mailbox is full is
//! marked *lagged* instead. A lagged session stops
//! receiving queued messages from the hub and re-reads its queue from the store, so a slow device
//! costs bounded memory and loses nothing. The mailbox is full at [`SESSION_CHANNEL`] deliveries
//! or when its bytes plus those of the session's messages in flight reach
//! `limits.max_session_buffer_bytes`: a count alone would let a session that stops reading hold
//! hundreds of the largest messages.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use chatd_core::outbox::{Channel, Deliver, Outgoing};
use tokio_util::sync::CancellationToken;

use crate::mailbox::Mailbox;

/// How many deliveries wait for one session before it is marked lagged.
const SESSION_CHANNEL: usize = 256;

/// Why a session was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Still running.
    None = 0,
    /// A new connection with the same client id took over.
    TakenOver = 1,
    /// The account was removed or changed by an administrator.
    Administrative = 2,
    /// The server is shutting down.
    Shutdown = 3,
}

/// What waits in a session's mailbox.
pub enum Delivery {
    /// Per-user traffic: messages, receipts, replies, typing.
    Item(Outgoing),
    /// A change of a watched user's presence.
    Presence(PresenceChange),
    /// Something may wait in the user's queue in the store that no delivery brought (another
    /// node's were lost): the session reads its queue again. Only its arrival matters;
    /// [`Hub::wake_all`] has already marked the session lagged.
    Wake,
}

impl Delivery {
    /// What this delivery keeps in memory while it waits, roughly: its bytes and its record.
    fn weight(&self) -> usize {
        let bytes = match self {
            Delivery::Item(item) => {
                item.user.len()
                    + item.payload.len()
                    + item.queue_id.as_ref().map_or(0, String::len)
                    + item.skip_client.as_ref().map_or(0, String::len)
            }
            Delivery::Presence(change) => change.payload.len(),
            Delivery::Wake => 0,
        };
        bytes + std::mem::size_of::<Delivery>()
    }
}

/// A relayed presence change.
pub struct PresenceChange {
    /// `presence/{user}`, shared by every watcher's copy of the change.
    pub topic: Arc<str>,
    /// The state, exactly as clients receive it.
    pub payload: Bytes,
    /// The change's number (see `presence::RelayedChange`).
    pub seq: u64,
}

/// The hub's side of one session.
pub struct SessionEntry {
    id: u64,
    user: String,
    client_id: String,
    deliveries: Mailbox<Delivery>,
    /// Bytes of the session's QoS 1 PUBLISHes not yet acknowledged (kept by the session),
    /// which count against the mailbox's byte budget.
    inflight_bytes: AtomicUsize,
    lagged: AtomicBool,
    /// A presence change was dropped because the mailbox was full.
    presence_stale: AtomicBool,
    stop: CancellationToken,
    reason: AtomicU8,
}

impl SessionEntry {
    /// Cancelled when the session must end.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Why the session was stopped.
    pub fn stop_reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            1 => StopReason::TakenOver,
            2 => StopReason::Administrative,
            3 => StopReason::Shutdown,
            _ => StopReason::None,
        }
    }

    /// The next delivery for this session (cancel-safe).
    pub async fn next_delivery(&self) -> Delivery {
        self.deliveries.pop().await
    }

    /// The next delivery if one is waiting now.
    pub fn try_next_delivery(&self) -> Option<Delivery> {
        self.deliveries.try_pop()
    }

    /// True once since the hub last had to drop a delivery for this session.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }

    /// Records the bytes of the session's QoS 1 PUBLISHes not yet acknowledged (and of the
    /// deliveries it holds while it reads its queue): the mailbox takes new deliveries only
    /// while they and its own bytes stay within the budget.
    pub fn set_inflight_bytes(&self, bytes: usize) {
        self.inflight_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes this session holds for its client: deliveries waiting plus messages in flight.
    pub fn buffered_bytes(&self) -> usize {
        self.deliveries.bytes() + self.inflight_bytes.load(Ordering::Relaxed)
    }

    /// Queues a delivery within the mailbox's limits; false when it was dropped instead.
    fn offer(&self, delivery: Delivery) -> bool {
        let weight = delivery.weight();
        let inflight = self.inflight_bytes.load(Ordering::Relaxed);
        self.deliveries.try_push(delivery, weight, inflight).is_ok()
    }

    /// The number that identifies this session (its connection ticket).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues a presence change for this session. When the mailbox is full the change is
    /// dropped and the session is told to send the current state of every user it watches
    /// instead: presence is a state, so the newest one replaces whatever was missed.
    pub fn push_presence(&self, change: PresenceChange) {
        if !self.offer(Delivery::Presence(change)) {
            self.presence_stale.store(true, Ordering::Release);
        }
    }

    /// See [`Hub::wake_all`].
    fn wake(&self) {
        self.lagged.store(true, Ordering::Release);
        let _ = self.offer(Delivery::Wake);
    }

    /// True once since a presence change for this session was dropped.
    pub fn take_presence_stale(&self) -> bool {
        self.presence_stale.swap(false, Ordering::AcqRel)
    }

    fn stop_with(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            StopReason::None as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.stop.cancel();
    }
}

/// A login's place among its user's sessions (see [`Hub::claim`]), held from the credentials
/// check until the session is registered; dropping it gives the place back.
pub struct SessionClaim {
    hub: Arc<Hub>,
    user: String,
    id: u64,
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if let Some(list) = inner.claims.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                inner.claims.remove(&self.user);
            }
        }
    }
}

/// A registered session: its entry, shared with the hub, which also holds its deliveries.
pub struct Registration {
    /// Shared with the hub.
    pub entry: Arc<SessionEntry>,
}

#[derive(Default)]
struct Inner {
    by_user: HashMap<String, Vec<Arc<SessionEntry>>>,
    by_client: HashMap<String, Arc<SessionEntry>>,
    /// How often each user's credentials were revoked (account removed, password changed).
    revocations: HashMap<String, u64>,
    /// Places among their user's sessions taken by logins not yet registered: (claim, client id).
    claims: HashMap<String, Vec<(u64, String)>>,
}

/// Called with the user when a message is queued for a user with no session on this node.
pub type OfflineHook = Box<dyn Fn(&str) + Send + Sync>;

/// The registry of connected sessions.
pub struct Hub {
    inner: Mutex<Inner>,
    /// Bytes each session may hold for its client (`limits.max_session_buffer_bytes`).
    session_buffer: usize,
    next_id: AtomicU64,
    next_claim: AtomicU64,
    /// Told about inbox deliveries that found no session (wakes the push bridge).
    offline: OnceLock<OfflineHook>,
}

impl Hub {
    /// An empty hub whose sessions hold at most 1 MiB each (the default budget).
    #[cfg(test)]
    pub fn new() -> Hub {
        Hub::with_session_buffer(1024 * 1024)
    }

    /// An empty hub whose sessions each hold at most `bytes` of deliveries waiting in their
    /// mailbox plus messages in flight (`limits.max_session_buffer_bytes`).
    pub fn with_session_buffer(bytes: usize) -> Hub {
        Hub {
            inner: Mutex::default(),
            session_buffer: bytes,
            next_id: AtomicU64::default(),
            next_claim: AtomicU64::default(),
            offline: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters more than refusing all further service, so recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revocation count of `user`, read before its credentials are checked: a login whose
    /// check overlapped a revocation is refused at registration (see [`Hub::register`]).
    pub fn revocation(&self, user: &str) -> u64 {
        self.lock().revocations.get(user).copied().unwrap_or(0)
    }

    /// A number for a new connection, taken when it is accepted: the order of connections, so
    /// that a takeover always goes to the newest one whatever order their handshakes end in.
    pub fn ticket(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a session holding `ticket`; an existing session with the same client id is told to
    /// stop (takeover) — unless it is the newer connection, in which case the new registration
    /// is born stopped. It is also born stopped when the user's credentials were revoked since
    /// `revocation` was read (a login racing an account removal or password change).
    pub fn register(
        &self,
        user: &str,
        client_id: &str,
        ticket: u64,
        revocation: u64,
    ) -> Registration {
        let entry = Arc::new(SessionEntry {
            id: ticket,
            user: user.to_string(),
            client_id: client_id.to_string(),
            deliveries: Mailbox::new(SESSION_CHANNEL, self.session_buffer),
            inflight_bytes: AtomicUsize::new(0),
            lagged: AtomicBool::new(false),
            presence_stale: AtomicBool::new(false),
            stop: CancellationToken::new(),
            reason: AtomicU8::new(StopReason::None as u8),
        });
        let previous = {
            let mut inner = self.lock();
            if inner.revocations.get(user).copied().unwrap_or(0) != revocation {
                drop(inner);
                entry.stop_with(StopReason::Administrative);
                return Registration { entry };
            }
            if inner
                .by_client
                .get(client_id)
                .is_some_and(|existing| existing.id > ticket)
            {
                drop(inner);
                entry.stop_with(StopReason::TakenOver);
                return Registration { entry };
            }
            let previous = inner.by_client.insert(client_id.to_string(), entry.clone());
            if let Some(old) = &previous {
                remove_from_user(&mut inner, old);
            }
            inner
                .by_user
                .entry(user.to_string())
                .or_default()
                .push(entry.clone());
            previous
        };
        if let Some(old) = previous {
            old.stop_with(StopReason::TakenOver);
        }
        Registration { entry }
    }

    /// Takes a place among `user`'s sessions for a login with `client_id`, or `None` when the
    /// user already has `max` distinct client ids connected or logging in. A client id that is
    /// already among them takes that place over and is never refused, nor counted twice.
    /// Checked and taken under the hub's lock, so concurrent logins cannot overrun `max`.
    pub fn claim(
        self: &Arc<Self>,
        user: &str,
        client_id: &str,
        max: usize,
    ) -> Option<SessionClaim> {
        let mut inner = self.lock();
        let sessions = inner.by_user.get(user).map(Vec::as_slice).unwrap_or(&[]);
        let claims = inner.claims.get(user).map(Vec::as_slice).unwrap_or(&[]);
        let mut ids: Vec<&str> = sessions
            .iter()
            .map(|s| s.client_id.as_str())
            .chain(claims.iter().map(|(_, c)| c.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.contains(&client_id) && ids.len() >= max {
            return None;
        }
        let id = self.next_claim.fetch_add(1, Ordering::Relaxed);
        inner
            .claims
            .entry(user.to_string())
            .or_default()
            .push((id, client_id.to_string()));
        Some(SessionClaim {
            hub: self.clone(),
            user: user.to_string(),
            id,
        })
    }

    /// Removes a session (only if it is still the registered one for its client id).
    pub fn deregister(&self, entry: &Arc<SessionEntry>) {
        let mut inner = self.lock();
        if inner
            .by_client
            .get(&entry.client_id)
            .is_some_and(|e| e.id == entry.id)
        {
            inner.by_client.remove(&entry.client_id);
        }
        remove_from_user(&mut inner, entry);
    }

    /// Stops the session registered for `client_id` because a new connection takes it over;
    /// false when none is registered (yet).
    pub fn stop_client(&self, client_id: &str) -> bool {
        let session = self.lock().by_client.get(client_id).cloned();
        match session {
            Some(s) => {
                s.stop_with(StopReason::TakenOver);
                true
            }
            None => false,
        }
    }

    /// Stops every session of `user` (account removed or password changed).
    pub fn kick_user(&self, user: &str) {
        let sessions: Vec<_> = {
            let mut inner = self.lock();
            *inner.revocations.entry(user.to_string()).or_insert(0) += 1;
            inner.by_user.get(user).cloned().unwrap_or_default()
        };
        for s in sessions {
            s.stop_with(StopReason::Administrative);
        }
    }

    /// Waits (polling, at most `limit`) until `user` has no registered session; true if so.
    /// After [`Hub::kick_user`], this is when nothing more of theirs can be stored.
    pub async fn wait_gone(&self, user: &str, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.lock().by_user.contains_key(user) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Makes every session read its queue from the store again: deliveries from other nodes
    /// of a cluster may have been lost (the bus was down). Each session is marked lagged (so
    /// it stops taking queued deliveries from the hub until it has read the store) and woken
    /// with a [`Delivery::Wake`]; one whose mailbox is full is busy anyway and sees the mark
    /// next.
    pub fn wake_all(&self) {
        let sessions: Vec<_> = self.lock().by_client.values().cloned().collect();
        for s in sessions {
            s.wake();
        }
    }

    /// Stops every session (server shutdown).
    pub fn stop_all(&self) {
        let sessions: Vec<_> = self.lock().by_client.values().cloned().collect();
        for s in sessions {
            s.stop_with(StopReason::Shutdown);
        }
    }

    /// Number of registered sessions.
    pub fn session_count(&self) -> usize {
        self.lock().by_client.len()
    }

    /// Prometheus text of what sessions hold for their clients: the bytes of all of them and
    /// the most one holds (bounded by `limits.max_session_buffer_bytes`).
    pub fn render_metrics(&self) -> String {
        let sessions: Vec<_> = self.lock().by_client.values().cloned().collect();
        let (mut total, mut most) = (0usize, 0usize);
        for s in &sessions {
            let held = s.buffered_bytes();
            total += held;
            most = most.max(held);
        }
        let mut out = String::new();
        for (name, help, value) in [
            (
                "chatd_session_buffered_bytes",
                "Bytes of deliveries waiting in sessions' mailboxes plus messages in flight, all sessions.",
                total,
            ),
            (
                "chatd_session_buffered_bytes_max",
                "The most bytes one session holds (waiting plus in flight); at most limits.max_session_buffer_bytes plus one message.",
                most,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }

    /// Installs the hook told about every queued inbox item for a user with no session (the
    /// push bridge's wake-up). Only the first call counts; the hook must not block.
    pub fn on_offline_delivery(&self, hook: OfflineHook) {
        if self.offline.set(hook).is_err() {
            tracing::warn!("offline delivery hook already installed");
        }
    }
}

fn remove_from_user(inner: &mut Inner, entry: &Arc<SessionEntry>) {
    if let Some(list) = inner.by_user.get_mut(&entry.user) {
        list.retain(|e| e.id != entry.id);
        if list.is_empty() {
            inner.by_user.remove(&entry.user);
        }
    }
}

impl Hub {
    /// Delivers to every session of `item.user` except session `except` (used for replies,
    /// which the requesting session writes itself).
    pub fn deliver_except(&self, item: Outgoing, except: &SessionEntry) {
        self.deliver_filtered(item, Some(except.id));
    }

    /// Delivers an item another node of a cluster committed or received: to this node's
    /// sessions of the user, if any. The offline hook is not told (the node that committed
    /// it decided about push).
    pub fn deliver_from_elsewhere(&self, item: Outgoing) {
        self.deliver_filtered_with(item, None, false);
    }

    fn deliver_filtered(&self, item: Outgoing, except: Option<u64>) {
        self.deliver_filtered_with(item, except, true);
    }

    fn deliver_filtered_with(&self, item: Outgoing, except: Option<u64>, hook: bool) {
        let sessions: Vec<_> = match self.lock().by_user.get(&item.user) {
            Some(list) => list.clone(),
            None => {
                if hook && item.queue_id.is_some() && item.channel == Channel::Inbox {
                    if let Some(hook) = self.offline.get() {
                        hook(&item.user);
                    }
                }
                return;
            }
        };
        for s in sessions {
            if Some(s.id) == except || item.skip_client.as_deref() == Some(s.client_id.as_str()) {
                continue;
            }
            // Once a queued delivery was dropped, later ones would arrive out of order: the
            // session re-reads its queue from the store instead.
            if item.queue_id.is_some() && s.lagged.load(Ordering::Acquire) {
                continue;
            }
            if !s.offer(Delivery::Item(item.clone())) && item.queue_id.is_some() {
                s.lagged.store(true, Ordering::Release);
            }
        }
    }
}

impl Deliver for Hub {
    fn deliver(&self, item: Outgoing) {
        self.deliver_filtered(item, None);
    }

    fn is_online(&self, user: &str) -> bool {
        self.lock().by_user.get(user).is_some_and(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(user: &str, id: &str) -> Outgoing {
        Outgoing {
            user: user.into(),
            channel: Channel::Inbox,
            payload: bytes::Bytes::from_static(b"{}"),
            queue_id: Some(id.into()),
            skip_client: None,
        }
    }

    #[test]
    fn takeover_stops_the_old_session_only() {
        let hub = Hub::new();
        let a = hub.register("alice", "alice:phone", hub.ticket(), 0);
        let b = hub.register("alice", "alice:phone", hub.ticket(), 0);
        assert_eq!(a.entry.stop_reason(), StopReason::TakenOver);
        assert_eq!(b.entry.stop_reason(), StopReason::None);
        hub.deregister(&a.entry);
        assert_eq!(hub.session_count(), 1);
        hub.deregister(&b.entry);
        assert_eq!(hub.session_count(), 0);
    }

    #[test]
    fn an_older_connection_never_takes_over_a_newer_one() {
        let hub = Hub::new();
        let (older, newer) = (hub.ticket(), hub.ticket());
        let new = hub.register("alice", "alice:phone", newer, 0);
        let old = hub.register("alice", "alice:phone", older, 0);
        assert_eq!(old.entry.stop_reason(), StopReason::TakenOver);
        assert_eq!(new.entry.stop_reason(), StopReason::None);
        hub.deregister(&old.entry);
        assert_eq!(hub.session_count(), 1);
    }

    #[test]
    fn a_login_racing_a_revocation_is_refused() {
        let hub = Hub::new();
        let seen = hub.revocation("carol");
        hub.kick_user("carol");
        let late = hub.register("carol", "carol", hub.ticket(), seen);
        assert_eq!(late.entry.stop_reason(), StopReason::Administrative);
        let fresh = hub.register("carol", "carol", hub.ticket(), hub.revocation("carol"));
        assert_eq!(fresh.entry.stop_reason(), StopReason::None);
    }

    #[test]
    fn wake_all_marks_every_session_lagged_and_wakes_it() {
        let hub = Hub::new();
        let phone = hub.register("bob", "bob:phone", hub.ticket(), 0);
        let other = hub.register("carol", "carol", hub.ticket(), 0);
        hub.wake_all();
        for reg in [&phone, &other] {
            assert!(reg.entry.take_lagged());
            assert!(matches!(
                reg.entry.try_next_delivery(),
                Some(Delivery::Wake)
            ));
        }
    }

    #[test]
    fn a_delivery_from_elsewhere_does_not_call_the_offline_hook() {
        let hub = Hub::new();
        let called = Arc::new(AtomicUsize::new(0));
        let seen = called.clone();
        hub.on_offline_delivery(Box::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        }));
        hub.deliver_from_elsewhere(item("bob", "00001"));
        assert_eq!(called.load(Ordering::Relaxed), 0);
        hub.deliver(item("bob", "00002"));
        assert_eq!(called.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn full_channel_marks_lagged_and_stops_queued_deliveries() {
        let hub = Hub::new();
        let reg = hub.register("bob", "bob", hub.ticket(), 0);
        for i in 0..SESSION_CHANNEL + 5 {
            hub.deliver(item("bob", &format!("{i:05}")));
        }
        assert!(reg.entry.take_lagged());
        let mut n = 0;
        while reg.entry.deliveries.try_pop().is_some() {
            n += 1;
        }
        assert_eq!(n, SESSION_CHANNEL);
    }

    #[test]
    fn the_byte_budget_counts_messages_in_flight_and_marks_lagged() {
        let hub = Hub::with_session_buffer(64 * 1024);
        let reg = hub.register("bob", "bob", hub.ticket(), 0);
        let big = |id: &str| Outgoing {
            payload: bytes::Bytes::from(vec![b'x'; 16 * 1024]),
            ..item("bob", id)
        };
        for i in 0..10 {
            hub.deliver(big(&format!("{i:05}")));
        }
        assert!(reg.entry.take_lagged());
        assert_eq!(
            reg.entry.deliveries.waiting(),
            3,
            "three of 16 KiB and more fit in 64 KiB"
        );
        assert!(reg.entry.buffered_bytes() <= 64 * 1024);
        while reg.entry.deliveries.try_pop().is_some() {}
        // With 40 KiB in flight only one more fits.
        reg.entry.set_inflight_bytes(40 * 1024);
        hub.deliver(big("00100"));
        hub.deliver(big("00101"));
        assert_eq!(reg.entry.deliveries.waiting(), 1);
        assert!(reg.entry.take_lagged());
        assert!(reg.entry.buffered_bytes() <= 64 * 1024);
        assert!(hub
            .render_metrics()
            .contains("chatd_session_buffered_bytes_max "));
    }

    #[test]
    fn queued_inbox_items_for_offline_users_call_the_hook() {
        use std::sync::atomic::AtomicUsize;
        let hub = Hub::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        hub.on_offline_delivery(Box::new(move |user| {
            assert_eq!(user, "bob");
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        hub.deliver(item("bob", "1"));
        let _reg = hub.register("bob", "bob", hub.ticket(), 0);
        hub.deliver(item("bob", "2"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn claims_cap_distinct_client_ids_but_not_takeovers() {
        let hub = Arc::new(Hub::new());
        let a = hub.claim("dora", "dora:a", 2).expect("first");
        let _ra = hub.register("dora", "dora:a", hub.ticket(), 0);
        drop(a);
        let b = hub
            .claim("dora", "dora:b", 2)
            .expect("second, still logging in");
        assert!(
            hub.claim("dora", "dora:c", 2).is_none(),
            "a third client id"
        );
        // The same client ids again: takeovers, never refused.
        assert!(hub.claim("dora", "dora:a", 2).is_some());
        assert!(hub.claim("dora", "dora:b", 2).is_some());
        // A failed login gives its place back.
        drop(b);
        assert!(hub.claim("dora", "dora:c", 2).is_some());
        assert!(hub.claim("other", "other", 2).is_some());
    }

    #[test]
    fn deliveries_reach_every_device() {
        let hub = Hub::new();
        let a = hub.register("bob", "bob:a", hub.ticket(), 0);
        let b = hub.register("bob", "bob:b", hub.ticket(), 0);
        hub.deliver(item("bob", "1"));
        assert!(a.entry.deliveries.try_pop().is_some());
        assert!(b.entry.deliveries.try_pop().is_some());
    }
}
