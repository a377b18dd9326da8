//! The bus between the nodes of a cluster: one Redis pub/sub channel,
//! `{redis.key_prefix}:wake`, that every node publishes to and subscribes to. What travels is
//! in `wire.rs`:
//!
//! - **Deliveries**, stored (messages, receipts: with their queue id) or not (acks, the
//!   sender's copies of group messages, typing indicators). The receiving node hands each to
//!   its sessions of that user, as if it had committed it. A session that gets a queued
//!   delivery numbered below what it already sent (ids come from each node's own generator)
//!   reads its queue instead (`session::inbox`).
//! - **Presence**: a user's first device on a node (`on`) and last one gone (`off`), so that a
//!   user is online while a device is connected to any node (`presence.rs`). Every message
//!   says its node is alive; a node publishes at least every third of `redis.ttl_secs`, and
//!   one silent for the whole TTL is taken for dead, its users offline (`peers.rs`).
//!
//! Why one channel for all nodes rather than one per node: a sender would first have to look
//! up which nodes hold the recipient (a Redis round trip per message); with a handful of nodes,
//! every node reading every delivery costs less. Deliveries are batched: the publisher takes
//! whatever waits into one PUBLISH (`wire::batch`).
//!
//! Every node, the sender too, hands deliveries to its sessions in the channel's order: a
//! node's own deliveries reach its sessions when it hears its publish back
//! (`local_echo.rs`), and a batch's acks wait until that publish is answered
//! (`held_answers.rs`). So a message sent after an ack, on any node, reaches every device after
//! the acknowledged one, as on one node.
//!
//! Redis pub/sub delivers at most once, and only to connected subscribers: what is published
//! while a node's subscription is down is lost to it. So a node wakes all its sessions (they
//! read their queues from the store) when its subscription comes back, and every
//! [`SWEEP_WHILE_DOWN`] while it is down, and asks every node who is online on it; a publisher
//! that could not publish (or had to drop deliveries because it fell behind) publishes `all`
//! once it can again, with its own online users. A lost delivery of a queued item is late by
//! seconds, never lost: the store has it. (Unstored items — acks, typing — are lost with it,
//! as a device that is offline misses them too.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatd_core::outbox::{Answers, Deliver, Outgoing};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, timeout, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::held_answers::HeldAnswers;
use super::local_echo::LocalEcho;
use super::peers::{Heard, Peers};
use super::wire::{batch, Batch, Outbound, WireMessage};
use crate::hub::Hub;
use crate::presence::{Presence, PresencePeers};

/// What waits to be published at most; past it deliveries are dropped and replaced by `all`.
const QUEUE: usize = 65_536;
/// How often a node whose subscription is down wakes all its sessions.
pub const SWEEP_WHILE_DOWN: Duration = Duration::from_secs(2);
/// How long one Redis command or connection attempt may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait between attempts to reach Redis again.
const RETRY: Duration = Duration::from_millis(500);
/// Users named in one `on` answer to a sync at most.
const USERS_PER_ANSWER: usize = 2048;

/// The bus of one node: its sending side, shared by the outbox and presence.
pub struct WakeBus {
    tx: mpsc::Sender<Outbound>,
    /// Something was dropped because the publisher fell behind; it publishes `all` instead.
    overflowed: AtomicBool,
    /// Acks waiting for the publish of their batch's deliveries.
    held: HeldAnswers,
}

/// What the bus's tasks share.
struct Node {
    id: u16,
    /// Random per process start: lets the others tell a restarted node from the old one.
    run: u64,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
    peers: Peers,
    bus: Arc<WakeBus>,
    /// This node's own deliveries waiting for their publish to come back.
    echo: LocalEcho,
}

impl WakeBus {
    /// Starts node `node`'s publisher, subscriber and watch of the other nodes on the Redis at
    /// `url`, and makes `presence` tell the others about this node's users; all run until
    /// `stop` is cancelled and retry Redis forever. `ttl` is `redis.ttl_secs`.
    pub fn start(
        url: &str,
        prefix: &str,
        node: u16,
        ttl: Duration,
        hub: Arc<Hub>,
        presence: Arc<Presence>,
        stop: CancellationToken,
    ) -> Result<Arc<WakeBus>, redis::RedisError> {
        let client = Client::open(url)?;
        let channel = format!("{prefix}:wake");
        let (tx, rx) = mpsc::channel(QUEUE);
        let bus = Arc::new(WakeBus {
            tx,
            overflowed: AtomicBool::new(false),
            held: HeldAnswers::start(stop.clone()),
        });
        presence.set_peers(bus.clone());
        let node = Arc::new(Node {
            id: node,
            run: rand::random(),
            hub,
            presence,
            peers: Peers::new(ttl),
            bus: bus.clone(),
            echo: LocalEcho::default(),
        });
        tokio::spawn(publisher(
            node.clone(),
            client.clone(),
            channel.clone(),
            rx,
            ttl / 3,
            stop.clone(),
        ));
        tokio::spawn(subscriber(node.clone(), client, channel, stop.clone()));
        tokio::spawn(release_overdue(node.clone(), stop.clone()));
        tokio::spawn(watch_peers(node, stop));
        Ok(bus)
    }

    /// Hands a delivery to every node, this one too (once published: `local_echo.rs`).
    /// Never blocks: when the publisher is behind, the item is handed back, for this node's
    /// sessions only, and the other nodes are told to read their queues.
    pub fn forward(&self, item: Outgoing) -> Result<(), Outgoing> {
        match self.tx.try_send(Outbound::Item(item)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.overflowed.store(true, Ordering::Release);
                match e.into_inner() {
                    Outbound::Item(item) => Err(item),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Sends `answers` once everything forwarded before is published (or could not be; see
    /// `held_answers.rs`). Never blocks.
    pub fn answer(&self, answers: Answers) {
        self.held.hold(
            |mark| self.tx.try_send(Outbound::Mark(mark)).is_ok(),
            answers,
        );
    }

    /// Hands a delivery to the other nodes only (the caller delivers it here). Never blocks:
    /// when the publisher is behind, the item is dropped and the other nodes are told to read
    /// their queues.
    pub fn forward_elsewhere(&self, item: &Outgoing) {
        self.send(Outbound::Elsewhere(item.clone()));
    }

    fn send(&self, outbound: Outbound) {
        if self.tx.try_send(outbound).is_err() {
            self.overflowed.store(true, Ordering::Release);
        }
    }
}

impl PresencePeers for WakeBus {
    fn online_here(&self, user: &str) {
        self.send(Outbound::On(user.to_string()));
    }

    fn offline_here(&self, user: &str, last_seen: u64) {
        self.send(Outbound::Off(user.to_string(), last_seen));
    }
}

impl Node {
    /// Queues `on` answers naming every user with a device here.
    fn announce_users(&self) {
        for chunk in self.presence.users_here().chunks(USERS_PER_ANSWER) {
            for user in chunk {
                self.bus.send(Outbound::On(user.clone()));
            }
        }
    }

    /// Acts on one message of another node.
    fn handle(&self, payload: &[u8]) {
        let message: WireMessage = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("cluster bus: unreadable message ignored: {e}");
                return;
            }
        };
        if message.n == self.id {
            // This run's own publish came back: its deliveries take their place here.
            if message.r == self.run {
                self.echo.heard(message.k, &self.hub);
            }
            return;
        }
        match self.peers.heard(message.n, message.r) {
            Heard::Known => {}
            Heard::New => self.bus.send(Outbound::Sync(Some(message.n))),
            Heard::Restarted => {
                self.presence.node_gone(message.n);
                self.bus.send(Outbound::Sync(Some(message.n)));
                // Its last run may have committed messages it never told anyone about.
                self.hub.wake_all();
            }
        }
        if message.all {
            self.hub.wake_all();
        }
        if message.sync || message.ask.contains(&self.id) {
            self.announce_users();
        }
        if !message.on.is_empty() {
            self.presence.online_elsewhere(message.n, &message.on);
        }
        for off in &message.off {
            self.presence.offline_elsewhere(message.n, &off.u, off.t);
        }
        for item in message.i {
            if let Some(item) = item.into_outgoing() {
                self.hub.deliver_from_elsewhere(item);
            }
        }
    }
}

async fn connect(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Publishes batches of what waits, and an empty message when nothing was published for a
/// heartbeat period; after anything it could not publish, asks every node to sweep.
async fn publisher(
    node: Arc<Node>,
    client: Client,
    channel: String,
    mut rx: mpsc::Receiver<Outbound>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    // Something was lost since the last successful publish: the next message carries `all`.
    let mut lost = false;
    let mut down_logged = false;
    let mut beat = interval(heartbeat.max(Duration::from_millis(100)));
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The number of the last message (`k`).
    let mut number = 0;
    loop {
        let Batch {
            mut message,
            mark,
            local,
        } = tokio::select! {
            _ = stop.cancelled() => return,
            outbound = rx.recv() => match outbound {
                Some(first) => batch(node.id, node.run, first, &mut rx),
                None => return,
            },
            _ = beat.tick() => Batch {
                message: WireMessage { n: node.id, r: node.run, ..WireMessage::default() },
                mark: None,
                local: Vec::new(),
            },
        };
        if node.bus.overflowed.swap(false, Ordering::AcqRel) {
            lost = true;
        }
        let was_lost = lost;
        message.all = lost;
        if let (true, true, Some(mark)) = (message.is_empty(), local.is_empty(), mark) {
            // Only answers waited: what came before them was dealt with by earlier messages.
            node.bus.held.passed(mark);
            continue;
        }
        number += 1;
        message.k = number;
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(e) => {
                warn!("cluster bus: cannot encode a message: {e}");
                for item in local {
                    node.hub.deliver(item);
                }
                if let Some(mark) = mark {
                    node.bus.held.passed(mark);
                }
                continue;
            }
        };
        // Before the publish: its echo may come back before the publish is answered.
        node.echo.publishing(number, local, &node.hub);
        if conn.is_none() {
            conn = match timeout(COMMAND_TIMEOUT, connect(&client)).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
        }
        let published = match conn.as_mut() {
            Some(c) => matches!(
                timeout(
                    COMMAND_TIMEOUT,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&text)
                        .query_async::<i64>(c)
                )
                .await,
                Ok(Ok(_))
            ),
            None => false,
        };
        node.bus.held.set_healthy(published);
        if let Some(mark) = mark {
            node.bus.held.passed(mark);
        }
        if !published {
            // No echo to wait for (or one that may never come).
            node.echo.heard(number, &node.hub);
        }
        if published {
            beat.reset();
            lost = false;
            if was_lost {
                // The others may have taken this node for dead meanwhile.
                node.announce_users();
            }
            if down_logged {
                info!("cluster bus: publishing again");
                down_logged = false;
            }
        } else {
            // Lost to the other nodes; they sweep once told (`all`).
            lost = true;
            conn = None;
            if !down_logged {
                warn!("cluster bus: cannot publish to Redis; other nodes will read their queues once it is back");
                down_logged = true;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep(RETRY) => {}
            }
        }
    }
}

/// Subscribes and acts on the other nodes' messages; sweeps while it cannot.
async fn subscriber(node: Arc<Node>, client: Client, channel: String, stop: CancellationToken) {
    // Something may have been published while this node was not subscribed.
    let mut missed = false;
    let mut down_logged = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            r = timeout(COMMAND_TIMEOUT, subscribed) => r,
        };
        if let Ok(Ok(pubsub)) = pubsub {
            // This node's own publishes come back from now on.
            node.echo.set_subscribed(true, &node.hub);
            // Who is online where: the others answer with their users.
            node.bus.send(Outbound::Sync(None));
            if missed {
                // Whatever was published while this node was not listening is lost to it.
                node.hub.wake_all();
                info!("cluster bus: subscribed again; every session reads its queue");
            }
            down_logged = false;
            let mut messages = pubsub.into_on_message();
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    msg = messages.next() => msg,
                };
                let Some(msg) = msg else { break };
                node.handle(msg.get_payload_bytes());
            }
        }
        missed = true;
        node.echo.set_subscribed(false, &node.hub);
        if !down_logged {
            warn!("cluster bus: not subscribed to Redis; every session reads its queue every {SWEEP_WHILE_DOWN:?} until it is");
            down_logged = true;
        }
        node.hub.wake_all();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(SWEEP_WHILE_DOWN) => {}
        }
    }
}

/// Hands this node's own deliveries to its sessions when their publish does not come back in
/// time (`local_echo::ECHO_WAIT`).
async fn release_overdue(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => node.echo.overdue(&node.hub),
        }
    }
}

/// Takes nodes silent for the TTL for dead: their users' devices are gone.
async fn watch_peers(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let gone = node.peers.silent();
        for &n in &gone {
            info!(
                node = n,
                "cluster bus: node silent for the TTL, its users are offline"
            );
            node.presence.node_gone(n);
        }
        if !gone.is_empty() {
            // A node that died between a commit and its publish took the wake-up with it:
            // the message is in its recipient's queue, and only a read finds it.
            node.hub.wake_all();
        }
    }
}
