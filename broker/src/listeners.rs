//! Accept loops: MQTT over TCP, TLS, WebSocket and WebSocket over TLS all end in the same
//! session code. Handshakes (TLS, WebSocket upgrade) run in the connection's own task, bounded by
//! the CONNECT timeout, so a slow or silent client never holds up the accept loop. Each source
//! address may have at most `limits.max_handshakes_per_ip` sockets waiting for their CONNACK.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::handshake_gate::Arrival;
use crate::metrics::Metrics;
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
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Refused before a task or a read: a flood from one address stays cheap.
                let Some(arrival) = shared.handshakes.arrive(peer.ip()) else {
                    Metrics::inc(&shared.metrics.handshakes_refused_total);
                    debug!(%peer, "too many pending handshakes from this address");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                tracker.spawn(async move {
                    debug!(%peer, "accepted");
                    connection(stream, framing, tls, shared, arrival).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    framing: Framing,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    arrival: Arrival,
) {
    let timeout = Duration::from_secs(shared.limits.connect_timeout_secs);
    match tls {
        None => framed(stream, framing, shared, timeout, arrival).await,
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => framed(stream, framing, shared, timeout, arrival).await,
            Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
            Err(_) => debug!("TLS handshake timed out"),
        },
    }
}

async fn framed<S>(
    stream: S,
    framing: Framing,
    shared: Arc<Shared>,
    timeout: Duration,
    arrival: Arrival,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match framing {
        Framing::Mqtt => session::run(Stream(stream), shared, arrival).await,
        Framing::WebSocket => {
            let upgrade = tokio_tungstenite::accept_hdr_async(stream, check_upgrade);
            match tokio::time::timeout(timeout, upgrade).await {
                Ok(Ok(ws)) => session::run(WsStream(ws), shared, arrival).await,
                Ok(Err(e)) => debug!("WebSocket upgrade failed: {e}"),
                Err(_) => debug!("WebSocket upgrade timed out"),
            }
        }
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
