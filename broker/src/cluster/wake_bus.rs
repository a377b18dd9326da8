//! The wake-up bus between the nodes of a cluster: one Redis pub/sub channel,
//! `{redis.key_prefix}:wake`, that every node publishes to and subscribes to.
//!
//! A message is a JSON object from one node: `{"n": node, "i": [items…], "all": true}`. `i`
//! carries deliveries, stored (messages, receipts: with their queue id) or not (acks, the
//! sender's copies of group messages, typing indicators); the receiving node hands each to its
//! sessions of that user, as if it had committed it. `all` asks every node to make every
//! session read its queue from the store (deliveries were lost). A node ignores its own
//! messages. A session that gets a queued delivery numbered below what it already sent (ids
//! come from each node's own generator) reads its queue instead (`session::inbox`).
//!
//! Why one channel for all nodes rather than one per node: a sender would first have to look
//! up which nodes hold the recipient (a Redis round trip per message); with a handful of nodes,
//! every node reading every delivery costs less. Deliveries are batched: the publisher takes
//! whatever waits (up to [`MAX_BATCH`] items or [`MAX_BATCH_BYTES`]) into one PUBLISH.
//!
//! Redis pub/sub delivers at most once, and only to connected subscribers: what is published
//! while a node's subscription is down is lost to it. So a node wakes all its sessions when its
//! subscription comes back, and every [`SWEEP_WHILE_DOWN`] while it is down; a publisher that
//! could not publish (or had to drop deliveries because it fell behind) publishes `all` once
//! it can again. A lost delivery of a queued item is late by seconds, never lost: the store
//! has it. (Unstored items — acks, typing — are lost with it, as a device that is offline
//! misses them too.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatd_core::outbox::{Channel, Outgoing};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::Hub;

/// Deliveries waiting to be published at most; more are dropped and replaced by an `all`.
const QUEUE: usize = 65_536;
/// Deliveries in one PUBLISH at most.
pub const MAX_BATCH: usize = 4096;
/// Bytes of items in one PUBLISH at most (users are short).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How often a node whose subscription is down wakes all its sessions.
pub const SWEEP_WHILE_DOWN: Duration = Duration::from_secs(2);
/// How long one Redis command or connection attempt may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait between attempts to reach Redis again.
const RETRY: Duration = Duration::from_millis(500);

/// An item as it travels.
#[derive(Serialize, Deserialize)]
struct WireItem {
    /// The user whose devices get it.
    u: String,
    /// The channel's name (`ack`, `inbox`, `typing`…).
    c: String,
    /// The payload (JSON text, as published).
    p: String,
    /// A client id that must not get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// Its id in the user's queue, when it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<String>,
}

/// One message on the channel.
#[derive(Serialize, Deserialize, Default)]
struct WireMessage {
    /// The node that sent it.
    n: u16,
    /// Deliveries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    i: Vec<WireItem>,
    /// Wake every session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// The sending side of the bus, shared by the outbox.
pub struct WakeBus {
    tx: mpsc::Sender<Outgoing>,
    /// Deliveries were dropped because the publisher fell behind; it publishes `all` instead.
    overflowed: AtomicBool,
}

impl WakeBus {
    /// Starts the publisher and the subscriber of node `node` on the Redis at `url`, waking
    /// sessions of `hub`; both run until `stop` is cancelled and retry Redis forever.
    pub fn start(
        url: &str,
        prefix: &str,
        node: u16,
        hub: Arc<Hub>,
        stop: CancellationToken,
    ) -> Result<Arc<WakeBus>, redis::RedisError> {
        let client = Client::open(url)?;
        let channel = format!("{prefix}:wake");
        let (tx, rx) = mpsc::channel(QUEUE);
        let bus = Arc::new(WakeBus {
            tx,
            overflowed: AtomicBool::new(false),
        });
        tokio::spawn(publisher(
            bus.clone(),
            client.clone(),
            channel.clone(),
            node,
            rx,
            stop.clone(),
        ));
        tokio::spawn(subscriber(client, channel, node, hub, stop));
        Ok(bus)
    }

    /// Hands a delivery to the other nodes. Never blocks: when the publisher is behind, the
    /// item is dropped and the other nodes are told to read their queues.
    pub fn forward(&self, item: &Outgoing) {
        if self.tx.try_send(item.clone()).is_err() {
            self.overflowed.store(true, Ordering::Release);
        }
    }
}
/// Takes what waits into one message: the first item, then whatever else is ready.
fn batch(node: u16, first: Outgoing, rx: &mut mpsc::Receiver<Outgoing>) -> WireMessage {
    let mut message = WireMessage {
        n: node,
        ..WireMessage::default()
    };
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        // Payloads are JSON the server built; one that is not text cannot travel.
        if let Ok(payload) = std::str::from_utf8(&item.payload) {
            bytes += payload.len() + item.user.len();
            message.i.push(WireItem {
                c: item.channel.name().to_string(),
                p: payload.to_string(),
                s: item.skip_client,
                q: item.queue_id,
                u: item.user,
            });
        }
        if message.i.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            next = rx.try_recv().ok();
        }
    }
    message
}

async fn connect(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Publishes batches of deliveries; after any it could not publish, asks every node to sweep.
async fn publisher(
    bus: Arc<WakeBus>,
    client: Client,
    channel: String,
    node: u16,
    mut rx: mpsc::Receiver<Outgoing>,
    stop: CancellationToken,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    // Deliveries were lost since the last successful publish: the next one carries `all`.
    let mut lost = false;
    let mut down_logged = false;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            item = rx.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let mut message = batch(node, first, &mut rx);
        if bus.overflowed.swap(false, Ordering::AcqRel) {
            lost = true;
        }
        message.all = lost;
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(e) => {
                warn!("wake-up bus: cannot encode a batch: {e}");
                continue;
            }
        };
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
        if published {
            lost = false;
            if down_logged {
                info!("wake-up bus: publishing again");
                down_logged = false;
            }
        } else {
            // This batch is lost to the other nodes; they sweep once told (`all`).
            lost = true;
            conn = None;
            if !down_logged {
                warn!("wake-up bus: cannot publish to Redis; other nodes will read their queues once it is back");
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
async fn subscriber(
    client: Client,
    channel: String,
    node: u16,
    hub: Arc<Hub>,
    stop: CancellationToken,
) {
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
            if missed {
                // Whatever was published while this node was not listening is lost to it.
                hub.wake_all();
                info!("wake-up bus: subscribed again; every session reads its queue");
            }
            down_logged = false;
            let mut messages = pubsub.into_on_message();
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    msg = messages.next() => msg,
                };
                let Some(msg) = msg else { break };
                handle(node, msg.get_payload_bytes(), &hub);
            }
        }
        missed = true;
        if !down_logged {
            warn!("wake-up bus: not subscribed to Redis; every session reads its queue every {SWEEP_WHILE_DOWN:?} until it is");
            down_logged = true;
        }
        hub.wake_all();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sleep(SWEEP_WHILE_DOWN) => {}
        }
    }
}

/// Acts on one message of another node.
fn handle(node: u16, payload: &[u8], hub: &Hub) {
    let message: WireMessage = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => {
            warn!("wake-up bus: unreadable message ignored: {e}");
            return;
        }
    };
    if message.n == node {
        return;
    }
    if message.all {
        hub.wake_all();
    }
    for item in message.i {
        let Some(channel) = Channel::from_name(&item.c) else {
            continue;
        };
        hub.deliver_from_elsewhere(Outgoing {
            user: item.u,
            channel,
            payload: item.p.into(),
            queue_id: item.q,
            skip_client: item.s,
        });
    }
}
