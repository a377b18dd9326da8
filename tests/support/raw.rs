//! Raw-socket MQTT helpers: hand-built packets for MQTT 3.1.1 and 5.0, a reader with timeouts and
//! close detection. Used where a real client library would refuse to send what a test needs
//! (garbage, wrong protocol levels, oversized packets, invalid UTF-8) or where a test must see the
//! exact bytes the server answers with (return codes, DISCONNECT reason codes, timing of a close).
#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd_wire::mqtt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Packet types (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

/// Protocol version of a raw connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl V {
    pub fn level(self) -> u8 {
        match self {
            V::V4 => 4,
            V::V5 => 5,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// MQTT variable byte integer (remaining length, property length).
pub fn varint(n: usize) -> Vec<u8> {
    mqtt::varint::encode(n)
        .unwrap_or_else(|e| panic!("test built an unencodable length: {e}"))
        .as_bytes()
        .to_vec()
}

/// A length-prefixed byte string.
pub fn bin(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + data.len());
    mqtt::field::encode_field(data, &mut out)
        .unwrap_or_else(|e| panic!("test built an unencodable field: {e}"));
    out
}

/// A length-prefixed UTF-8 string.
pub fn string(s: &str) -> Vec<u8> {
    bin(s.as_bytes())
}

/// Fixed header + body.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    mqtt::frame::encode_frame(first_byte, body)
        .unwrap_or_else(|e| panic!("test built an unencodable packet: {e}"))
}

/// A CONNECT packet, built field by field.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Protocol name (normally "MQTT").
    pub protocol_name: String,
    /// Protocol level: 4 = 3.1.1, 5 = 5.0, 3 = 3.1.
    pub level: u8,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub keep_alive: u16,
    pub clean: bool,
    /// Will topic and payload (QoS 0, not retained).
    pub will: Option<(String, Vec<u8>)>,
    /// MQTT 5 CONNECT properties, already encoded (without their length).
    pub properties: Vec<u8>,
    /// MQTT 5 will properties, already encoded (without their length).
    pub will_properties: Vec<u8>,
}

impl Connect {
    /// A CONNECT with username and password, keep-alive 60 s, clean session.
    pub fn new(v: V, client_id: &str, user: &str, password: &str) -> Connect {
        Connect {
            protocol_name: "MQTT".into(),
            level: v.level(),
            client_id: client_id.into(),
            username: Some(user.into()),
            password: Some(password.as_bytes().to_vec()),
            keep_alive: 60,
            clean: true,
            will: None,
            properties: Vec::new(),
            will_properties: Vec::new(),
        }
    }

    /// Clean Start (5.0) / CleanSession (3.1.1).
    pub fn clean(mut self, clean: bool) -> Connect {
        self.clean = clean;
        self
    }

    /// MQTT 5 Session Expiry Interval, seconds.
    pub fn session_expiry(mut self, secs: u32) -> Connect {
        self.properties.push(0x11);
        self.properties.extend(secs.to_be_bytes());
        self
    }

    /// MQTT 5 Will Delay Interval, seconds (a will property).
    pub fn will_delay(mut self, secs: u32) -> Connect {
        self.will_properties.push(0x18);
        self.will_properties.extend(secs.to_be_bytes());
        self
    }

    /// MQTT 5 Receive Maximum: QoS 1 publishes the client takes unacknowledged.
    pub fn receive_maximum(mut self, n: u16) -> Connect {
        self.properties.push(0x21);
        self.properties.extend(n.to_be_bytes());
        self
    }

    /// MQTT 5 Maximum Packet Size: the largest packet the client takes.
    pub fn maximum_packet_size(mut self, n: u32) -> Connect {
        self.properties.push(0x27);
        self.properties.extend(n.to_be_bytes());
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Connect {
        self.keep_alive = secs;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8]) -> Connect {
        self.will = Some((topic.into(), payload.to_vec()));
        self
    }

    pub fn level(mut self, level: u8) -> Connect {
        self.level = level;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let v5 = self.level == 5;
        let mut body = string(&self.protocol_name);
        body.push(self.level);
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if self.will.is_some() {
            flags |= 0x04;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        if v5 {
            body.extend(varint(self.properties.len()));
            body.extend_from_slice(&self.properties);
        }
        body.extend(string(&self.client_id));
        if let Some((topic, payload)) = &self.will {
            if v5 {
                body.extend(varint(self.will_properties.len()));
                body.extend_from_slice(&self.will_properties);
            }
            body.extend(string(topic));
            body.extend(bin(payload));
        }
        if let Some(user) = &self.username {
            body.extend(string(user));
        }
        if let Some(pw) = &self.password {
            body.extend(bin(pw));
        }
        frame(CONNECT << 4, &body)
    }
}

/// A PUBLISH with a topic given as raw bytes (so it can be invalid UTF-8).
pub fn publish_bytes(v: V, topic: &[u8], payload: &[u8], qos: u8, pkid: u16) -> Vec<u8> {
    let mut body = bin(topic);
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    if v == V::V5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(payload);
    frame((PUBLISH << 4) | (qos << 1), &body)
}

/// A PUBLISH.
pub fn publish(v: V, topic: &str, payload: &[u8], qos: u8, pkid: u16) -> Vec<u8> {
    publish_bytes(v, topic.as_bytes(), payload, qos, pkid)
}

/// A SUBSCRIBE for several filters.
pub fn subscribe(v: V, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v == V::V5 {
        body.push(0);
    }
    for (filter, qos) in filters {
        body.extend(string(filter));
        body.push(*qos);
    }
    frame((SUBSCRIBE << 4) | 0x02, &body)
}

/// An UNSUBSCRIBE for `filters` (none: an empty, malformed one).
pub fn unsubscribe(v: V, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v == V::V5 {
        body.push(0);
    }
    for filter in filters {
        body.extend(string(filter));
    }
    frame((UNSUBSCRIBE << 4) | 0x02, &body)
}

/// A PUBACK (success).
pub fn puback(pkid: u16) -> Vec<u8> {
    frame(PUBACK << 4, &pkid.to_be_bytes())
}

pub fn pingreq() -> Vec<u8> {
    vec![PINGREQ << 4, 0]
}

pub fn disconnect() -> Vec<u8> {
    vec![DISCONNECT << 4, 0]
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// One packet read from the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind() {
            CONNACK => "CONNACK",
            PUBLISH => "PUBLISH",
            PUBACK => "PUBACK",
            PUBREC => "PUBREC",
            PUBREL => "PUBREL",
            PUBCOMP => "PUBCOMP",
            SUBACK => "SUBACK",
            UNSUBACK => "UNSUBACK",
            PINGRESP => "PINGRESP",
            DISCONNECT => "DISCONNECT",
            _ => "?",
        };
        let shown = &self.body[..self.body.len().min(64)];
        write!(f, "{name}(0x{:02x}, {:02x?}", self.first, shown)?;
        if self.body.len() > 64 {
            write!(f, "… {} bytes", self.body.len())?;
        }
        write!(f, ")")
    }
}

/// A decoded PUBLISH from the server.
#[derive(Debug, Clone)]
pub struct Pub {
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub payload: Vec<u8>,
}

impl Pub {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {:?}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// A variable byte integer at the front of `data`: (value, bytes it took), or None when it is
/// incomplete or malformed.
fn read_varint(data: &[u8]) -> Option<(usize, usize)> {
    let decoded = mqtt::varint::decode(data).ok().flatten()?;
    Some((decoded.value, decoded.len))
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// CONNACK return code (3.1.1) / reason code (5.0).
    pub fn connack_code(&self) -> u8 {
        assert_eq!(self.kind(), CONNACK, "expected CONNACK, got {self:?}");
        self.body[1]
    }

    /// CONNACK's session present flag.
    pub fn session_present(&self) -> bool {
        assert_eq!(self.kind(), CONNACK, "expected CONNACK, got {self:?}");
        self.body[0] & 1 == 1
    }

    /// A four-byte property of a 5.0 CONNACK (e.g. 0x11 Session Expiry Interval), if present.
    pub fn connack_u32_property(&self, id: u8) -> Option<u32> {
        assert_eq!(self.kind(), CONNACK, "expected CONNACK, got {self:?}");
        let (len, n) = read_varint(&self.body[2..]).expect("CONNACK property length");
        let mut props = &self.body[2 + n..2 + n + len];
        while let Some(&pid) = props.first() {
            let size = match pid {
                0x11 | 0x27 => 4,
                0x21 | 0x22 | 0x13 => 2,
                0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
                // Strings and other properties: stop (none of the tests asks past them).
                _ => return None,
            };
            if pid == id {
                let b = &props[1..5];
                return Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            props = &props[1 + size..];
        }
        None
    }

    /// A PUBLISH's DUP flag.
    pub fn dup(&self) -> bool {
        assert_eq!(self.kind(), PUBLISH, "expected PUBLISH, got {self:?}");
        self.first & 0x08 != 0
    }

    /// SUBACK codes, one per filter.
    pub fn suback_codes(&self, v: V) -> Vec<u8> {
        assert_eq!(self.kind(), SUBACK, "expected SUBACK, got {self:?}");
        let rest = &self.body[2..];
        match v {
            V::V4 => rest.to_vec(),
            V::V5 => {
                let (len, n) = read_varint(rest).expect("SUBACK property length");
                rest[n + len..].to_vec()
            }
        }
    }

    /// PUBACK packet id and reason code (0 when absent, as in 3.1.1).
    pub fn puback(&self) -> (u16, u8) {
        assert_eq!(self.kind(), PUBACK, "expected PUBACK, got {self:?}");
        let pkid = u16::from_be_bytes([self.body[0], self.body[1]]);
        (pkid, self.body.get(2).copied().unwrap_or(0))
    }

    /// DISCONNECT reason code (0 when absent).
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind(), DISCONNECT, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }

    /// Decodes a PUBLISH.
    pub fn publish(&self, v: V) -> Pub {
        assert_eq!(self.kind(), PUBLISH, "expected PUBLISH, got {self:?}");
        let qos = (self.first >> 1) & 3;
        let tlen = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let topic = String::from_utf8_lossy(&self.body[2..2 + tlen]).into_owned();
        let mut at = 2 + tlen;
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([self.body[at], self.body[at + 1]]);
            at += 2;
        }
        if v == V::V5 {
            let (len, n) = read_varint(&self.body[at..]).expect("PUBLISH property length");
            at += n + len;
        }
        Pub {
            topic,
            qos,
            pkid,
            payload: self.body[at..].to_vec(),
        }
    }
}

/// Why a read gave no packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing complete arrived in time.
    Timeout,
    /// The bytes are not a packet.
    Garbage(String),
}

/// A raw MQTT connection over TCP.
pub struct Raw {
    pub stream: TcpStream,
    pub v: V,
    buf: Vec<u8>,
    closed: bool,
    /// PUBLISH packets read (and acknowledged) while waiting for something else.
    stash: std::collections::VecDeque<Packet>,
}

impl Raw {
    /// Opens a TCP connection (nothing is sent).
    pub async fn open(addr: SocketAddr, v: V) -> Raw {
        let stream = tokio::time::timeout(Duration::from_secs(20), TcpStream::connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        let _ = stream.set_nodelay(true);
        Raw {
            stream,
            v,
            buf: Vec::new(),
            closed: false,
            stash: std::collections::VecDeque::new(),
        }
    }

    /// Opens a TCP connection from a chosen local address (any of 127.0.0.0/8 works on Linux, so
    /// tests can act as several source addresses) and, optionally, with a small receive buffer
    /// (set before connecting, so the advertised window stays small: a client that reads nothing
    /// then stalls the server's writes quickly).
    pub async fn open_from(
        addr: SocketAddr,
        v: V,
        local: Option<std::net::IpAddr>,
        recv_buffer: Option<u32>,
    ) -> Raw {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("create socket");
        if let Some(ip) = local {
            socket
                .bind(SocketAddr::new(ip, 0))
                .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        }
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = tokio::time::timeout(Duration::from_secs(20), socket.connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect failed");
        let _ = stream.set_nodelay(true);
        Raw {
            stream,
            v,
            buf: Vec::new(),
            closed: false,
            stash: std::collections::VecDeque::new(),
        }
    }

    /// Like [`Raw::connect_with`] from a chosen local address: `(connection, CONNACK code)`.
    pub async fn connect_from(
        addr: SocketAddr,
        local: std::net::IpAddr,
        connect: &Connect,
    ) -> (Raw, Result<u8, ReadError>) {
        let v = if connect.level == 5 { V::V5 } else { V::V4 };
        let mut raw = Raw::open_from(addr, v, Some(local), None).await;
        raw.send(&connect.encode()).await;
        let code = raw
            .read_packet(Duration::from_secs(20))
            .await
            .map(|p| p.connack_code());
        (raw, code)
    }

    /// Opens a connection and sends `connect`, returning the CONNACK code.
    pub async fn connect_with(addr: SocketAddr, connect: &Connect) -> (Raw, Result<u8, ReadError>) {
        let v = if connect.level == 5 { V::V5 } else { V::V4 };
        let mut raw = Raw::open(addr, v).await;
        raw.send(&connect.encode()).await;
        let code = raw
            .read_packet(Duration::from_secs(20))
            .await
            .map(|p| p.connack_code());
        (raw, code)
    }

    /// Opens a connection and sends `connect`; returns the whole CONNACK (panics without one).
    pub async fn connack(addr: SocketAddr, connect: &Connect) -> (Raw, Packet) {
        let v = if connect.level == 5 { V::V5 } else { V::V4 };
        let mut raw = Raw::open(addr, v).await;
        raw.send(&connect.encode()).await;
        let packet = raw
            .read_packet(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("no CONNACK for {}: {e:?}", connect.client_id));
        assert_eq!(packet.kind(), CONNACK, "expected CONNACK, got {packet:?}");
        (raw, packet)
    }

    /// Opens a connection and logs in; panics unless the CONNACK says success.
    pub async fn login(addr: SocketAddr, v: V, client_id: &str, user: &str, pw: &str) -> Raw {
        let connect = Connect::new(v, client_id, user, pw);
        Raw::login_with(addr, &connect).await
    }

    /// Like `login` with a prepared CONNECT.
    pub async fn login_with(addr: SocketAddr, connect: &Connect) -> Raw {
        let (raw, code) = Raw::connect_with(addr, connect).await;
        assert_eq!(code, Ok(0), "CONNECT of {} refused", connect.client_id);
        raw
    }

    /// Writes bytes; a failure (the server already closed) is remembered, not fatal.
    pub async fn send(&mut self, bytes: &[u8]) {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(20), write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => self.closed = true,
        }
    }

    /// Reads one packet within `timeout`.
    pub async fn read_packet(&mut self, timeout: Duration) -> Result<Packet, ReadError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(packet) = self.take_packet()? {
                return Ok(packet);
            }
            if self.closed {
                return Err(ReadError::Closed);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closed = true;
                    if let Some(packet) = self.take_packet()? {
                        return Ok(packet);
                    }
                    return Err(ReadError::Closed);
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn take_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        let header = match mqtt::frame::read_header(&self.buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            // The first byte and four length bytes, each announcing another.
            Err(_) => return Err(ReadError::Garbage(format!("{:02x?}", &self.buf[..5]))),
        };
        let total = header.packet_len();
        if self.buf.len() < total {
            return Ok(None);
        }
        let packet = Packet {
            first: header.first_byte,
            body: self.buf[header.header_len..total].to_vec(),
        };
        self.buf.drain(..total);
        Ok(Some(packet))
    }

    /// Reads until the server closes the connection; returns the packets seen before the close,
    /// or `Err(packets so far)` when the connection is still open after `timeout`.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<Packet>, Vec<Packet>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_packet(left).await {
                Ok(p) => {
                    if p.kind() == PUBLISH && (p.first >> 1) & 3 == 1 {
                        let pkid = p.publish(self.v).pkid;
                        self.send(&puback(pkid)).await;
                    }
                    seen.push(p)
                }
                Err(ReadError::Closed) => return Ok(seen),
                Err(ReadError::Garbage(_)) => {
                    // Not MQTT any more; keep reading raw until EOF.
                    self.buf.clear();
                }
                Err(ReadError::Timeout) => return Err(seen),
            }
        }
    }

    /// Asserts the server closes the connection within `timeout`; returns what came before.
    pub async fn expect_closed(&mut self, timeout: Duration, what: &str) -> Vec<Packet> {
        match self.wait_closed(timeout).await {
            Ok(seen) => seen,
            Err(seen) => panic!("{what}: connection still open after {timeout:?} (got {seen:?})"),
        }
    }

    /// Reads packets until one matches, acknowledging QoS 1 publishes on the way. Publishes that
    /// do not match are kept for later calls (other packets are dropped).
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&Packet) -> bool,
    ) -> Result<Packet, ReadError> {
        if let Some(i) = self.stash.iter().position(&mut want) {
            return Ok(self.stash.remove(i).unwrap());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let p = self.read_packet(left).await?;
            if p.kind() == PUBLISH && (p.first >> 1) & 3 == 1 {
                let pkid = p.publish(self.v).pkid;
                self.send(&puback(pkid)).await;
            }
            if want(&p) {
                return Ok(p);
            }
            if p.kind() == PUBLISH {
                self.stash.push_back(p);
            }
        }
    }

    /// Subscribes and returns the SUBACK codes.
    pub async fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send(&subscribe(self.v, pkid, filters)).await;
        let v = self.v;
        let p = self
            .read_until(Duration::from_secs(20), |p| p.kind() == SUBACK)
            .await
            .unwrap_or_else(|e| panic!("no SUBACK for {filters:?}: {e:?}"));
        assert_eq!(
            u16::from_be_bytes([p.body[0], p.body[1]]),
            pkid,
            "SUBACK for another packet id"
        );
        p.suback_codes(v)
    }

    /// Publishes at QoS 1 and returns the PUBACK reason code.
    pub async fn publish_qos1(&mut self, topic: &str, payload: &[u8], pkid: u16) -> u8 {
        self.send(&publish(self.v, topic, payload, 1, pkid)).await;
        let p = self
            .read_until(Duration::from_secs(20), |p| p.kind() == PUBACK)
            .await
            .unwrap_or_else(|e| panic!("no PUBACK for {topic}: {e:?}"));
        let (id, code) = p.puback();
        assert_eq!(id, pkid, "PUBACK for another packet id");
        code
    }

    /// The next PUBLISH on `topic` (QoS 1 ones are acknowledged).
    pub async fn next_publish_on(
        &mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Pub, ReadError> {
        let v = self.v;
        let p = self
            .read_until(timeout, |p| {
                p.kind() == PUBLISH && p.publish(v).topic == topic
            })
            .await?;
        Ok(p.publish(v))
    }

    /// The next PUBLISH on `topic` as JSON; panics when none comes within 20 s.
    pub async fn next_json_on(&mut self, topic: &str) -> serde_json::Value {
        match self.next_publish_on(topic, Duration::from_secs(20)).await {
            Ok(p) => p.json(),
            Err(e) => panic!("nothing on {topic}: {e:?}"),
        }
    }

    /// Every PUBLISH that arrives within `wait` (QoS 1 ones are acknowledged); stops early when
    /// the connection closes.
    pub async fn publishes_for(&mut self, wait: Duration) -> Vec<Pub> {
        let deadline = tokio::time::Instant::now() + wait;
        let v = self.v;
        let mut out: Vec<Pub> = self.stash.drain(..).map(|p| p.publish(v)).collect();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_packet(left).await {
                Ok(p) if p.kind() == PUBLISH => {
                    let publish = p.publish(self.v);
                    if publish.qos == 1 {
                        self.send(&puback(publish.pkid)).await;
                    }
                    out.push(publish);
                }
                Ok(_) => {}
                Err(_) => return out,
            }
        }
    }

    /// True when a PINGREQ is answered (the connection is alive and serving).
    pub async fn ping(&mut self) -> bool {
        self.send(&pingreq()).await;
        self.read_until(Duration::from_secs(20), |p| p.kind() == PINGRESP)
            .await
            .is_ok()
    }
}

/// Waits for `cond` to become true, polling; false when `timeout` passes first.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
