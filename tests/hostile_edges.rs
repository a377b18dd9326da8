//! Hostile clients at chatd's edges, against the real binary over sockets: WebSocket frames and
//! messages larger than an MQTT packet (on `ws` and `wss`), HTTP connections that never finish
//! a request, never leave, stall an upload or come in crowds, a refused client id that would
//! forge log lines, and uploaded media that would run as a web page in chatd's origin (`fs`) or
//! the object store's (`s3`).
//!
//! The `s3` test needs `s3s-fs` on the PATH (`cargo install s3s-fs@0.14.1 --locked --features
//! binary`, which `.ci/run` does); without it it fails saying so.

use crate::support;

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::raw::{self, eventually, Connect, V};
use support::{unique, Client, Server, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------------

/// Opens a TCP connection to `addr` from `local` (any of 127.0.0.0/8 works on Linux).
async fn tcp_from(addr: SocketAddr, local: IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(local, 0))
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect failed");
    let _ = stream.set_nodelay(true);
    stream
}

/// Reads (and drops) whatever arrives until the peer closes: true when it closed within
/// `wait`, false when it was still open then.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, wait: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket by hand: an upgrade, masked client frames, and reading the server's frames
// ---------------------------------------------------------------------------------------------

/// Upgrades `s` to WebSocket on `/mqtt` with the `mqtt` subprotocol; panics unless it gets 101.
async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    let request = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
    s.write_all(request.as_bytes()).await.expect("send upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .expect("upgrade answer timed out")
            .expect("read upgrade answer");
        assert!(
            n == 1,
            "closed during the upgrade: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
}

const OP_CONTINUATION: u8 = 0;
const OP_BINARY: u8 = 2;

/// A client frame (masked) whose header declares `declared` payload bytes, carrying `payload`
/// (which may be shorter, for a frame that is never finished).
fn ws_frame(fin: bool, opcode: u8, declared: u64, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    if declared < 126 {
        out.push(0x80 | declared as u8);
    } else if declared <= u64::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(declared as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&declared.to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A whole binary message in one frame.
fn ws_binary(payload: &[u8]) -> Vec<u8> {
    ws_frame(true, OP_BINARY, payload.len() as u64, payload)
}

/// MQTT bytes arriving in the server's WebSocket frames.
struct WsReader {
    frames: Vec<u8>,
    mqtt: Vec<u8>,
}

impl WsReader {
    fn new() -> WsReader {
        WsReader {
            frames: Vec::new(),
            mqtt: Vec::new(),
        }
    }

    /// The next MQTT packet (whole, fixed header included).
    async fn packet<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.unframe();
            if let Some(packet) = take_mqtt_packet(&mut self.mqtt) {
                return packet;
            }
            let mut buf = [0u8; 16 * 1024];
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("no MQTT packet in time")
                .expect("read WebSocket");
            assert!(n > 0, "the server closed the WebSocket");
            self.frames.extend_from_slice(&buf[..n]);
        }
    }

    /// Moves the payloads of complete server frames (unmasked) to the MQTT bytes.
    fn unframe(&mut self) {
        loop {
            let f = &self.frames;
            if f.len() < 2 {
                return;
            }
            let (len, start) = match f[1] & 0x7f {
                126 if f.len() >= 4 => (u64::from(u16::from_be_bytes([f[2], f[3]])), 4),
                127 if f.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&f[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                126 | 127 => return,
                n => (u64::from(n), 2),
            };
            let end = start + len as usize;
            if f.len() < end {
                return;
            }
            if f[0] & 0x0f == OP_BINARY || f[0] & 0x0f == OP_CONTINUATION {
                let payload = f[start..end].to_vec();
                self.mqtt.extend_from_slice(&payload);
            }
            self.frames.drain(..end);
        }
    }
}

/// Takes one whole MQTT packet off the front of `buf`, if there is one.
fn take_mqtt_packet(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut remaining = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        remaining |= usize::from(b & 0x7f) << shift;
        shift += 7;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = i + remaining;
    (buf.len() >= end).then(|| buf.drain(..end).collect())
}

/// Logs in over an upgraded WebSocket; panics unless CONNACK says success.
async fn ws_login<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, reader: &mut WsReader, user: &str) {
    let connect = Connect::new(V::V4, user, user, &format!("{user}-pw")).keep_alive(0);
    s.write_all(&ws_binary(&connect.encode()))
        .await
        .expect("send CONNECT");
    let connack = reader.packet(s).await;
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK of {user}");
}

/// A TLS client trusting `ca_pem`, connected to `addr` as `localhost`.
async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let mut pem = ca_pem;
    for cert in rustls_pemfile::certs(&mut pem) {
        roots.add(cert.expect("CA PEM")).expect("trust the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

/// A self-signed certificate for `localhost` in `dir`: (`[tls]` section, CA PEM).
fn tls_section(dir: &std::path::Path) -> (String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    let section = format!(
        "[tls]\ncert_file = {}\nkey_file = {}\n",
        support::toml_string(&cert.to_string_lossy()),
        support::toml_string(&key.to_string_lossy())
    );
    (section, ck.cert.pem().into_bytes())
}

/// Sends a frame header declaring 8 MiB (max_packet_size is 64 KiB) and the first KiB of it:
/// the server must close at once, not wait for (and buffer) the rest.
async fn oversized_frame_is_refused<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, what: &str) {
    ws_upgrade(&mut s).await;
    let start = ws_frame(true, OP_BINARY, 8 << 20, &[0x10; 1024]);
    s.write_all(&start).await.expect("send the frame's start");
    assert!(
        closed_within(&mut s, WAIT).await,
        "{what}: a frame declaring 8 MiB was waited for instead of refused from its header"
    );
}

/// Oversized WebSocket frames are refused from their header, before CONNECT, on `ws` and `wss`
/// (the CONNECT timeout is long, so only the frame limit can close these sockets in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_larger_than_a_packet_are_refused_from_their_header() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (tls, ca) = tls_section(certs.path());
    let srv = Server::start_with_listen(
        "wss = \"127.0.0.1:0\"\n",
        &format!("{tls}\n[limits]\nmax_packet_size = 65536\nconnect_timeout_secs = 600\n"),
    );
    let ws = TcpStream::connect(srv.ws).await.expect("connect ws");
    oversized_frame_is_refused(ws, "ws").await;
    let wss = srv.wss.expect("wss listener");
    oversized_frame_is_refused(tls_connect(wss, &ca).await, "wss").await;
}

/// A message under the limit may come in fragments; fragments adding up to more than a packet
/// close the connection as soon as they do, without waiting for the message's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_larger_than_a_packet_are_refused_as_they_grow() {
    let srv = Server::start_with("[limits]\nmax_packet_size = 65536\nconnect_timeout_secs = 600\n");
    let user = unique("ws");
    srv.add_user(&user, &format!("{user}-pw"));
    let mut s = TcpStream::connect(srv.ws).await.expect("connect ws");
    ws_upgrade(&mut s).await;
    let mut reader = WsReader::new();
    ws_login(&mut s, &mut reader, &user).await;

    // A 60 KiB QoS 1 publish in two fragments is fine: the server answers it.
    let publish = raw::publish(V::V4, &format!("chat/{user}/rpc"), &[b'x'; 60 * 1024], 1, 7);
    let (a, b) = publish.split_at(publish.len() / 2);
    s.write_all(&ws_frame(false, OP_BINARY, a.len() as u64, a))
        .await
        .expect("send");
    s.write_all(&ws_frame(true, OP_CONTINUATION, b.len() as u64, b))
        .await
        .expect("send");
    loop {
        let packet = reader.packet(&mut s).await;
        if packet[0] >> 4 == 4 {
            assert_eq!(&packet[2..4], &[0, 7], "PUBACK of the fragmented publish");
            break;
        }
    }

    // Fragments of 32 KiB that never end: past 64 KiB (and a little framing) the server closes.
    let piece = [0x30u8; 32 * 1024];
    let mut writes_failed = false;
    for i in 0..8 {
        let opcode = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
        let frame = ws_frame(false, opcode, piece.len() as u64, &piece);
        if s.write_all(&frame).await.is_err() {
            writes_failed = true;
            break;
        }
    }
    assert!(
        writes_failed || closed_within(&mut s, WAIT).await,
        "an unfinished 256 KiB message was buffered instead of refused"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP listener
// ---------------------------------------------------------------------------------------------

/// A keep-alive `GET /healthz` on `s`: the status, or `None` when the connection was closed
/// (or reset) instead of answered.
async fn healthz<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<u16> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if s.write_all(request).await.is_err() {
        return None;
    }
    read_response(s).await.map(|(status, _)| status)
}

/// Reads one response (head, then a `Content-Length` body): `(status, head)`, or `None` when
/// the connection closes first.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some((status, head));
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("no HTTP response within {WAIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request head that never ends (one header byte every 200 ms) is cut off by
/// `limits.http_header_timeout_secs`, and so is a kept-alive connection that sends no next
/// request; a prompt request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_that_send_no_whole_request_are_closed() {
    let srv = Server::start_with(
        "[limits]\nhttp_header_timeout_secs = 2\nhttp_idle_timeout_secs = 3600\n",
    );
    // Slowloris: bytes keep coming, the head never ends.
    let mut slow = TcpStream::connect(srv.http).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("send");
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < WAIT {
        if closed_within(&mut slow, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a request head trickling in for {WAIT:?} kept its connection"
    );

    // Kept alive after a response, then silent.
    let mut idle = TcpStream::connect(srv.http).await.expect("connect");
    assert_eq!(healthz(&mut idle).await, Some(200));
    assert!(
        closed_within(&mut idle, WAIT).await,
        "a kept-alive connection without a next request stayed open"
    );
    assert!(srv.metric("chatd_http_timeouts_total").unwrap_or(0.0) >= 2.0);
}

/// Source address 127.0.0.`n`.
fn local(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// At most `http_connections_per_ip` connections per address and `http_max_connections` in
/// all; the rest get 503 (or are closed) at once, MQTT logins are unaffected, and a freed slot
/// is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_per_address_and_in_total() {
    let srv = Server::start_with(
        "[limits]\nhttp_connections_per_ip = 3\nhttp_max_connections = 5\n\
         http_header_timeout_secs = 3600\nhttp_idle_timeout_secs = 3600\n",
    );
    let user = unique("cap");
    srv.add_user(&user, &format!("{user}-pw"));
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tcp_from(srv.http, local(1)).await;
        assert_eq!(healthz(&mut s).await, Some(200));
        held.push(s);
    }
    let mut fourth = tcp_from(srv.http, local(1)).await;
    let answer = healthz(&mut fourth).await;
    assert!(
        matches!(answer, None | Some(503)),
        "a 4th connection from one address was served: {answer:?}"
    );
    for _ in 0..2 {
        let mut s = tcp_from(srv.http, local(2)).await;
        assert_eq!(
            healthz(&mut s).await,
            Some(200),
            "another address is not limited"
        );
        held.push(s);
    }
    let mut sixth = tcp_from(srv.http, local(3)).await;
    let answer = healthz(&mut sixth).await;
    assert!(
        matches!(answer, None | Some(503)),
        "a 6th connection was served past http_max_connections: {answer:?}"
    );

    // MQTT has its own descriptors: logins work while HTTP is full.
    let mqtt = raw::Raw::login(srv.mqtt, V::V4, &user, &user, &format!("{user}-pw")).await;
    drop(mqtt);

    // A freed slot serves again.
    drop(held.remove(0));
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = tcp_from(srv.http, local(3)).await;
        if healthz(&mut s).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a freed HTTP slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
    // The server notices a close only when it reads the socket, so 127.0.0.1's slots come back
    // one by one (each probe holds one until then): ask for the metrics until it is served.
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        if let Some(text) = metrics_from(srv.http, local(1)).await {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "a freed HTTP slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused: f64 = metrics
        .lines()
        .find(|l| l.split_whitespace().next() == Some("chatd_http_connections_refused_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "refusals counted: {refused}");
}

/// `GET /metrics` from `local`: the body, or `None` when that connection is refused or closed.
async fn metrics_from(addr: SocketAddr, local: IpAddr) -> Option<String> {
    let mut s = tcp_from(addr, local).await;
    let request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    s.write_all(request).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn rpc(c: &mut Client, me: &str, op: &str, args: Value) -> Value {
    let mut req = json!({"rid": unique("r"), "op": op});
    for (k, v) in args.as_object().expect("args object") {
        req[k] = v.clone();
    }
    let reply = c.rpc(me, req).await;
    assert_eq!(reply["ok"], true, "{op}: {reply}");
    reply["result"].clone()
}

/// A signed upload URL's path and query (`/media/…?expires=…&sig=…`).
fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").expect("http URL");
    &rest[rest.find('/').expect("a path")..]
}

/// An upload whose body stops coming is closed after `limits.http_idle_timeout_secs` and
/// leaves nothing behind; one that keeps sending slowly (longer than the timeout in all) is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_closed_and_leave_nothing() {
    let srv = Server::start_with("[limits]\nhttp_idle_timeout_secs = 2\n");
    srv.add_user("alice", "alice-pw");
    let mut alice = support::online(&srv, "alice", "alice").await;
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let grant = rpc(
        &mut alice,
        "alice",
        "media.upload",
        json!({"mime": "application/octet-stream", "size": bytes.len(), "sha256": sha256_hex(&bytes)}),
    )
    .await;
    let url = grant["upload_url"]
        .as_str()
        .expect("upload_url")
        .to_string();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        path_of(&url),
        bytes.len()
    );

    let mut stalled = TcpStream::connect(srv.http).await.expect("connect");
    stalled.write_all(head.as_bytes()).await.expect("send head");
    stalled
        .write_all(&bytes[..1000])
        .await
        .expect("send a part");
    assert!(
        closed_within(&mut stalled, WAIT).await,
        "an upload that stopped sending kept its connection"
    );
    let tmp = srv.data_dir().join("media").join("tmp");
    let leftovers = || std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert!(
        eventually(WAIT, || leftovers() == 0).await,
        "a stalled upload left {} files in {}",
        leftovers(),
        tmp.display()
    );

    // Slow but never silent for the timeout: 20 pieces, 200 ms apart (4 s in all).
    let mut slow = TcpStream::connect(srv.http).await.expect("connect");
    slow.write_all(head.as_bytes()).await.expect("send head");
    for piece in bytes.chunks(1000) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        slow.write_all(piece)
            .await
            .expect("the slow upload was cut off");
    }
    let answer = read_response(&mut slow).await;
    assert_eq!(answer.map(|(status, _)| status), Some(201), "slow upload");
}

// ---------------------------------------------------------------------------------------------
// Log injection
// ---------------------------------------------------------------------------------------------

/// A refused client id with a newline and terminal escape codes is logged escaped: it forges no
/// log line and sends no escape sequence to whoever reads the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_ids_are_logged_escaped() {
    let srv = Server::start();
    let forged = "FORGED chatd: admin logged in";
    let client_id = format!("evil\n{forged}\u{1b}[2J\u{202e}");
    let connect = Connect::new(V::V4, &client_id, "evil", "pw");
    let (_raw, code) = raw::Raw::connect_with(srv.mqtt, &connect).await;
    assert_eq!(code, Ok(2), "a bad client id is refused as such");
    assert!(
        eventually(WAIT, || srv.log().contains("CONNECT refused")).await,
        "the refusal was not logged:\n{}",
        srv.log()
    );
    let log = srv.log();
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "the client id forged a log line:\n{log}"
    );
    assert!(
        !log.contains("\u{1b}[2J") && !log.contains('\u{202e}'),
        "the client's escape codes reached the log raw:\n{log}"
    );
    assert!(
        log.contains(&format!("evil\\n{forged}\\u{{1b}}[2J\\u{{202e}}")),
        "the client id is not in the log, escaped:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Media served to browsers
// ---------------------------------------------------------------------------------------------

/// The headers of a `GET` of `url` that must answer 200, names lowercase.
async fn get_headers(url: &str) -> reqwest::header::HeaderMap {
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    r.headers().clone()
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Alice uploads `bytes` as `mime` until it is stored (a URL that expired on a slow machine is
/// asked for again), sends it to bob as a `kind` message, and bob gets a download URL.
async fn shared_media_url(
    alice: &mut Client,
    bob: &mut Client,
    mime: &str,
    kind: &str,
    bytes: &[u8],
) -> String {
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    let deadline = Instant::now() + WAIT;
    let media = loop {
        let args = json!({"mime": mime, "size": bytes.len(), "sha256": sha256_hex(bytes)});
        let grant = rpc(alice, "alice", "media.upload", args).await;
        let media = grant["media"].as_str().expect("media").to_string();
        let url = grant["upload_url"].as_str().expect("upload_url");
        let r = client
            .put(url)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT");
        if r.status().is_success() {
            break media;
        }
        assert!(Instant::now() < deadline, "upload answered {}", r.status());
    };
    let msg = json!({"cid": unique("c"), "to": "bob", "type": kind, "media": media});
    let ack = alice.send_json("alice", &msg).await;
    assert_eq!(ack["status"], "sent", "ack: {ack}");
    let grant = rpc(bob, "bob", "media.download", json!({"media": media})).await;
    grant["url"].as_str().expect("url").to_string()
}

/// What both back ends must do: an HTML "file" is an attachment, a PNG is shown inline, both
/// with their declared type. `own_origin`: chatd serves the bytes itself, so every download
/// must also carry `nosniff` and a CSP that lets nothing run.
async fn media_is_served_safely(srv: &Server, own_origin: bool) {
    srv.add_user("alice", "alice-pw");
    srv.add_user("bob", "bob-pw");
    let mut alice = support::online(srv, "alice", "alice").await;
    let mut bob = support::online(srv, "bob", "bob").await;
    let cases: [(&str, &str, &[u8], &str); 3] = [
        (
            "text/html",
            "file",
            b"<html><script>fetch('/admin/users')</script></html>",
            "attachment",
        ),
        (
            "image/svg+xml",
            "file",
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
            "attachment",
        ),
        (
            "image/png",
            "image",
            b"\x89PNG\r\n\x1a\n not really a picture",
            "inline",
        ),
    ];
    for (mime, kind, bytes, disposition) in cases {
        let url = shared_media_url(&mut alice, &mut bob, mime, kind, bytes).await;
        let h = get_headers(&url).await;
        assert_eq!(header(&h, "content-type"), mime, "{h:?}");
        assert!(
            header(&h, "content-disposition").starts_with(disposition),
            "{mime} media should be served {disposition}: {h:?}"
        );
        if own_origin {
            assert_eq!(header(&h, "x-content-type-options"), "nosniff", "{h:?}");
            let policy = header(&h, "content-security-policy");
            assert!(
                policy.contains("default-src 'none'") && policy.contains("sandbox"),
                "{mime}: no restrictive CSP: {h:?}"
            );
        }
    }
}

/// The `fs` back end (chatd's own origin): attachment unless safe inline, `nosniff`, and a CSP
/// that lets nothing run, on every download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_media_cannot_run_in_chatds_origin() {
    let srv = Server::start();
    media_is_served_safely(&srv, true).await;
}

/// An `s3s-fs` server on a free port with the bucket `media`; killed when dropped.
struct S3Server {
    port: u16,
    _root: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    fn start() -> S3Server {
        let found = Command::new("s3s-fs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "s3s-fs is not installed, so the s3 back end cannot be tested: run \
             `cargo install s3s-fs@0.14.1 --locked --features binary` (.ci/run does)"
        );
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("media")).expect("create the bucket");
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "edge-access",
                "--secret-key",
                "edge-secret-key-0123456789",
            ])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(25));
        }
        S3Server {
            port,
            _root: root,
            child,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `s3` back end: the presigned download URL makes the object store answer with the
/// declared type, and as an attachment unless the type is safe inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_media_downloads_are_attachments_unless_safe_inline() {
    let s3 = S3Server::start();
    let srv = Server::start_with(&format!(
        "[media]\nbackend = \"s3\"\n\n[media.s3]\nendpoint = \"http://127.0.0.1:{}\"\n\
         region = \"us-east-1\"\nbucket = \"media\"\naccess_key_id = \"edge-access\"\n\
         secret_access_key = \"edge-secret-key-0123456789\"\nforce_path_style = true\n",
        s3.port
    ));
    media_is_served_safely(&srv, false).await;
}
