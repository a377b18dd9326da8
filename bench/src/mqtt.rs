//! Setting up and tearing down the benchmark's MQTT clients (rumqttc, MQTT 3.1.1).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet,
    QoS, SubscribeReasonCode,
};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::control;

/// Keep-alive of every client.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Time one client may take to get its CONNACK and SUBACKs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Clients connecting at the same time.
const CONNECT_CONCURRENCY: usize = 64;

/// A host and port to connect to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` (IPv6 as `[::1]:1883`).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("expected host:port, got {s:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("expected host:port, got {s:?}");
        }
        let port = port.parse().with_context(|| format!("bad port in {s:?}"))?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How one client connects.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Broker address.
    pub endpoint: Endpoint,
    /// MQTT client id.
    pub client_id: String,
    /// User name and password, if any.
    pub credentials: Option<(String, String)>,
    /// Topics subscribed at QoS 1 before the run starts.
    pub subscribe: Vec<String>,
    /// Largest number of QoS 1 publishes the benchmark keeps in flight on this client.
    pub inflight: usize,
    /// Largest payload the client sends or receives, in bytes.
    pub max_payload: usize,
    /// Sets TCP_NODELAY; without it the client's small writes wait for Nagle's algorithm.
    pub nodelay: bool,
    /// Connects with CleanSession 0: the server keeps the session (`--persistent`).
    pub persistent: bool,
}

/// A connected client: the handle to publish with and the event loop to drive.
pub struct Connected {
    /// Handle for publishing.
    pub client: AsyncClient,
    /// Must be polled continuously by one task.
    pub eventloop: EventLoop,
}

fn options(spec: &ClientSpec) -> MqttOptions {
    let mut opts = MqttOptions::new(
        spec.client_id.clone(),
        spec.endpoint.host.clone(),
        spec.endpoint.port,
    );
    opts.set_keep_alive(KEEP_ALIVE);
    opts.set_clean_session(!spec.persistent);
    // Packet ids cycle through 1..=inflight; twice the window keeps a late PUBACK from ever
    // colliding with a reused id.
    let window = (spec.inflight.max(1) * 2).min(u16::MAX as usize) as u16;
    opts.set_inflight(window);
    let max_packet = spec.max_payload + 64 * 1024;
    opts.set_max_packet_size(max_packet, max_packet);
    opts.set_request_channel_capacity(spec.inflight * 2 + 64);
    if let Some((user, password)) = &spec.credentials {
        opts.set_credentials(user.clone(), password.clone());
    }
    opts
}

/// A client for `spec` that connects when its event loop is first polled (for a caller that
/// times the handshake itself; [`connect`] waits for it).
pub fn start(spec: &ClientSpec) -> Connected {
    let (client, mut eventloop) = AsyncClient::new(options(spec), spec.inflight * 2 + 64);
    // Latency is measured per message, so no Nagle delay on the client side unless the run
    // asks for one (`--nagle`, to see what clients that leave it on get).
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(spec.nodelay);
    net.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
    eventloop.set_network_options(net);
    Connected { client, eventloop }
}

/// Connects one client and waits until its CONNACK and all its SUBACKs have arrived.
/// Publishes arriving meanwhile (e.g. a backlog) are acknowledged and ignored.
pub async fn connect(spec: &ClientSpec) -> Result<Connected> {
    let Connected {
        client,
        mut eventloop,
    } = start(spec);
    for topic in &spec.subscribe {
        client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
    }
    let mut pending = spec.subscribe.len();
    let mut connected = false;
    let handshake = async {
        while !connected || pending > 0 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        bail!("subscription refused");
                    }
                    pending = pending.saturating_sub(1);
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    bail!("connection refused: {code:?}")
                }
                Err(e) => return Err(anyhow!(e)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow!("no CONNACK/SUBACK within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("client {} at {}", spec.client_id, spec.endpoint))?;
    Ok(Connected { client, eventloop })
}

/// Connects all clients (a bounded number at a time); fails if any one fails.
/// The result is in the order of `specs`.
pub async fn connect_all(specs: Vec<ClientSpec>) -> Result<Vec<Connected>> {
    connect_all_then(specs, |_, conn| conn).await
}

/// Like [`connect_all`], but hands each client to `ready(index, client)` as soon as it is
/// connected, so its event loop can be driven (keep-alive pings) while the others connect;
/// returns what `ready` returned, in the order of `specs`.
pub async fn connect_all_then<T>(
    specs: Vec<ClientSpec>,
    mut ready: impl FnMut(usize, Connected) -> T,
) -> Result<Vec<T>> {
    let limit = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    let count = specs.len();
    for (i, spec) in specs.into_iter().enumerate() {
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire().await;
            (i, connect(&spec).await)
        });
    }
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined?;
        slots[i] = Some(ready(i, result?));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Sends DISCONNECT and drives the event loop until it is written (at most one second).
pub async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Polls the event loop and hands every incoming packet to `on_incoming` until the stop signal
/// is raised (then disconnects cleanly and returns `None`) or the connection breaks (returns the
/// error; the event loop is not polled again, so the client does not reconnect).
pub async fn drive(
    conn: Connected,
    mut stop: watch::Receiver<bool>,
    mut on_incoming: impl FnMut(Packet),
) -> Option<ConnectionError> {
    let Connected {
        client,
        mut eventloop,
    } = conn;
    let error = {
        let stopped = control::stopped(&mut stop);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break None,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(packet)) => on_incoming(packet),
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => break Some(e),
                },
            }
        }
    };
    if error.is_none() {
        disconnect(&client, &mut eventloop).await;
    }
    error
}
