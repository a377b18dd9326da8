//! One client connection after CONNACK: authorizes every PUBLISH and SUBSCRIBE, hands chat
//! traffic to the plugins, delivers per-user traffic and presence changes from its mailbox in the
//! hub, and enforces keep-alive and the in-flight window.
//!
//! The session owns the client-facing packet id space: everything it writes at QoS 1 gets an id
//! from here, whatever its source, so queued messages, replies and presence never collide. It
//! also honours the client's MQTT 5 limits on every path: Receive Maximum (QoS 1 PUBLISHes not
//! yet acknowledged; replies and presence that find the window full wait in [`waiting`]) and
//! Maximum Packet Size (the size of every packet is known before it is written; see
//! [`Session::publish`]).
//!
//! A client that stops reading or acknowledging costs bounded memory and time: what the session
//! holds for it — deliveries waiting in its mailbox plus PUBLISHes in flight — is bounded in
//! bytes (`limits.max_session_buffer_bytes`; past it the session stops taking deliveries and
//! later re-reads its queue from the store), and a PUBLISH left unacknowledged for
//! `limits.ack_timeout_secs` ends the session (see [`inflight`]). Live deliveries held while
//! the queue is read are bounded in count and bytes too (see [`held`]).

pub mod connect;
mod held;
mod inbox;
mod inflight;
mod oversize;
mod replies;
mod reply_to;
mod sent_ids;
mod strict;
mod subscriptions;
mod waiting;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chatd_auth::acl::{self, ChatTopic};
use chatd_core::outbox::{Channel, Outgoing};
use chatd_wire::request::Caller;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use rumqttd::protocol::{
    DisconnectReasonCode, Filter, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason,
    PubRec, PubRecReason, Publish, PublishProperties, QoS, RetainForwardRule, Subscribe,
};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::handshake_gate::Arrival;
use crate::hub::{Delivery, SessionEntry, StopReason};
use crate::kept::state::KeptState;
use crate::kept::WillFn;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::transport::Transport;
use crate::typing::TypingOutcome;
use crate::untrusted::Untrusted;
use crate::user_rate::{self, Refused};
use crate::wire::{Codec, Incoming, PublishMeta, Version, WireError};

use self::connect::Accepted;
use self::held::{Held, HeldItem};
use self::inbox::{Inbox, Live};
use self::inflight::InFlight;
use self::replies::Replies;
use self::reply_to::ReplyTo;
use self::subscriptions::{Quota, Subscriptions};
use self::waiting::{Waited, Waiting};

/// Publishes from one client being stored or answered at once; past this the socket is not read
/// (MQTT 5: QoS 0 ones only, see [`Session::may_read`]).
const MAX_PENDING: usize = 64;

/// Packet ids in use at most; beyond this a session writes at QoS 0.
const MAX_INFLIGHT_IDS: usize = 60_000;

/// Bytes handed to the transport at a time: `limits.write_timeout_secs` bounds the time each
/// piece takes, so a slow but live link is never mistaken for a dead one.
const WRITE_CHUNK: usize = 64 * 1024;

/// Events already waiting that one turn of the loop handles before it writes (see
/// [`Session::take_ready`]).
const MAX_READY_PER_WRITE: usize = 256;

/// The DUP flag of a PUBLISH's first byte.
const DUP: u8 = 0x08;

/// How long a session waits for its in-flight stores when the server shuts down.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Runs one connection from its first byte to its end. `arrival` holds the connection's place
/// among its source address's pending handshakes until CONNECT is answered.
pub async fn run<T: Transport>(mut t: T, shared: Arc<Shared>, arrival: Arrival) {
    Metrics::inc(&shared.metrics.accepted_total);
    let ticket = shared.hub.ticket();
    // The handshake and `finish` run boxed, and the session itself is boxed: the task keeps only
    // what an idle session needs. The block ends the handshake's locals before the session runs.
    // (A future boxed in the statement that awaits it would still take room in the task.)
    let session = {
        let accepted = connect::handshake(&mut t, &shared, arrival.source(), ticket).await;
        drop(arrival);
        accepted.map(|accepted| Session::start(accepted, ticket, &shared))
    };
    let Some(mut session) = session else {
        let _ = tokio::time::timeout(Duration::from_secs(2), t.close()).await;
        return;
    };
    let end = session.serve(&mut t).await;
    let finish = Box::pin(session.finish(&mut t, end));
    finish.await;
    shared
        .conn_cache
        .disconnected(&session.user, &session.client_id);
    shared.presence.disconnected(&session.user);
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT; `will` when it asked for its will anyway (MQTT 5).
    Disconnected { will: bool },
    /// The socket closed or failed without DISCONNECT.
    Lost,
    /// No packet from the client within 1.5 x keep-alive.
    KeepAlive,
    /// The client read nothing for `limits.write_timeout_secs` while output waited.
    Stalled,
    /// The client left a QoS 1 PUBLISH unacknowledged for `limits.ack_timeout_secs`.
    AckTimeout,
    /// The client broke the protocol.
    ProtocolError(DisconnectReasonCode),
    /// The client published where it may not (MQTT 3.1.1 has no other answer).
    Forbidden,
    /// The hub stopped the session.
    Stopped(StopReason),
}

/// A publish's answer, in the order the publishes arrived (PUBACKs must keep that order).
struct Reply {
    /// JSON to publish on the user's channel (`user/{me}/ack` or `user/{me}/rpc`).
    message: Option<(Channel, Bytes)>,
    /// QoS and packet id of the client's publish, and the reason to acknowledge it with.
    ack: Option<(PublishMeta, bool)>,
    /// A control packet due once something is done (a kept session's SUBACK, once the new
    /// subscriptions are on disk).
    control: Option<Box<Packet>>,
    /// Where an MQTT 5 rpc request asked for its answer (`None` for nearly every reply).
    reply_to: Option<Box<ReplyTo>>,
}

enum Event {
    Stop,
    Reply(Reply),
    Read(std::io::Result<usize>),
    Delivery(Delivery),
    KeepAlive,
    AckTimeout,
    Continue,
}

struct Session {
    shared: Arc<Shared>,
    codec: Codec,
    user: String,
    client_id: String,
    keep_alive: Option<Duration>,
    will: Option<(String, Bytes)>,
    /// MQTT 5 Will Delay Interval, seconds.
    will_delay: u32,
    /// The connection's ticket: its id in the hub and in the keeper of sessions.
    ticket: u64,
    /// How long the session is kept after the connection ends (seconds; 0: not kept).
    expiry: u32,
    /// The Session Expiry Interval asked for at CONNECT (a DISCONNECT may not raise 0).
    asked_expiry: u32,
    entry: Arc<SessionEntry>,
    input: BytesMut,
    out: BytesMut,
    subs: Subscriptions,
    inflight: InFlight,
    next_pkid: u16,
    window: usize,
    /// Replies and presence states waiting for room in the client's receive window.
    waiting: Waiting,
    /// Set when the session must end at the next turn of its loop (a packet the client
    /// cannot take).
    closing: Option<End>,
    inbox: Inbox,
    /// Live deliveries of queued entries held while the queue is read (see [`held`]).
    held: Held,
    pending: Replies<BoxFuture<'static, Reply>>,
    /// Publishes in `pending` at QoS 1 or 2, not acknowledged yet (MQTT 5 Receive Maximum).
    unacknowledged: usize,
    qos2_received: HashSet<u16>,
    last_heard: Instant,
}

impl Session {
    /// Registers an accepted connection with the hub and the connection cache (presence counted
    /// it online before CONNACK, see `connect::accept`).
    fn start(mut accepted: Accepted, ticket: u64, shared: &Arc<Shared>) -> Box<Session> {
        // The handshake took this session's connection slot (`metrics.connections`).
        let registration = shared.hub.register(
            &accepted.user,
            &accepted.client_id,
            ticket,
            accepted.revocation,
        );
        // Registered (or born stopped): the place held for it during the handshake is not
        // needed any more.
        drop(accepted.claim.take());
        shared
            .conn_cache
            .connected(&accepted.user, &accepted.client_id);
        debug!(client_id = %accepted.client_id, "session started");
        let present = accepted.kept.present;
        let resumed = std::mem::take(&mut accepted.kept.state);
        // Boxed: the connection task then holds a pointer, not copies of the session.
        let mut session = Box::new(Session::new(accepted, registration.entry, shared.clone()));
        if present {
            session.resume(resumed);
        }
        session
    }

    /// Takes up a resumed session's state: the PUBLISHes it had not acknowledged are resent
    /// first, with DUP and their packet ids ([MQTT-4.4.0-1]); its filters hold again without
    /// a SUBSCRIBE, so the queue is read as after one; each watched user's current state is
    /// sent, as what changed while the client was away.
    fn resume(&mut self, state: KeptState) {
        let per_packet = self.shared.limits.max_filters_per_subscribe.max(1);
        let mut presence = Vec::new();
        for chunk in state.filters.chunks(per_packet) {
            let filters = chunk
                .iter()
                .map(|(path, qos)| Filter {
                    path: path.clone(),
                    qos: if *qos == 0 {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    },
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect();
            let outcome = self
                .subs
                .subscribe(Subscribe { pkid: 1, filters }, self.codec.version());
            for user in &outcome.watch {
                self.shared.presence_relay.watch(user, &self.entry);
            }
            presence.extend(outcome.presence);
        }
        self.inbox.set_coverage(self.subs.queue_coverage());
        let now = Instant::now();
        for unacked in state.unacked {
            let size = self
                .codec
                .publish_size_with(&unacked.topic, unacked.payload.len(), 1, &[]);
            // A client that now takes smaller packets does not get it; a queued message
            // stays in the queue for a device that can.
            if self.inflight.contains(unacked.pkid) || size > self.codec.client_max_packet() {
                continue;
            }
            if let Some(id) = &unacked.queue_id {
                self.inbox.resent(id);
            }
            let start = self.out.len();
            self.codec.write_publish_with(
                &unacked.topic,
                &unacked.payload,
                1,
                unacked.pkid,
                false,
                &[],
                &mut self.out,
            );
            if let Some(first) = self.out.get_mut(start) {
                *first |= DUP;
            }
            let kept = Some((unacked.topic, unacked.payload));
            self.inflight
                .insert(unacked.pkid, unacked.queue_id, size, now, kept);
        }
        self.report_held_bytes();
        for filter in presence {
            if let Some(qos) = self.subs.presence_granted(&filter) {
                self.offer_presence(&filter, qos, false);
            }
        }
    }

    /// What a kept session saves: its filters and the PUBLISHes in flight.
    fn kept_state(&self) -> KeptState {
        KeptState {
            filters: self.subs.filters(),
            unacked: self.inflight.unacked(),
        }
    }

    /// Saves a kept session after its subscriptions changed; the receiver hears when it is
    /// on disk.
    fn save_session(&self) -> tokio::sync::oneshot::Receiver<()> {
        let state = self.kept_state();
        self.shared
            .kept
            .save(&self.client_id, &self.user, self.expiry, &state)
    }

    fn new(accepted: Accepted, entry: Arc<SessionEntry>, shared: Arc<Shared>) -> Session {
        let keep_alive = (accepted.keep_alive > 0)
            .then(|| Duration::from_millis(accepted.keep_alive as u64 * 1500));
        let quota = Quota {
            per_packet: shared.limits.max_filters_per_subscribe,
            filters: shared.limits.max_subscriptions,
            watches: shared.limits.max_presence_watches,
        };
        Session {
            window: accepted.receive_maximum as usize,
            waiting: Waiting::default(),
            closing: None,
            codec: accepted.codec,
            subs: Subscriptions::new(&accepted.user, quota),
            user: accepted.user,
            client_id: accepted.client_id,
            keep_alive,
            will: accepted.will,
            will_delay: accepted.will_delay,
            ticket: accepted.ticket,
            expiry: accepted.kept.expiry_secs,
            asked_expiry: accepted.asked_expiry,
            entry,
            input: accepted.leftover,
            out: BytesMut::new(),
            inflight: InFlight::default(),
            next_pkid: 0,
            inbox: if shared.cluster {
                Inbox::rescanning()
            } else {
                Inbox::default()
            },
            held: Held::default(),
            pending: Replies::new(),
            unacknowledged: 0,
            qos2_received: HashSet::new(),
            last_heard: Instant::now(),
            shared,
        }
    }

    /// QoS 1 PUBLISHes that may be written now: the client's window, unless the bytes in
    /// flight or waiting to be written reached the session's byte budget (a PUBLISH larger than
    /// the budget still goes out when nothing else is in flight or waiting).
    fn room(&self) -> usize {
        let budget = self.shared.limits.max_session_buffer_bytes;
        if self.inflight.bytes() >= budget || self.out.len() >= budget {
            return 0;
        }
        self.window.saturating_sub(self.inflight.len())
    }

    /// Whether more of the queue may be read from the store and written now: as [`Self::room`],
    /// and the deliveries still waiting in the mailbox count against the byte budget too (while
    /// replaying they are held or dropped when taken, but hold their bytes until then; they
    /// are taken whenever the window has room, so this never waits for long). The deliveries
    /// held do not count here: only the read lets them go.
    fn replay_room(&self) -> bool {
        let waiting = self
            .entry
            .buffered_bytes()
            .saturating_sub(self.held.bytes());
        self.room() > 0 && waiting < self.shared.limits.max_session_buffer_bytes
    }

    /// Tells the hub what the session holds for its client besides its mailbox: the PUBLISHes
    /// in flight and the deliveries held during a replay. The mailbox takes new deliveries only
    /// while everything stays within the byte budget, so held ones count as waiting ones do.
    fn report_held_bytes(&self) {
        self.entry
            .set_inflight_bytes(self.inflight.bytes() + self.held.bytes());
    }

    /// When the oldest PUBLISH in flight has waited `limits.ack_timeout_secs` for its PUBACK.
    fn ack_deadline(&self) -> Option<Instant> {
        let timeout = Duration::from_secs(self.shared.limits.ack_timeout_secs);
        self.inflight.oldest().map(|sent| sent + timeout)
    }

    /// Whether a QoS 1 PUBLISH may be written now: the window has room and nothing written
    /// earlier waits for it (what waits goes first).
    fn has_room_now(&self) -> bool {
        self.room() > 0 && self.waiting.is_empty()
    }

    /// Whether the socket may be read: the publishes being answered are bounded. 3.1.1: at most
    /// [`MAX_PENDING`] of them, whatever their QoS (back-pressure: the client waits). MQTT 5:
    /// the QoS 1 ones are bounded by the Receive Maximum CONNACK announced (one more ends the
    /// session, see [`strict`]), so the socket is read while they are answered — else a 65th
    /// could never be seen; the QoS 0 ones, which no window bounds, stop reading past
    /// [`MAX_PENDING`].
    fn may_read(&self) -> bool {
        let counted = match self.codec.version() {
            Version::V4 => self.pending.len(),
            Version::V5 => self.pending.len().saturating_sub(self.unacknowledged),
        };
        counted < MAX_PENDING
    }

    async fn serve<T: Transport>(&mut self, t: &mut T) -> End {
        // Bytes that came with CONNECT.
        if let Err(end) = self.on_bytes() {
            return end;
        }
        loop {
            if let Some(end) = self.closing.take() {
                return end;
            }
            if self.entry.take_lagged() {
                self.inbox.lagged();
            }
            if self.entry.take_presence_stale() {
                self.resend_presence();
            }
            // What waited for the window goes before anything new (deliveries are taken only
            // while the window has room, so after this nothing waits when they are).
            self.send_waiting();
            self.replay();
            if !self.out.is_empty() {
                // Boxed: the write's state exists only while output waits.
                let flush = Box::pin(self.flush_out(t));
                if let Err(end) = flush.await {
                    return end;
                }
            }
            self.release_idle_input();
            // Checked here as well as in the select: a client that keeps sending keeps the
            // branches before it ready.
            let ack_deadline = self.ack_deadline();
            if ack_deadline.is_some_and(|d| d <= Instant::now()) {
                return self.ack_timeout();
            }
            let deadline = self.keep_alive.map(|ka| self.last_heard + ka);
            let event = tokio::select! {
                biased;
                _ = self.entry.stop_token().cancelled() => Event::Stop,
                Some(reply) = self.pending.next(), if !self.pending.is_empty() => Event::Reply(reply),
                r = t.read_into(&mut self.input), if self.may_read() => Event::Read(r),
                item = self.entry.next_delivery(), if self.room() > 0 => Event::Delivery(item),
                _ = sleep_until(deadline).boxed(), if deadline.is_some() => Event::KeepAlive,
                _ = sleep_until(ack_deadline).boxed(), if ack_deadline.is_some() => Event::AckTimeout,
                _ = std::future::ready(()), if self.inbox.is_replaying() && self.room() > 0 => Event::Continue,
            };
            match event {
                Event::Stop => return End::Stopped(self.entry.stop_reason()),
                Event::Reply(reply) => self.on_reply(reply),
                Event::Read(Ok(0)) | Event::Read(Err(_)) => return End::Lost,
                Event::Read(Ok(_)) => {
                    // Before the bytes are handled: a client with Nagle's algorithm on may be
                    // holding its next packet until this read is acknowledged.
                    t.acknowledge_read();
                    self.last_heard = Instant::now();
                    if let Err(end) = self.on_bytes() {
                        return end;
                    }
                }
                Event::Delivery(item) => self.on_delivery(item),
                Event::KeepAlive => return End::KeepAlive,
                Event::AckTimeout => return self.ack_timeout(),
                Event::Continue => {}
            }
            self.take_ready();
        }
    }

    /// Handles the answers and deliveries that are ready now before anything is written, so
    /// one write carries them all. Why: the answers to a client's publishes complete together,
    /// when the batch that stored them is on disk, and a receiver's messages arrive in its
    /// mailbox together; taking them one per turn made one `sendto` per packet, about two per
    /// message, the largest share of the sessions' CPU under load. Bounded in count and in
    /// bytes, so the socket is still read and written between bursts.
    fn take_ready(&mut self) {
        for _ in 0..MAX_READY_PER_WRITE {
            if self.closing.is_some() || self.out.len() >= WRITE_CHUNK {
                return;
            }
            if !self.pending.is_empty() {
                if let Some(Some(reply)) = self.pending.next().now_or_never() {
                    self.on_reply(reply);
                    continue;
                }
            }
            // As in the loop: deliveries are taken only while the window has room, and after
            // what waited for it.
            if self.has_room_now() {
                if let Some(delivery) = self.entry.try_next_delivery() {
                    self.on_delivery(delivery);
                    continue;
                }
            }
            return;
        }
    }

    /// A QoS 1 PUBLISH waited `limits.ack_timeout_secs` for its PUBACK: the client stopped
    /// reading or acknowledging (its socket buffers may still take the whole window, so writes
    /// need not stall). Its messages stay queued for its next connection.
    fn ack_timeout(&self) -> End {
        Metrics::inc(&self.shared.metrics.ack_timeouts_total);
        debug!(client_id = %self.client_id, in_flight = self.inflight.len(), "client acknowledges nothing; closing");
        End::AckTimeout
    }

    /// Writes the pending output. The output buffer is bounded by the QoS 1 window and by what
    /// one pass of the loop produces; a client that stops reading makes the writes stall, and
    /// after `limits.write_timeout_secs` without progress the session ends (its unacknowledged
    /// messages stay queued for its next connection).
    async fn flush_out<T: Transport>(&mut self, t: &mut T) -> Result<(), End> {
        let timeout = Duration::from_secs(self.shared.limits.write_timeout_secs);
        for chunk in self.out.chunks(WRITE_CHUNK) {
            match tokio::time::timeout(timeout, t.write_all_flush(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Lost),
                Err(_) => {
                    Metrics::inc(&self.shared.metrics.write_timeouts_total);
                    debug!(client_id = %self.client_id, "client reads nothing; closing");
                    return Err(End::Stalled);
                }
            }
        }
        // Output comes in bursts: an idle session keeps no buffer (a new one is cheap).
        self.out = BytesMut::new();
        Ok(())
    }

    /// Gives the input buffer's memory back once every packet in it is handled: an idle session
    /// keeps no read buffer (see [`Transport::read_into`]), and a large packet's buffer is not
    /// kept for the small ones after it.
    fn release_idle_input(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = BytesMut::new();
        }
    }

    /// Decodes and handles every complete packet in the input buffer.
    fn on_bytes(&mut self) -> Result<(), End> {
        loop {
            match self.codec.read(&mut self.input) {
                Ok(Some(incoming)) => {
                    self.on_packet(incoming)?;
                    if let Some(end) = self.closing.take() {
                        return Err(end);
                    }
                }
                Ok(None) => return Ok(()),
                Err(WireError::TooLarge(n)) => {
                    debug!(client_id = %self.client_id, "packet of {n} bytes refused");
                    return Err(End::ProtocolError(DisconnectReasonCode::PacketTooLarge));
                }
                Err(WireError::ProtocolError(e)) => {
                    debug!(client_id = %self.client_id, "protocol error: {e}");
                    return Err(End::ProtocolError(DisconnectReasonCode::ProtocolError));
                }
                Err(e) => {
                    debug!(client_id = %self.client_id, "protocol error: {e}");
                    return Err(End::ProtocolError(DisconnectReasonCode::MalformedPacket));
                }
            }
        }
    }

    fn on_packet(&mut self, incoming: Incoming) -> Result<(), End> {
        match incoming.packet {
            Packet::Publish(publish, props) => {
                if props.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                    return Err(End::ProtocolError(DisconnectReasonCode::TopicAliasInvalid));
                }
                let meta = incoming
                    .publish
                    .ok_or(End::ProtocolError(DisconnectReasonCode::MalformedPacket))?;
                if self.codec.version() == Version::V5 {
                    if let Some(code) =
                        strict::publish_refusal(meta.qos, publish.retain, self.unacknowledged)
                    {
                        debug!(client_id = %self.client_id, ?code, "publish beyond what CONNACK announced");
                        return Err(End::ProtocolError(code));
                    }
                }
                self.on_publish(publish, props, meta)
            }
            Packet::PubAck(ack, _) => {
                let acked = self.inflight.remove(ack.pkid);
                self.report_held_bytes();
                if let Some(Some(id)) = acked {
                    if let Err(e) = self.shared.chat.acked(&self.user, &id) {
                        warn!(user = %self.user, "cannot remove {id} from the queue: {e}");
                    }
                }
                Ok(())
            }
            Packet::PubRel(rel, _) => {
                self.qos2_received.remove(&rel.pkid);
                let comp = PubComp {
                    pkid: rel.pkid,
                    reason: PubCompReason::Success,
                };
                self.write(Packet::PubComp(comp, None));
                Ok(())
            }
            // The server never publishes at QoS 2, so these carry nothing to act on.
            Packet::PubRec(..) | Packet::PubComp(..) => Ok(()),
            Packet::Subscribe(subscribe, props) => {
                if self.codec.version() == Version::V5 {
                    if let Some(code) = strict::subscribe_refusal(&subscribe, &props) {
                        debug!(client_id = %self.client_id, ?code, "subscribe beyond what CONNACK announced");
                        return Err(End::ProtocolError(code));
                    }
                }
                let suback = self.subs.subscribe(subscribe, self.codec.version());
                // Watching starts before the current state is read, so no change falls between.
                for user in &suback.watch {
                    self.shared.presence_relay.watch(user, &self.entry);
                }
                if suback.refused > 0 {
                    Metrics::inc(&self.shared.metrics.subscribe_refused_total);
                }
                if suback.over_quota > 0 {
                    self.shared
                        .metrics
                        .subscriptions_over_quota_total
                        .fetch_add(suback.over_quota as u64, Ordering::Relaxed);
                }
                if self.expiry > 0 {
                    // Answered once the new filters are on disk.
                    let saved = self.save_session();
                    let packet = Box::new(suback.packet);
                    self.pending.push_back(
                        async move {
                            let _ = saved.await;
                            Reply {
                                message: None,
                                ack: None,
                                control: Some(packet),
                                reply_to: None,
                            }
                        }
                        .boxed(),
                    );
                } else {
                    self.write(suback.packet);
                    if let Some(end) = self.closing.take() {
                        return Err(end);
                    }
                }
                // The router keeps no retained presence: the current state goes straight to the
                // new subscriber, flagged retained as MQTT delivers retained messages.
                for filter in suback.presence {
                    if let Some(qos) = self.subs.presence_granted(&filter) {
                        self.offer_presence(&filter, qos, true);
                    }
                }
                self.inbox.set_coverage(self.subs.queue_coverage());
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe, _) => {
                let unsuback = self.subs.unsubscribe(unsubscribe, self.codec.version());
                for user in unsuback.unwatch {
                    self.shared.presence_relay.unwatch(&user, &self.entry);
                }
                self.write(unsuback.packet);
                self.inbox.set_coverage(self.subs.queue_coverage());
                // UNSUBACK promises nothing a crash could break: not waited for.
                drop(self.save_session());
                Ok(())
            }
            Packet::PingReq(_) => {
                self.write(Packet::PingResp(PingResp));
                Ok(())
            }
            Packet::Disconnect(d, props) => {
                if let Some(expiry) = props.and_then(|p| p.session_expiry_interval) {
                    // A session that was to end with its connection cannot be kept after all
                    // (a protocol error, MQTT 5.0 section 3.14.2.2.2).
                    if self.asked_expiry == 0 && expiry > 0 {
                        return Err(End::ProtocolError(DisconnectReasonCode::ProtocolError));
                    }
                    // A session the server does not keep (a limit) stays not kept.
                    if self.expiry > 0 {
                        self.expiry = expiry;
                    }
                }
                Err(End::Disconnected {
                    will: d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage,
                })
            }
            _ => Err(End::ProtocolError(DisconnectReasonCode::ProtocolError)),
        }
    }

    fn on_publish(
        &mut self,
        publish: Publish,
        props: Option<PublishProperties>,
        meta: PublishMeta,
    ) -> Result<(), End> {
        Metrics::inc(&self.shared.metrics.publishes_in_total);
        self.shared.conn_cache.activity(&self.user, &self.client_id);
        // Every path below answers a QoS 1 or 2 publish with exactly one acknowledgement (or
        // ends the session), which `on_reply` counts off.
        if meta.qos > 0 {
            self.unacknowledged += 1;
        }
        if meta.qos == 2 && !self.qos2_received.insert(meta.pkid) {
            // A retransmitted QoS 2 publish: acknowledge again, act once.
            self.pending.push_back(ready(None, Some((meta, true))));
            return Ok(());
        }
        let topic = std::str::from_utf8(&publish.topic)
            .map_err(|_| End::ProtocolError(DisconnectReasonCode::TopicNameInvalid))?;
        let ack = (meta.qos > 0).then_some((meta, true));
        let Some(kind) = acl::can_publish(&self.user, topic) else {
            debug!(user = %self.user, topic = %Untrusted(topic), "publish refused");
            Metrics::inc(&self.shared.metrics.protocol_errors_total);
            if self.codec.version() == Version::V4 {
                return Err(End::Forbidden);
            }
            let refused = (meta.qos > 0).then_some((meta, false));
            self.pending.push_back(ready(None, refused));
            return Ok(());
        };
        // MQTT 5 request / response: only an rpc request with these properties pays for them.
        let reply_to = match (kind, &props) {
            (ChatTopic::Rpc, Some(props)) => {
                ReplyTo::of(&self.user, props).map_err(End::ProtocolError)?
            }
            _ => None,
        };
        let reply = self.handle_chat(kind, publish.payload, ack);
        let reply = match reply_to {
            None => reply,
            Some(to) => reply
                .map(move |mut reply| {
                    reply.reply_to = Some(to);
                    reply
                })
                .boxed(),
        };
        self.pending.push_back(reply);
        Ok(())
    }

    /// The future that answers one publish on a `chat/{me}/…` topic.
    fn handle_chat(
        &self,
        kind: ChatTopic,
        payload: Bytes,
        ack: Option<(PublishMeta, bool)>,
    ) -> BoxFuture<'static, Reply> {
        chat_reply(
            &self.shared,
            &self.user,
            &self.client_id,
            kind,
            payload,
            ack,
        )
    }

    fn on_reply(&mut self, reply: Reply) {
        if let Some((channel, payload)) = reply.message {
            let target = match &reply.reply_to {
                None => self.subs.on(channel),
                Some(to) => to.target(&self.subs, channel),
            };
            if let (topic, Some(qos)) = target {
                self.offer_reply(channel, &topic, &payload, qos, reply.reply_to);
            }
            // The user's other devices subscribed to the same topic see it too (a phone sees
            // what the laptop sent; `mosquitto_sub` sees what `mosquitto_pub` sent).
            let item = Outgoing {
                user: self.user.clone(),
                channel,
                payload,
                queue_id: None,
                skip_client: None,
            };
            self.shared.deliver_unstored(item, Some(&self.entry));
        }
        if let Some((meta, ok)) = reply.ack {
            self.unacknowledged = self.unacknowledged.saturating_sub(1);
            let packet = match meta.qos {
                1 => Packet::PubAck(
                    PubAck {
                        pkid: meta.pkid,
                        reason: if ok {
                            PubAckReason::Success
                        } else {
                            PubAckReason::NotAuthorized
                        },
                    },
                    None,
                ),
                _ => Packet::PubRec(
                    PubRec {
                        pkid: meta.pkid,
                        reason: if ok {
                            PubRecReason::Success
                        } else {
                            PubRecReason::NotAuthorized
                        },
                    },
                    None,
                ),
            };
            self.write(packet);
        }
        if let Some(packet) = reply.control {
            self.write(*packet);
        }
    }

    fn on_delivery(&mut self, delivery: Delivery) {
        let item = match delivery {
            Delivery::Item(item) => item,
            Delivery::Presence(change) => {
                if let Some(qos) = self.subs.presence_change(&change.topic, change.seq) {
                    self.publish(&change.topic, &change.payload, qos, false, None);
                }
                return;
            }
            // The hub marked the session lagged: the loop reads the queue.
            Delivery::Wake => return,
        };
        let (topic, Some(granted)) = self.subs.on(item.channel) else {
            return;
        };
        // Typing indicators are fleeting: at most once, whatever the subscription asked for.
        let qos = if item.channel == Channel::Typing {
            0
        } else {
            granted
        };
        if let Some(id) = &item.queue_id {
            match self.inbox.takes_live(id) {
                Live::Send => {}
                Live::Skip => return,
                Live::Hold => {
                    let budget = self.shared.limits.max_session_buffer_bytes;
                    if let Some(id) = item.queue_id {
                        let held = HeldItem {
                            channel: item.channel,
                            payload: item.payload,
                        };
                        // Not held past the bounds: the read alone brings it.
                        if self.held.hold(id, held, budget) {
                            self.report_held_bytes();
                        }
                    }
                    return;
                }
            }
        }
        self.publish(&topic, &item.payload, qos, false, item.queue_id);
    }

    /// Sends what waits in the user's queue (messages, receipts) from the store while replaying,
    /// with the deliveries held meanwhile that the read does not find (see [`held`]), and tells
    /// the hub when what is held changed.
    fn replay(&mut self) {
        let held_before = self.held.bytes();
        self.read_queue();
        if self.held.bytes() != held_before {
            self.report_held_bytes();
        }
    }

    /// The read of [`Self::replay`]. Entries for topics this session does not read are passed
    /// over: they stay queued for a device that does.
    fn read_queue(&mut self) {
        if !self.inbox.is_replaying() {
            // Nothing is held once the queue is not read (no queued topic covered any more).
            self.held.clear();
            return;
        }
        let mut pages = 0;
        while self.inbox.is_replaying() && self.replay_room() && pages < 8 {
            pages += 1;
            let room = self.room();
            match self
                .shared
                .chat
                .backlog(&self.user, self.inbox.read_after(), room)
            {
                Ok(items) => {
                    let n = items.len();
                    let mut full = false;
                    for item in items {
                        // Held deliveries below this entry left the queue before the read
                        // came to them: they go first, in id order. The byte budget may run
                        // out before the window does: the rest of the page is read again once
                        // there is room.
                        let below = item.queue_id.as_deref();
                        let held_left = below.is_some_and(|id| !self.send_held(Some(id)));
                        if held_left || !self.replay_room() {
                            full = true;
                            break;
                        }
                        if let Some(id) = &item.queue_id {
                            self.held.found(id);
                            // Only what was sent before can be in flight: entries above the
                            // cursor skip the window scan (every replay on one node).
                            let sent_before = self.inbox.was_sent(id);
                            self.inbox.read(id);
                            // Read again by a rescan (cluster mode) while the client has it.
                            if sent_before && self.inflight.carries(id) {
                                continue;
                            }
                        }
                        match (self.subs.on(item.channel), item.queue_id) {
                            ((topic, Some(qos)), queue_id) => {
                                self.publish(&topic, &item.payload, qos, false, queue_id)
                            }
                            ((_, None), Some(id)) => self.inbox.sent(&id),
                            ((_, None), None) => {}
                        }
                    }
                    // The end of the queue: what is still held left it before the read came
                    // to it.
                    if !full && n < room && self.send_held(None) {
                        self.inbox.caught_up();
                    }
                }
                Err(e) => {
                    warn!(user = %self.user, "cannot read the queue: {e}");
                    self.send_held(None);
                    self.held.clear();
                    self.inbox.caught_up();
                }
            }
        }
    }

    /// Sends the held deliveries below queue id `below` (all of them when `None`), in id order,
    /// while there is room; false when some are left for lack of it. One sent meanwhile (cluster
    /// mode remembers) is not sent again; one whose topic is no longer subscribed is dropped.
    fn send_held(&mut self, below: Option<&str>) -> bool {
        while self.held.has_below(below) {
            if !self.replay_room() {
                return false;
            }
            let Some((id, item)) = self.held.take_below(below) else {
                break;
            };
            if self.inbox.sent_before(&id) {
                continue;
            }
            if let (topic, Some(qos)) = self.subs.on(item.channel) {
                self.publish(&topic, &item.payload, qos, false, Some(id));
            }
        }
        true
    }

    /// Sends the current state of every user this session watches, after a change was
    /// dropped because its mailbox was full.
    fn resend_presence(&mut self) {
        let topics: Vec<(String, u8)> = self
            .subs
            .presence_topics()
            .map(|(topic, qos)| (topic.to_string(), qos))
            .collect();
        for (topic, qos) in topics {
            self.offer_presence(&topic, qos, false);
        }
    }

    /// Writes a reply (ack, rpc answer) at `qos` now, or queues it while the client's receive
    /// window is full. Past [`waiting::MAX_WAITING_REPLIES`] it is written at QoS 0: Receive
    /// Maximum bounds only QoS 1, and the socket must still be read (the client's PUBACKs may
    /// be behind its requests), so a client that never acknowledges costs bounded memory.
    fn offer_reply(
        &mut self,
        channel: Channel,
        topic: &str,
        payload: &Bytes,
        qos: u8,
        to: Option<Box<ReplyTo>>,
    ) {
        if qos == 0 || self.has_room_now() {
            self.publish_reply(topic, payload, qos, to.as_deref());
            return;
        }
        if let Err((payload, to)) = self.waiting.push_reply(channel, payload.clone(), to) {
            Metrics::inc(&self.shared.metrics.replies_qos0_total);
            self.publish_reply(topic, &payload, 0, to.as_deref());
        }
    }

    /// Writes the current state of presence topic `topic` now, or marks it due while the
    /// client's receive window is full (it is then read when it is written: the newest state).
    fn offer_presence(&mut self, topic: &str, qos: u8, retain: bool) {
        if qos == 0 || self.has_room_now() {
            self.send_presence_state(topic, qos, retain);
        } else {
            self.waiting.push_presence(topic, retain);
        }
    }

    /// Writes what waited for the window, oldest first, while there is room. Each is checked
    /// against the subscriptions again: the client may have unsubscribed meanwhile.
    fn send_waiting(&mut self) {
        while self.room() > 0 {
            match self.waiting.pop() {
                Some(Waited::Reply(channel, payload, to)) => {
                    let target = match &to {
                        None => self.subs.on(channel),
                        Some(to) => to.target(&self.subs, channel),
                    };
                    if let (topic, Some(qos)) = target {
                        self.publish_reply(&topic, &payload, qos, to.as_deref());
                    }
                }
                Some(Waited::Presence { topic, retain }) => {
                    if let Some(qos) = self.subs.presence_granted(&topic) {
                        self.send_presence_state(&topic, qos, retain);
                    }
                }
                None => return,
            }
        }
    }

    /// Writes the current state on presence topic `topic` and records its change number, so
    /// that changes it already shows, still waiting in the mailbox, are skipped.
    fn send_presence_state(&mut self, topic: &str, qos: u8, retain: bool) {
        let Some(user) = topic.strip_prefix("presence/") else {
            return;
        };
        let (state, seq) = self.shared.presence.state_at(user);
        self.subs.presence_sent(topic, seq);
        self.publish(topic, state.to_string().as_bytes(), qos, retain, None);
    }

    /// Writes a reply: with the properties an MQTT 5 request asked for, when `to` is set.
    fn publish_reply(&mut self, topic: &str, payload: &[u8], qos: u8, to: Option<&ReplyTo>) {
        match to {
            None => self.publish(topic, payload, qos, false, None),
            Some(to) => self.publish_with(topic, payload, qos, false, None, Some(to)),
        }
    }

    /// Writes a PUBLISH at `qos`, tracking it in flight when it needs a PUBACK. Its size is
    /// worked out first: one larger than the client accepts is not written (see
    /// [`Session::publish_too_large`]).
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        queue_id: Option<String>,
    ) {
        self.publish_with(topic, payload, qos, retain, queue_id, None);
    }

    /// [`Session::publish`] of an rpc reply that carries the PUBLISH properties of `to`.
    fn publish_with(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        queue_id: Option<String>,
        to: Option<&ReplyTo>,
    ) {
        let properties = to.map_or(&[][..], ReplyTo::properties);
        // A client that never acknowledges cannot make packet ids run out: past a full id space
        // the session falls back to at-most-once.
        let qos = if self.inflight.len() >= MAX_INFLIGHT_IDS {
            0
        } else {
            qos
        };
        let size = self
            .codec
            .publish_size_with(topic, payload.len(), qos, properties);
        if size > self.codec.client_max_packet() {
            self.publish_too_large(topic, payload, qos, queue_id, size, to);
            return;
        }
        Metrics::inc(&self.shared.metrics.publishes_out_total);
        if let Some(id) = &queue_id {
            self.inbox.sent(id);
        }
        if qos == 0 {
            self.codec
                .write_publish_with(topic, payload, 0, 0, retain, properties, &mut self.out);
            if let Some(id) = queue_id {
                // At most once was the subscriber's choice: written is delivered.
                let _ = self.shared.chat.acked(&self.user, &id);
            }
            return;
        }
        let pkid = self.alloc_pkid();
        // A kept session may have to resend it on its next connection.
        let kept = (self.expiry > 0).then(|| (topic.to_string(), Bytes::copy_from_slice(payload)));
        self.inflight
            .insert(pkid, queue_id, size, Instant::now(), kept);
        self.report_held_bytes();
        self.codec
            .write_publish_with(topic, payload, 1, pkid, retain, properties, &mut self.out);
    }

    /// A message of `size` bytes that the client does not accept (MQTT 5 Maximum Packet Size)
    /// is not written, and never silently: it is counted and logged, and
    /// - a queued one (inbox, receipt) is passed over without being acknowledged: it stays in
    ///   the user's queue for a device that can take it, and this session moves on past it
    ///   instead of trying it again;
    /// - an rpc reply becomes a `too_large` error reply to the same `rid` (on the same topic, with
    ///   the same MQTT 5 properties: `to`);
    /// - anything else (acks, presence, typing: a few hundred bytes at most) is dropped.
    fn publish_too_large(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        queue_id: Option<String>,
        size: usize,
        to: Option<&ReplyTo>,
    ) {
        Metrics::inc(&self.shared.metrics.publishes_too_large_total);
        let max = self.codec.client_max_packet();
        debug!(client_id = %self.client_id, topic, size, max, "message larger than the client accepts not written");
        if let Some(id) = queue_id {
            self.inbox.sent(&id);
            return;
        }
        // Only rpc replies carry a `ReplyTo`, whatever topic they go to.
        if to.is_some()
            || topic
                .strip_prefix("user/")
                .and_then(|t| t.strip_prefix(self.user.as_str()))
                == Some("/rpc")
        {
            let error = oversize::too_large_reply(payload, size, max);
            let properties = to.map_or(&[][..], ReplyTo::properties);
            if self
                .codec
                .publish_size_with(topic, error.len(), qos, properties)
                <= max
            {
                self.publish_with(topic, &error, qos, false, None, to);
            }
        }
    }

    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.inflight.contains(self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Writes a control packet. One larger than the client accepts (a SUBACK or UNSUBACK for
    /// very many filters) cannot be left out without breaking the protocol: the session ends
    /// (MQTT 5: DISCONNECT 0x95 packet too large).
    fn write(&mut self, packet: Packet) {
        match self.codec.write(packet, &mut self.out) {
            Ok(()) => {}
            Err(WireError::TooLarge(size)) => {
                debug!(client_id = %self.client_id, size, "a packet larger than the client accepts is due; closing");
                self.closing
                    .get_or_insert(End::ProtocolError(DisconnectReasonCode::PacketTooLarge));
            }
            Err(e) => warn!(client_id = %self.client_id, "cannot encode a packet: {e}"),
        }
    }

    /// Cleans up after `serve`: drains stores on shutdown, tells MQTT 5 clients why, fires the
    /// will when the client did not say goodbye, and leaves the hub and the router.
    async fn finish<T: Transport>(&mut self, t: &mut T, end: End) {
        debug!(client_id = %self.client_id, ?end, "session ended");
        if end == End::Stopped(StopReason::Shutdown) {
            let drain = async {
                while let Some(reply) = self.pending.next().await {
                    self.on_reply(reply);
                }
            };
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, drain).await;
        }
        // The session is saved before anything is written to the socket: a connection taking
        // it over waits for this, not for a slow client.
        let will_now = self.end_session(end);
        if self.codec.version() == Version::V5 {
            let reason = match end {
                End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
                // An implementation-imposed limit: the time allowed for acknowledgements.
                End::AckTimeout => Some(DisconnectReasonCode::QuotaExceeded),
                End::ProtocolError(code) => Some(code),
                End::Forbidden => Some(DisconnectReasonCode::NotAuthorized),
                End::Stopped(StopReason::TakenOver) => Some(DisconnectReasonCode::SessionTakenOver),
                End::Stopped(StopReason::Administrative) => {
                    Some(DisconnectReasonCode::AdministrativeAction)
                }
                End::Stopped(_) => Some(DisconnectReasonCode::ServerShuttingDown),
                End::Disconnected { .. } | End::Lost | End::Stalled => None,
            };
            if let Some(reason) = reason {
                self.codec.write_disconnect(reason, &mut self.out);
            }
        }
        if matches!(end, End::ProtocolError(_) | End::Forbidden) {
            Metrics::inc(&self.shared.metrics.protocol_errors_total);
        }
        if end == End::Stalled {
            // Part of a packet may be written already: nothing more can be framed correctly.
            self.out.clear();
        }
        if !self.out.is_empty() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), t.write_all_flush(&self.out)).await;
        }
        // A TLS or WebSocket close writes too, which a client that reads nothing never lets end.
        let _ = tokio::time::timeout(Duration::from_secs(2), t.close()).await;
        self.shared.hub.deregister(&self.entry);
        for (topic, _) in self.subs.presence_topics() {
            if let Some(user) = topic.strip_prefix("presence/") {
                self.shared.presence_relay.unwatch(user, &self.entry);
            }
        }
        if let Some(fire) = will_now {
            fire();
        }
    }

    /// Hands the session to the keeper as the connection ends: kept (with its state) unless
    /// its login was revoked, and its will — unless the client said goodbye without asking
    /// for it, or the login was revoked, or the server is shutting down — either waits for
    /// its delay there or comes back to be sent now.
    fn end_session(&mut self, end: End) -> Option<WillFn> {
        let revoked = end == End::Stopped(StopReason::Administrative);
        let fire_will = match end {
            End::Disconnected { will } => will,
            // A revoked login (account removed, password changed) speaks no more: its will
            // is discarded with it.
            End::Stopped(StopReason::Shutdown | StopReason::Administrative) => false,
            _ => true,
        };
        let will = if fire_will {
            self.will.take().map(|(topic, payload)| {
                let send = will_sender(
                    self.shared.clone(),
                    self.user.clone(),
                    self.client_id.clone(),
                    topic,
                    payload,
                );
                (self.will_delay, send)
            })
        } else {
            None
        };
        let state = (!revoked).then(|| self.kept_state());
        self.shared.kept.end(
            &self.client_id,
            self.ticket,
            &self.user,
            self.expiry,
            state,
            will,
        )
    }
}

/// Acts on a will as if the client had published it (the contract allows wills only on the
/// client's own `chat/{me}/…` topics): now, or later when it has a delay.
fn will_sender(
    shared: Arc<Shared>,
    user: String,
    client_id: String,
    topic: String,
    payload: Bytes,
) -> WillFn {
    Box::new(move || {
        let Some(kind) = acl::can_publish(&user, &topic) else {
            return;
        };
        let reply = chat_reply(&shared, &user, &client_id, kind, payload, None);
        tokio::spawn(reply);
    })
}

/// The future that answers one publish on a `chat/{me}/…` topic from `client_id` of `user`.
fn chat_reply(
    shared: &Arc<Shared>,
    user: &str,
    client_id: &str,
    kind: ChatTopic,
    payload: Bytes,
    ack: Option<(PublishMeta, bool)>,
) -> BoxFuture<'static, Reply> {
    let chat = shared.chat.clone();
    let shared = shared.clone();
    let user = user.to_string();
    let device = client_id.to_string();
    // Per-user write rates, shared by all of the user's connections: a refused publish is
    // answered at once and reaches no plugin.
    let over = match kind {
        ChatTopic::Send => (!shared.sends.allow(&user)).then_some((Channel::Ack, Refused::Send)),
        ChatTopic::Receipt => {
            (!shared.requests.allow(&user)).then_some((Channel::Ack, Refused::Receipt))
        }
        ChatTopic::Rpc => (!shared.requests.allow(&user)).then_some((Channel::Rpc, Refused::Rpc)),
        ChatTopic::Typing => None,
    };
    if let Some((channel, refused)) = over {
        Metrics::inc(&shared.metrics.writes_rate_limited_total);
        return ready(Some((channel, user_rate::refusal(refused, &payload))), ack);
    }
    match kind {
        ChatTopic::Send => async move {
            let answer = chat.send_as(&user, Some(&device), &payload).await;
            Reply {
                message: Some((Channel::Ack, answer)),
                ack,
                control: None,
                reply_to: None,
            }
        }
        .boxed(),
        ChatTopic::Rpc => {
            let client_id = client_id.to_string();
            async move {
                let caller = Caller {
                    user: &user,
                    client_id: &client_id,
                };
                let answer = shared.rpc.answer(caller, &payload).await;
                Reply {
                    message: Some((Channel::Rpc, answer)),
                    ack,
                    control: None,
                    reply_to: None,
                }
            }
            .boxed()
        }
        ChatTopic::Receipt => async move {
            let refusal = chat.receipt(&user, &payload).await;
            Reply {
                message: refusal.map(|r| (Channel::Ack, r)),
                ack,
                control: None,
                reply_to: None,
            }
        }
        .boxed(),
        ChatTopic::Typing => {
            match shared
                .typing
                .handle(&shared.accounts, &shared.chat, &user, &payload)
            {
                TypingOutcome::Forward(items) => {
                    for item in items {
                        shared.deliver_unstored(item, None);
                    }
                    ready(None, ack)
                }
                TypingOutcome::Refuse(error) => ready(Some((Channel::Ack, error)), ack),
            }
        }
    }
}

/// An answer that needs no waiting.
fn ready(
    message: Option<(Channel, Bytes)>,
    ack: Option<(PublishMeta, bool)>,
) -> BoxFuture<'static, Reply> {
    std::future::ready(Reply {
        message,
        ack,
        control: None,
        reply_to: None,
    })
    .boxed()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
