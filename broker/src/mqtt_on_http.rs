//! MQTT over WebSocket on the HTTP listener, at `/mqtt`, so a web page, its MQTT connection and
//! its media URLs share one origin (one port, one TLS certificate behind a proxy, no CORS).
//!
//! The request head is peeked, not read: a WebSocket upgrade to `/mqtt` leaves the HTTP
//! server with its socket untouched and goes to the same upgrade and session code as the `ws`
//! listener, which reads the head itself. Everything else is served by hyper as before.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::listeners;
use crate::metrics::Metrics;
use crate::state::Shared;

/// The most of a request head looked at; a head this long without its end is plain HTTP's
/// business (hyper refuses it).
const MAX_PEEK: usize = 8 * 1024;

/// How long to wait before peeking again at a head that arrived in pieces.
const PEEK_AGAIN: Duration = Duration::from_millis(5);

/// What the first bytes of a connection on the HTTP listener ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Wants {
    /// A WebSocket upgrade of `GET /mqtt`: an MQTT connection.
    Mqtt,
    /// Anything else, served by the HTTP routes.
    Http,
    /// The peer closed or failed before a request: nothing to serve.
    Nothing,
    /// No whole request head within the time allowed.
    TimedOut,
}

/// Peeks at the request head until it is complete (or `MAX_PEEK` bytes), for at most `within`.
pub async fn sniff(stream: &TcpStream, within: Duration) -> Wants {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; MAX_PEEK];
    loop {
        let peeked = tokio::select! {
            peeked = stream.peek(&mut buf) => peeked,
            _ = tokio::time::sleep_until(deadline) => return Wants::TimedOut,
        };
        let n = match peeked {
            Ok(0) | Err(_) => return Wants::Nothing,
            Ok(n) => n,
        };
        let head = &buf[..n];
        // Most requests are known from their first bytes: no need to wait for the whole head.
        if !could_be_mqtt(head) {
            return Wants::Http;
        }
        if let Some(end) = find(head, b"\r\n\r\n") {
            return if is_mqtt_upgrade(&head[..end]) {
                Wants::Mqtt
            } else {
                Wants::Http
            };
        }
        if n == MAX_PEEK {
            return Wants::Http;
        }
        // Peeking again at once would return the same bytes: wait for the rest to arrive.
        tokio::select! {
            _ = tokio::time::sleep(PEEK_AGAIN) => {}
            _ = tokio::time::sleep_until(deadline) => return Wants::TimedOut,
        }
    }
}

/// The start of a request line that may still turn out to be `GET /mqtt…`.
fn could_be_mqtt(head: &[u8]) -> bool {
    const LINE: &[u8] = b"GET /mqtt";
    let n = head.len().min(LINE.len());
    if head[..n] != LINE[..n] {
        return false;
    }
    // After the path: its end, or a query.
    match head.get(LINE.len()) {
        None => true,
        Some(b) => *b == b' ' || *b == b'?',
    }
}

/// A complete head (without its blank line) of `GET /mqtt` asking for a WebSocket upgrade.
fn is_mqtt_upgrade(head: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = text.split("\r\n");
    let Some(request_line) = lines.next() else {
        return false;
    };
    let mut parts = request_line.split(' ');
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else {
        return false;
    };
    if target.split('?').next() != Some("/mqtt") {
        return false;
    }
    lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value
                    .split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Hands an upgrade to the MQTT side: admitted like a socket of the `ws` listener (at most
/// `limits.max_handshakes_per_ip` waiting for their CONNACK per source address) and tracked
/// with the other MQTT sessions, so shutdown waits for it as for them.
pub fn hand_over(stream: TcpStream, shared: Arc<Shared>, sessions: &TaskTracker) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    let Some(arrival) = shared.handshakes.arrive(peer.ip()) else {
        Metrics::inc(&shared.metrics.handshakes_refused_total);
        debug!(%peer, "too many pending handshakes from this address");
        return;
    };
    debug!(%peer, "MQTT over WebSocket on the HTTP listener");
    sessions.spawn(listeners::websocket_connection(stream, shared, arrival));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn an_upgrade_of_mqtt_is_recognized() {
        let h = head("GET /mqtt HTTP/1.1\nHost: x\nConnection: Upgrade\nUpgrade: websocket");
        assert!(is_mqtt_upgrade(&h));
        let h = head("GET /mqtt?x=1 HTTP/1.1\nupgrade:  WebSocket\n");
        assert!(is_mqtt_upgrade(&h));
    }

    #[test]
    fn other_requests_are_http() {
        for h in [
            "GET /mqtt HTTP/1.1\nHost: x",
            "GET /mqttx HTTP/1.1\nUpgrade: websocket",
            "POST /mqtt HTTP/1.1\nUpgrade: websocket",
            "GET / HTTP/1.1\nUpgrade: websocket",
            "GET /mqtt HTTP/1.1\nX-Upgrade: websocket",
        ] {
            assert!(!is_mqtt_upgrade(&head(h)), "{h}");
        }
    }

    #[test]
    fn most_requests_are_known_from_their_first_bytes() {
        assert!(could_be_mqtt(b"GE"));
        assert!(could_be_mqtt(b"GET /mq"));
        assert!(could_be_mqtt(b"GET /mqtt"));
        assert!(could_be_mqtt(b"GET /mqtt "));
        assert!(could_be_mqtt(b"GET /mqtt?"));
        assert!(!could_be_mqtt(b"GET /healthz"));
        assert!(!could_be_mqtt(b"PUT /media/m_1"));
        assert!(!could_be_mqtt(b"GET /mqttx"));
        assert!(!could_be_mqtt(b"GET /app.js"));
    }
}
