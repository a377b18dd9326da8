//! Serves the HTTP routes with the limits a public listener needs: at most
//! `limits.http_max_connections` connections (the listener's own share of the file descriptors,
//! so HTTP clients can never starve MQTT), at most `limits.http_connections_per_ip` per source
//! address, a whole request head within `limits.http_header_timeout_secs` (also how long a
//! kept-alive connection may wait for its next request), and no request that moves no byte for
//! `limits.http_idle_timeout_secs` (a stalled upload, a download nobody reads) while the server
//! is not busy with it.
//!
//! A connection over a cap is answered `503` (best effort, one non-blocking write) and closed
//! before anything is read. HTTP/1.1 only, as axum served it before.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use futures_util::FutureExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

use crate::accept_trouble::{AcceptTrouble, Next};
use crate::config::LimitsConfig;
use crate::handshake_gate::{Arrival, HandshakeGate};
use crate::metrics::Metrics;
use crate::mqtt_on_http::{self, Wants};
use crate::state::Shared;

/// How long connections still open at shutdown get to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a connection over a cap is told before it is closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\ncontent-length: 47\r\nretry-after: 1\r\n\
connection: close\r\n\r\n{\"error\":\"too many connections; retry shortly\"}";

/// The HTTP listener's caps and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections held at once.
    pub max_connections: usize,
    /// Connections per source address (0: no limit).
    pub per_ip: usize,
    /// Time for a whole request head.
    pub header_timeout: Duration,
    /// Time a request may move no byte while the server is not busy with it.
    pub idle_timeout: Duration,
}

impl HttpLimits {
    /// The HTTP limits of `limits`.
    pub fn from_config(limits: &LimitsConfig) -> HttpLimits {
        HttpLimits {
            max_connections: limits.http_max_connections,
            per_ip: limits.http_connections_per_ip,
            header_timeout: Duration::from_secs(limits.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(limits.http_idle_timeout_secs),
        }
    }
}

/// Accepts HTTP connections and serves `routes` on them until `stop` is cancelled; then gives
/// the open connections [`SHUTDOWN_GRACE`] to finish their request. WebSocket upgrades of
/// `/mqtt` become MQTT sessions, tracked by `sessions` (see `mqtt_on_http`).
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    limits: HttpLimits,
    shared: Arc<Shared>,
    stop: CancellationToken,
    sessions: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_source = HandshakeGate::new(limits.per_ip);
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    let mut trouble = AcceptTrouble::new("http");
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                trouble.recovered();
                let admitted = slots
                    .clone()
                    .try_acquire_owned()
                    .ok()
                    .and_then(|slot| per_source.arrive(peer.ip()).map(|from| (slot, from)));
                let Some(admission) = admitted else {
                    Metrics::inc(&shared.metrics.http_refused_total);
                    debug!(%peer, "HTTP connection refused: too many connections");
                    let _ = stream.try_write(BUSY_RESPONSE);
                    continue;
                };
                let connection = Connection {
                    routes: routes.clone(),
                    limits,
                    shared: shared.clone(),
                    stop: stop.clone(),
                    force: force.clone(),
                    sessions: sessions.clone(),
                    peer,
                    admission,
                };
                connections.spawn(connection.run(stream));
            }
            Err(e) => match trouble.failed(&e) {
                Next::Refuse => {
                    if let Some(Ok((stream, _))) = listener.accept().now_or_never() {
                        drop(stream);
                    }
                    trouble.refused();
                }
                Next::BackOff => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        force.cancel();
        connections.wait().await;
    }
}

/// One accepted HTTP connection and what it holds of the caps until it ends.
struct Connection {
    routes: Router,
    limits: HttpLimits,
    shared: Arc<Shared>,
    stop: CancellationToken,
    force: CancellationToken,
    sessions: TaskTracker,
    peer: SocketAddr,
    admission: (OwnedSemaphorePermit, Arrival),
}

impl Connection {
    /// Serves requests until the client closes, a timeout ends the connection, or shutdown;
    /// or hands the connection over to MQTT when it asks for `/mqtt` over WebSocket.
    async fn run(self, stream: TcpStream) {
        let wants = tokio::select! {
            wants = mqtt_on_http::sniff(&stream, self.limits.header_timeout) => wants,
            _ = self.stop.cancelled() => return,
        };
        match wants {
            Wants::Http => {}
            Wants::Mqtt => {
                // An MQTT session is not an HTTP connection: it leaves the HTTP caps, and is
                // admitted like any MQTT socket.
                let Connection {
                    shared,
                    sessions,
                    admission,
                    ..
                } = self;
                drop(admission);
                mqtt_on_http::hand_over(stream, shared, &sessions);
                return;
            }
            Wants::Nothing => return,
            Wants::TimedOut => {
                Metrics::inc(&self.shared.metrics.http_timeouts_total);
                debug!(peer = %self.peer, "no request head within the header timeout");
                return;
            }
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let routes = self.routes.clone();
        let in_service = activity.clone();
        let peer = self.peer;
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let busy = in_service.request_started();
            let body_activity = in_service.clone();
            let mut request = request.map(|body| {
                axum::body::Body::new(WatchedBody {
                    inner: body,
                    activity: body_activity,
                })
            });
            // Handlers that count per source address (the login limits of `/auth/token`)
            // read it from here.
            request.extensions_mut().insert(ConnectInfo(peer));
            routes.clone().oneshot(request).map(move |response| {
                drop(busy);
                response
            })
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let idle = self.limits.idle_timeout;
        let mut draining = false;
        loop {
            let check_at = activity.idle_deadline(idle);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        if e.is_timeout() {
                            Metrics::inc(&self.shared.metrics.http_timeouts_total);
                        }
                        debug!(peer = %self.peer, "HTTP connection ended: {e}");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(check_at.into()) => {
                    if activity.is_idle(idle) {
                        Metrics::inc(&self.shared.metrics.http_timeouts_total);
                        debug!(peer = %self.peer, "HTTP connection idle for {idle:?}; closed");
                        return;
                    }
                }
                _ = self.stop.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = self.force.cancelled() => return,
            }
        }
    }
}

/// When a connection last moved a byte, and whether the server is busy with a request on it.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    /// Requests whose response head is not ready yet.
    handlers: AtomicUsize,
    /// The handler waits for request body bytes (its last poll of the body was pending).
    body_waiting: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
            body_waiting: AtomicBool::new(false),
        }
    }

    fn moved(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> Busy {
        self.body_waiting.store(false, Ordering::Relaxed);
        self.handlers.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// When the connection would have been silent for `idle`, counted from its last byte.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let due = self.start + last + idle;
        // While the server works on a response the connection may stay silent: look again later.
        due.max(Instant::now() + Duration::from_millis(100))
    }

    /// Silent for `idle`, and not because the server is still working on a response: nothing
    /// is being computed, or the handler itself waits for body bytes that do not come.
    fn is_idle(&self, idle: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let silent = self.start.elapsed().saturating_sub(last) >= idle;
        let computing =
            self.handlers.load(Ordering::Relaxed) > 0 && !self.body_waiting.load(Ordering::Relaxed);
        silent && !computing
    }
}

/// A request being handled; dropped when its response head is ready.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.handlers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's socket, noting every read and write that moves bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.moved();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that tells the connection when its handler waits for bytes from the client.
struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity
            .body_waiting
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length = format!("content-length: {}", body.len());
        assert!(head.lines().any(|l| l == length), "{head} / {body}");
    }

    #[test]
    fn silence_counts_only_while_the_server_is_not_working() {
        let activity = Arc::new(Activity::new());
        let none = Duration::ZERO;
        assert!(activity.is_idle(none), "no request: silence is idleness");
        let busy = activity.request_started();
        assert!(!activity.is_idle(none), "a handler computing a response");
        activity.body_waiting.store(true, Ordering::Relaxed);
        assert!(activity.is_idle(none), "a handler waiting for body bytes");
        drop(busy);
        assert!(activity.is_idle(none));
        assert!(!activity.is_idle(Duration::from_secs(3600)));
    }
}
