//! One raw MQTT connection of `chatbench connect`: bind a source address, connect, CONNECT →
//! CONNACK, optionally SUBSCRIBE → SUBACK, then hold the socket idle, reading (and dropping)
//! whatever the server sends until it closes the connection.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control;
use crate::wire::{self, Answer};

/// Packet id of the one SUBSCRIBE.
const SUBSCRIBE_ID: u16 = 1;

/// Everything needed to open one connection (the packets are encoded once, up front).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server address.
    pub server: SocketAddr,
    /// Local address to bind (port 0).
    pub source: SocketAddr,
    /// The encoded CONNECT.
    pub connect: Vec<u8>,
    /// The encoded SUBSCRIBE and the number of filters in it, if any.
    pub subscribe: Option<(Vec<u8>, usize)>,
    /// Longest wait for CONNACK and SUBACK after the TCP connection is up.
    pub timeout: Duration,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nobody listens (ECONNREFUSED): the server is down.
    Refused,
    /// The server closed or reset the connection before answering.
    Closed,
    /// CONNACK with a non-zero return code.
    ConnAck(u8),
    /// A subscription was refused (SUBACK 0x80).
    SubscribeRefused,
    /// No answer within the plan's timeout.
    Timeout,
    /// Some other socket error, or a malformed answer (with what happened).
    Other(String),
}

impl Failure {
    /// A short name for counting failures by kind.
    pub fn label(&self) -> String {
        match self {
            Failure::Refused => "tcp_refused".into(),
            Failure::Closed => "closed_before_answer".into(),
            Failure::ConnAck(code) => {
                format!("connack_{code}_{}", wire::connack_reason(*code)).replace(' ', "_")
            }
            Failure::SubscribeRefused => "subscribe_refused".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Other(what) => what.clone(),
        }
    }

    /// Whether trying again later may succeed (the server is restarting or busy).
    pub fn transient(&self) -> bool {
        matches!(
            self,
            Failure::Refused | Failure::Closed | Failure::ConnAck(3) | Failure::Timeout
        )
    }
}

/// An open, accepted connection and how long it took.
pub struct Opened {
    /// The socket, to be held.
    pub stream: TcpStream,
    /// When the TCP connection was established.
    pub tcp_up: Instant,
    /// When CONNACK arrived.
    pub connack: Instant,
}

fn io_failure(e: &std::io::Error, during: &str) -> Failure {
    match e.kind() {
        ErrorKind::ConnectionRefused => Failure::Refused,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
            Failure::Closed
        }
        _ => Failure::Other(format!("{during}: {e}")),
    }
}

/// One attempt: TCP connect from the plan's source address, CONNECT, CONNACK, and the
/// SUBSCRIBE round trip if the plan has one.
pub async fn open(plan: &Plan) -> Result<Opened, Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| io_failure(&e, "socket"))?;
    socket
        .bind(plan.source)
        .map_err(|e| io_failure(&e, &format!("bind {}", plan.source)))?;
    let mut stream = socket
        .connect(plan.server)
        .await
        .map_err(|e| io_failure(&e, "connect"))?;
    let tcp_up = Instant::now();
    let _ = stream.set_nodelay(true);
    let handshake = async {
        stream
            .write_all(&plan.connect)
            .await
            .map_err(|e| io_failure(&e, "writing CONNECT"))?;
        let mut buf = Vec::with_capacity(64);
        let mut connack = None;
        let mut subacks_due = usize::from(plan.subscribe.is_some());
        loop {
            while let Some(frame) = wire::frame(&buf).map_err(|e| Failure::Other(e.to_string()))? {
                let len = frame.len;
                match wire::answer(&frame).map_err(|e| Failure::Other(e.to_string()))? {
                    Answer::ConnAck(0) => {
                        connack = Some(Instant::now());
                        if let Some((subscribe, _)) = &plan.subscribe {
                            stream
                                .write_all(subscribe)
                                .await
                                .map_err(|e| io_failure(&e, "writing SUBSCRIBE"))?;
                        }
                    }
                    Answer::ConnAck(code) => return Err(Failure::ConnAck(code)),
                    Answer::SubAck(SUBSCRIBE_ID, codes) => {
                        if codes.iter().any(|c| *c >= 0x80) {
                            return Err(Failure::SubscribeRefused);
                        }
                        subacks_due = subacks_due.saturating_sub(1);
                    }
                    Answer::SubAck(..) | Answer::Other(_) => {}
                }
                buf.drain(..len);
            }
            if let (Some(at), 0) = (connack, subacks_due) {
                return Ok(at);
            }
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| io_failure(&e, "reading CONNACK"))?
                == 0
            {
                return Err(Failure::Closed);
            }
        }
    };
    let connack = tokio::time::timeout(plan.timeout, handshake)
        .await
        .map_err(|_| Failure::Timeout)??;
    Ok(Opened {
        stream,
        tcp_up,
        connack,
    })
}

/// Encodes the SUBSCRIBE for `filters` (none: no SUBSCRIBE).
pub fn subscribe_packet(filters: &[String]) -> anyhow::Result<Option<(Vec<u8>, usize)>> {
    if filters.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        wire::encode_subscribe(SUBSCRIBE_ID, filters)?,
        filters.len(),
    )))
}

/// How holding a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// The server closed (or reset) the connection, at this instant.
    ClosedByServer(Instant),
    /// The stop signal was raised; the socket is dropped.
    Stopped,
}

/// Holds `stream` open without sending anything, discarding what arrives, until the server
/// closes it or `stop` is raised.
pub async fn hold(mut stream: TcpStream, stop: &mut watch::Receiver<bool>) -> HoldEnd {
    let mut scratch = [0u8; 256];
    let stopped = control::stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return HoldEnd::Stopped,
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return HoldEnd::ClosedByServer(Instant::now()),
                Ok(_) => {}
            },
        }
    }
}
