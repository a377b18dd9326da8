//! Accept loops: MQTT over TCP, TLS, WebSocket and WebSocket over TLS all end in the same
//! session code. Handshakes (TLS, WebSocket upgrade) run in the connection's own task, bounded by
//! the CONNECT timeout, so a slow or silent client never holds up the accept loop. Each source
//! address may have at most `limits.max_handshakes_per_ip` sockets waiting for their CONNACK.
//!
//! Each connection's task is boxed for its own transport, so a plain TCP connection does not pay
//! for the size of a TLS or WebSocket state machine.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::accept_trouble::{AcceptTrouble, Next};
use crate::handshake_gate::Arrival;
use crate::metrics::Metrics;
use crate::quick_ack::QuickAck;
use crate::session;
use crate::state::Shared;
use crate::transport::{Stream, WsStream};

/// How a listener's connections are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// MQTT bytes straight on the stream.
    Mqtt,
    /// MQTT in WebSocket binary messages, path `/mqtt`.
    WebSocket,
}

/// One listener's accept loop; returns when `stop` is cancelled.
pub async fn accept_loop(
    listener: TcpListener,
    framing: Framing,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut trouble = AcceptTrouble::new(listener_name(framing, tls.is_some()));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                trouble.recovered();
                // Refused before a task or a read: a flood from one address stays cheap.
                let Some(arrival) = shared.handshakes.arrive(peer.ip()) else {
                    Metrics::inc(&shared.metrics.handshakes_refused_total);
                    debug!(%peer, "too many pending handshakes from this address");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let task = connection(stream, framing, tls.clone(), shared.clone(), arrival);
                debug!(%peer, "accepted");
                tracker.spawn(task);
            }
            Err(e) => match trouble.failed(&e) {
                Next::Refuse => {
                    // The spare descriptor is free for a moment: take a waiting client and
                    // close it, so that it is refused rather than left waiting.
                    if let Some(Ok((stream, _))) = listener.accept().now_or_never() {
                        drop(stream);
                    }
                    trouble.refused();
                }
                // Back off instead of spinning.
                Next::BackOff => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// The listener's name in `[listen]`.
fn listener_name(framing: Framing, tls: bool) -> &'static str {
    match (framing, tls) {
        (Framing::Mqtt, false) => "mqtt",
        (Framing::WebSocket, false) => "ws",
        (Framing::Mqtt, true) => "mqtts",
        (Framing::WebSocket, true) => "wss",
    }
}

/// The task of one accepted connection, boxed at the size of its own transport's state machine.
fn connection(
    stream: TcpStream,
    framing: Framing,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    arrival: Arrival,
) -> BoxFuture<'static, ()> {
    let timeout = Duration::from_secs(shared.limits.connect_timeout_secs);
    let quick_ack = QuickAck::of(&stream);
    match (tls, framing) {
        (None, Framing::Mqtt) => session::run(Stream(stream, quick_ack), shared, arrival).boxed(),
        (None, Framing::WebSocket) => {
            websocket(stream, quick_ack, shared, timeout, arrival).boxed()
        }
        (Some(acceptor), framing) => async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                // Boxed again: the handshake's state is not kept for the session's life.
                Ok(Ok(stream)) => match framing {
                    Framing::Mqtt => {
                        session::run(Stream(stream, quick_ack), shared, arrival)
                            .boxed()
                            .await
                    }
                    Framing::WebSocket => {
                        websocket(stream, quick_ack, shared, timeout, arrival)
                            .boxed()
                            .await
                    }
                },
                Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
                Err(_) => debug!("TLS handshake timed out"),
            }
        }
        .boxed(),
    }
}

/// The task of a WebSocket upgrade that arrived on the HTTP listener (see `mqtt_on_http`):
/// from here on it is a connection of the `ws` listener.
pub fn websocket_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    arrival: Arrival,
) -> BoxFuture<'static, ()> {
    let _ = stream.set_nodelay(true);
    let timeout = Duration::from_secs(shared.limits.connect_timeout_secs);
    let quick_ack = QuickAck::of(&stream);
    websocket(stream, quick_ack, shared, timeout, arrival).boxed()
}

/// Room for the MQTT fixed header and a few small packets (acks, pings) carried in the same
/// WebSocket message as one packet of the largest size.
const WS_FRAMING_SLACK: usize = 4 * 1024;

/// The WebSocket limits for MQTT packets of at most `max_packet_size` bytes: tungstenite's
/// defaults (64 MiB messages, 16 MiB frames) would buffer a whole oversized message before the
/// MQTT codec could refuse it. A frame is refused from its header, a fragmented message as soon
/// as its fragments add up to more.
fn ws_config(max_packet_size: usize) -> WebSocketConfig {
    let most = max_packet_size.saturating_add(WS_FRAMING_SLACK);
    WebSocketConfig {
        max_message_size: Some(most),
        max_frame_size: Some(most),
        ..WebSocketConfig::default()
    }
}

/// Upgrades to WebSocket, then runs the session.
async fn websocket<S>(
    stream: S,
    quick_ack: QuickAck,
    shared: Arc<Shared>,
    timeout: Duration,
    arrival: Arrival,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = ws_config(shared.limits.max_packet_size);
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_upgrade, Some(config));
    match tokio::time::timeout(timeout, upgrade).await {
        // Boxed: the upgrade's state is not kept for the session's life.
        Ok(Ok(ws)) => {
            session::run(WsStream(ws, quick_ack), shared, arrival)
                .boxed()
                .await
        }
        Ok(Err(e)) => debug!("WebSocket upgrade failed: {e}"),
        Err(_) => debug!("WebSocket upgrade timed out"),
    }
}

/// Accepts upgrades on `/mqtt` only and answers with the `mqtt` subprotocol when asked for it.
#[allow(clippy::result_large_err)]
fn check_upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != "/mqtt" {
        return Err(refuse(StatusCode::NOT_FOUND, "MQTT is served on /mqtt"));
    }
    if let Some(asked) = request.headers().get("sec-websocket-protocol") {
        let asked = asked.to_str().unwrap_or("");
        let chosen = asked
            .split(',')
            .map(str::trim)
            .find(|p| *p == "mqtt" || *p == "mqttv3.1");
        match chosen {
            Some(p) => {
                let value =
                    HeaderValue::from_str(p).unwrap_or_else(|_| HeaderValue::from_static("mqtt"));
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", value);
            }
            None => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the WebSocket subprotocol must be mqtt",
                ))
            }
        }
    }
    Ok(response)
}

fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_string()));
    *response.status_mut() = status;
    response
}
