//! `chatbench connect`: how many idle authenticated connections chatd holds, what each costs in
//! resident memory, how fast it accepts them, and how fast a whole population reconnects.
//!
//! Clients are minimal hand-written MQTT 3.1.1 connections (CONNECT, optional SUBSCRIBEs, then
//! silence with keep-alive 0), so the load generator costs one socket and a few bytes each and
//! the memory measured is the server's. Source addresses are spread over 127.0.0.0/8 so the
//! number of connections is not limited by one address's port range.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::admin::{read_chatd_files, Admin};
use crate::cli::ConnectArgs;

/// Time one connection may take to get its CONNACK (and SUBACKs).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run measured.
#[derive(Debug, Default, Serialize)]
pub struct ConnectReport {
    /// Connections asked for.
    pub connections: u64,
    /// Connections that got a successful CONNACK.
    pub connected: u64,
    /// Connections refused or failed.
    pub failed: u64,
    /// Distinct users the connections log in as.
    pub users: u64,
    /// Warm-up connects (one per user, paying argon2 once each), per second.
    pub warmup_per_sec: f64,
    /// Measured connects per second (CONNACK received), after warm-up.
    pub accepted_per_sec: f64,
    /// chatd resident memory before the connections, KiB.
    pub rss_before_kib: u64,
    /// chatd resident memory with every connection held, KiB.
    pub rss_held_kib: u64,
    /// Resident memory per held connection, bytes.
    pub bytes_per_connection: f64,
    /// With `--presence`: resident memory after every connection also subscribed to a
    /// presence topic (which gives each session a rumqttd local link), KiB.
    pub rss_with_links_kib: Option<u64>,
    /// With `--presence`: the extra bytes per connection that the rumqttd link costs.
    pub link_bytes_per_connection: Option<f64>,
    /// With `--reconnect`: seconds until every connection was back after all dropped at once.
    pub reconnect_all_secs: Option<f64>,
}

/// One client's identity and source address.
#[derive(Clone)]
struct Slot {
    user: String,
    client_id: String,
    source: IpAddr,
}

/// Runs the mode and prints the report.
pub async fn run(args: ConnectArgs) -> Result<()> {
    let (mqtt, http, token) = endpoints(&args)?;
    let users: Vec<String> = (0..args.users).map(|i| format!("{}{i}", args.prefix)).collect();
    if args.jwt_secret.is_none() {
        let admin = Admin::new(&http, &token)?;
        admin
            .ensure_users(&users, &args.password)
            .await
            .context("creating the benchmark users")?;
    }
    let slots: Vec<Slot> = (0..args.connections)
        .map(|i| {
            let user = users[(i % args.users) as usize].clone();
            Slot {
                client_id: format!("{user}:c{i}"),
                user,
                source: source_ip(i),
            }
        })
        .collect();
    let auth = Arc::new(Auth::new(&args)?);
    let mut report = ConnectReport {
        connections: args.connections as u64,
        users: args.users as u64,
        ..ConnectReport::default()
    };

    // Warm-up: one connection per user, so each password is verified once (argon2); later
    // connections of the same user are recognised without it.
    let warm: Vec<Slot> = slots.iter().take(args.users as usize).cloned().collect();
    let start = Instant::now();
    let (held, failed) = connect_all(mqtt, &warm, &auth, args.concurrency, &[]).await;
    report.warmup_per_sec = held.len() as f64 / start.elapsed().as_secs_f64();
    if failed > 0 {
        bail!("{failed} of {} warm-up connections failed", warm.len());
    }
    drop(held);
    settle(args.chatd_pid).await;

    report.rss_before_kib = rss_kib(args.chatd_pid)?;
    let filters = |s: &Slot| vec![format!("user/{}/#", s.user)];
    let start = Instant::now();
    let subs: Vec<Vec<String>> = if args.subscribe {
        slots.iter().map(filters).collect()
    } else {
        Vec::new()
    };
    let (mut held, failed) = connect_all(mqtt, &slots, &auth, args.concurrency, &subs).await;
    let took = start.elapsed().as_secs_f64();
    report.connected = held.len() as u64;
    report.failed = failed;
    report.accepted_per_sec = held.len() as f64 / took;
    settle(args.chatd_pid).await;
    report.rss_held_kib = rss_kib(args.chatd_pid)?;
    report.bytes_per_connection = per_connection(
        report.rss_before_kib,
        report.rss_held_kib,
        report.connected,
    );

    if args.presence {
        subscribe_presence(&mut held, &slots).await?;
        settle(args.chatd_pid).await;
        let with_links = rss_kib(args.chatd_pid)?;
        report.rss_with_links_kib = Some(with_links);
        report.link_bytes_per_connection = Some(per_connection(
            report.rss_held_kib,
            with_links,
            report.connected,
        ));
    }

    if args.reconnect {
        drop(held);
        // Every session must be gone before the storm, or takeovers would be measured.
        settle(args.chatd_pid).await;
        let start = Instant::now();
        let (back, failed) = connect_all(mqtt, &slots, &auth, args.concurrency, &subs).await;
        report.reconnect_all_secs = Some(start.elapsed().as_secs_f64());
        if failed > 0 {
            eprintln!("reconnect: {failed} connections failed");
        }
        drop(back);
    }

    print(&report, args.json);
    Ok(())
}

fn endpoints(args: &ConnectArgs) -> Result<(SocketAddr, String, String)> {
    let files = match &args.chatd_data {
        Some(dir) => Some(read_chatd_files(dir)?),
        None => None,
    };
    let mqtt = args
        .mqtt
        .clone()
        .or_else(|| files.as_ref().map(|f| f.mqtt.clone()))
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let http = args
        .http
        .clone()
        .or_else(|| files.as_ref().map(|f| f.http.clone()))
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let token = args
        .admin_token
        .clone()
        .or_else(|| files.as_ref().map(|f| f.admin_token.clone()))
        .unwrap_or_default();
    let mqtt: SocketAddr = mqtt
        .parse()
        .with_context(|| format!("--mqtt must be ip:port, got {mqtt:?}"))?;
    Ok((mqtt, http, token))
}

/// The source address of connection `i`: 200 connections each on 127.1.0.1, 127.1.0.2, …
/// (keeps every address far from the ephemeral port limit).
fn source_ip(i: u32) -> IpAddr {
    let n = i / 200;
    let last = (n % 254) as u8 + 1;
    let third = ((n / 254) % 256) as u8;
    let second = 1 + ((n / (254 * 256)) % 250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, second, third, last))
}

/// How clients prove who they are.
enum Auth {
    /// The same password for every benchmark user.
    Password(String),
    /// An HS256 JWT per user, signed with this secret.
    Jwt(jsonwebtoken::EncodingKey),
}

impl Auth {
    fn new(args: &ConnectArgs) -> Result<Auth> {
        Ok(match &args.jwt_secret {
            Some(secret) => Auth::Jwt(jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())),
            None => Auth::Password(args.password.clone()),
        })
    }

    fn password(&self, user: &str) -> Result<String> {
        match self {
            Auth::Password(p) => Ok(p.clone()),
            Auth::Jwt(key) => {
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 3600;
                let claims = serde_json::json!({"sub": user, "exp": exp});
                jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key)
                    .map_err(|e| anyhow!("cannot sign a JWT: {e}"))
            }
        }
    }
}

/// Connects every slot with at most `concurrency` handshakes at a time; returns the open
/// streams and how many failed.
async fn connect_all(
    mqtt: SocketAddr,
    slots: &[Slot],
    auth: &Arc<Auth>,
    concurrency: u32,
    subs: &[Vec<String>],
) -> (Vec<TcpStream>, u64) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1) as usize));
    let mut tasks = JoinSet::new();
    for (i, slot) in slots.iter().enumerate() {
        let (gate, auth, slot) = (gate.clone(), auth.clone(), slot.clone());
        let filters = subs.get(i).cloned().unwrap_or_default();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(mqtt, &slot, &auth, &filters))
                .await
            {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    eprintln!("{}: {e:#}", slot.client_id);
                    None
                }
                Err(_) => {
                    eprintln!("{}: no CONNACK within {HANDSHAKE_TIMEOUT:?}", slot.client_id);
                    None
                }
            }
        });
    }
    let mut held = Vec::with_capacity(slots.len());
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(stream)) => held.push(stream),
            _ => failed += 1,
        }
    }
    (held, failed)
}

async fn handshake(
    mqtt: SocketAddr,
    slot: &Slot,
    auth: &Auth,
    filters: &[String],
) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(slot.source, 0))
        .with_context(|| format!("bind {}", slot.source))?;
    let mut stream = socket.connect(mqtt).await.context("connect")?;
    stream.set_nodelay(true)?;
    let password = auth.password(&slot.user)?;
    stream
        .write_all(&connect_packet(&slot.client_id, &slot.user, &password))
        .await?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.context("CONNACK")?;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("CONNACK refused: {connack:02x?}");
    }
    for (i, filter) in filters.iter().enumerate() {
        stream.write_all(&subscribe_packet(i as u16 + 1, filter)).await?;
        let mut suback = [0u8; 5];
        stream.read_exact(&mut suback).await.context("SUBACK")?;
        if suback[0] != 0x90 || suback[4] >= 0x80 {
            bail!("SUBACK refused {filter}: {suback:02x?}");
        }
    }
    Ok(stream)
}

/// Subscribes every held connection to another user's presence (a rumqttd subscription).
async fn subscribe_presence(held: &mut [TcpStream], slots: &[Slot]) -> Result<()> {
    for (i, stream) in held.iter_mut().enumerate() {
        let other = &slots[(i + 1) % slots.len()].user;
        stream
            .write_all(&subscribe_packet(100, &format!("presence/{other}")))
            .await?;
        // SUBACK, then the retained presence state; read until the SUBACK is seen.
        let mut buf = [0u8; 512];
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
                .await
                .map_err(|_| anyhow!("no SUBACK for presence"))??;
            if n == 0 {
                bail!("connection closed during the presence subscription");
            }
            if buf[..n].windows(2).any(|w| w == [0x90, 0x03]) {
                break;
            }
        }
    }
    Ok(())
}

/// An MQTT 3.1.1 CONNECT with clean session, keep-alive 0, username and password.
pub fn connect_packet(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + client_id.len() + user.len() + password.len());
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0xC2); // username, password, clean session
    body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive: none
    put_str(&mut body, client_id);
    put_str(&mut body, user);
    put_str(&mut body, password);
    frame(0x10, body)
}

/// An MQTT 3.1.1 SUBSCRIBE of one filter at QoS 1.
pub fn subscribe_packet(pkid: u16, filter: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + filter.len());
    body.extend_from_slice(&pkid.to_be_bytes());
    put_str(&mut body, filter);
    body.push(1);
    frame(0x82, body)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn frame(header: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
    out
}

/// Waits for the server to finish what the last phase started (session teardown, allocator
/// trimming): until its RSS stops changing for a second, at most 15 s.
async fn settle(pid: Option<u32>) {
    let mut last = pid.and_then(|p| rss_kib(Some(p)).ok());
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = pid.and_then(|p| rss_kib(Some(p)).ok());
        if now == last {
            return;
        }
        last = now;
    }
}

/// VmRSS of the chatd process, KiB (0 without `--chatd-pid`).
fn rss_kib(pid: Option<u32>) -> Result<u64> {
    let Some(pid) = pid else {
        return Ok(0);
    };
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path:?}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in {path:?}"))
}

fn per_connection(before_kib: u64, after_kib: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (after_kib.saturating_sub(before_kib) as f64 * 1024.0) / n as f64
}

fn print(r: &ConnectReport, json: bool) {
    eprintln!("chatbench connect: {} connections as {} users", r.connections, r.users);
    eprintln!("  connected               {} ({} failed)", r.connected, r.failed);
    eprintln!("  warm-up (argon2)        {:.0} connects/s", r.warmup_per_sec);
    eprintln!("  accepted                {:.0} connects/s", r.accepted_per_sec);
    eprintln!(
        "  chatd RSS               {} KiB before, {} KiB held: {:.0} B per connection",
        r.rss_before_kib, r.rss_held_kib, r.bytes_per_connection
    );
    if let (Some(rss), Some(per)) = (r.rss_with_links_kib, r.link_bytes_per_connection) {
        eprintln!("  with rumqttd links      {rss} KiB: {per:.0} B more per connection");
    }
    if let Some(s) = r.reconnect_all_secs {
        eprintln!("  all reconnected in      {s:.2} s");
    }
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_well_formed() {
        let p = connect_packet("u:c1", "u", "pw");
        assert_eq!(p[0], 0x10);
        assert_eq!(p[1] as usize, p.len() - 2);
        assert_eq!(&p[2..8], b"\x00\x04MQTT");
        let s = subscribe_packet(1, "user/u/#");
        assert_eq!(s, b"\x82\x0d\x00\x01\x00\x08user/u/#\x01".to_vec());
        let long = frame(0x10, vec![0; 200]);
        assert_eq!(&long[..3], &[0x10, 0xC8, 0x01]);
    }

    #[test]
    fn sources_spread_over_loopback() {
        assert_eq!(source_ip(0), IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(source_ip(199), source_ip(0));
        assert_ne!(source_ip(200), source_ip(0));
        assert!(matches!(source_ip(5_000_000), IpAddr::V4(a) if a.is_loopback()));
    }
}
