//! Shared helpers for the end-to-end tests: a child `chatd` process on a temporary directory, a
//! tiny blocking HTTP client, and MQTT 3.1.1 / 5.0 client wrappers that buffer what they receive
//! so tests can wait for exactly the publish they care about.
//!
//! Every wait in here is bounded by a generous timeout ([`WAIT`]) and polls a condition; nothing
//! relies on a fixed sleep for a positive check.

#![allow(dead_code)]

/// Raw-socket MQTT helpers (hand-built packets), see `raw.rs`.
pub mod raw;

/// A real redis-server.
pub mod redis_server;

/// Several chatd nodes on one PostgreSQL database and one Redis, for the cluster tests.
pub mod cluster_kit;

/// A chatd with either media back end and an `s3s-fs` server, for the media tests.
pub mod media_kit;
/// A chatd whose `[push]` points at the fake FCM and APNs servers, for the push tests.
pub mod push_kit;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::v5::mqttbytes::v5 as m5;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Upper bound for every positive wait (a publish, a SUBACK, a server start, …). Generous on
/// purpose: the tests run in parallel on a small machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// How long a server gets to come up (write `listen.json`) or to exit after SIGTERM.
pub const SERVER_WAIT: Duration = Duration::from_secs(90);

/// Path of the `chatd` binary built by Cargo for these tests.
pub fn chatd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chatd"))
}

/// A unique id (valid as a user id, device id or cid) starting with `prefix`: unique across the
/// tests of one run and, in practice, across runs.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{:x}{:x}{n}",
        std::process::id() % 0xfff,
        nanos % 0xfffff
    )
}

/// An HS256 JWT for user `sub`, valid for an hour, signed with `secret`.
pub fn hs256_jwt(secret: &str, sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now + 3600, "iat": now}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a JWT")
}

/// A server started with `extra_toml`, with the given users (password `{user}-pw`).
pub fn server_with_users(users: &[&str], extra_toml: &str) -> Server {
    let s = Server::start_with(extra_toml);
    for u in users {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

/// An rpc request (a fresh `rid` is set) that must succeed; returns its result.
pub async fn rpc_ok(c: &mut Client, me: &str, mut req: Value) -> Value {
    req["rid"] = json!(unique("r"));
    let r = c.rpc(me, req.clone()).await;
    assert_eq!(r["ok"], true, "{req} -> {r}");
    r["result"].clone()
}

/// Creates group `name` of `me` with `members` (`me` must be subscribed to `user/{me}/rpc`);
/// its id.
pub async fn create_group(
    c: &mut Client,
    me: &str,
    name: &str,
    members: &[impl AsRef<str>],
) -> String {
    let members: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
    let r = rpc_ok(
        c,
        me,
        json!({"op": "group.create", "name": name, "members": members}),
    )
    .await;
    r["group"]
        .as_str()
        .unwrap_or_else(|| panic!("no group id: {r}"))
        .to_string()
}

/// Sends a group text from `me` and returns its id (the ack must say `sent`).
pub async fn group_sent_id(c: &mut Client, me: &str, group: &str, text: &str) -> String {
    let ack = c
        .send_json(
            me,
            &json!({"cid": unique("c"), "group": group, "type": "text", "text": text}),
        )
        .await;
    assert_eq!(ack["status"], "sent", "{ack}");
    ack["id"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A `chatd` child process serving a temporary directory. Killed (SIGKILL) when dropped.
pub struct Server {
    /// The temporary directory: `chatd.toml`, `chatd.log` and `data/` live here.
    pub dir: tempfile::TempDir,
    /// Address of the MQTT/TCP listener (from `listen.json`; `0.0.0.0:0` if disabled).
    pub mqtt: SocketAddr,
    /// Address of the MQTT/WebSocket listener (from `listen.json`; `0.0.0.0:0` if disabled).
    pub ws: SocketAddr,
    /// Address of the HTTP listener (from `listen.json`; `0.0.0.0:0` if disabled).
    pub http: SocketAddr,
    /// Address of the MQTT/TLS listener when enabled.
    pub mqtts: Option<SocketAddr>,
    /// Address of the WebSocket/TLS listener when enabled.
    pub wss: Option<SocketAddr>,
    /// The admin bearer token (from `[auth] admin_token` in the config, else `data/admin.token`).
    pub token: String,
    config: PathBuf,
    data: PathBuf,
    /// Extra environment variables of every run (test hooks such as `CHATD_TEST_FAULTS`).
    env: Vec<(String, PathBuf)>,
    child: Option<Child>,
}

/// The base test configuration: every listener on 127.0.0.1 with port 0, `storage.path` inside
/// `dir`, and `listen_extra` (extra `key = value` lines for the `[listen]` table, e.g.
/// `mqtts = "127.0.0.1:0"`) inserted in `[listen]`.
pub fn base_config(dir: &Path, listen_extra: &str) -> String {
    let data = dir.join("data");
    format!(
        "[listen]\nmqtt = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n{listen_extra}\n\n[storage]\npath = {}\n",
        toml_string(&data.to_string_lossy())
    )
}

/// Quotes `s` as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Server {
    /// Starts chatd with the default test configuration ([`base_config`] only).
    pub fn start() -> Server {
        Self::start_with("")
    }

    /// Starts chatd with [`base_config`] followed by `extra_toml` (whole sections such as
    /// `[auth]`, `[limits]`, `[node]`, `[tls]`, `[log]`). Panics (with the log) if it does not come up.
    pub fn start_with(extra_toml: &str) -> Server {
        Self::start_with_listen("", extra_toml)
    }

    /// Like [`Server::start_with`], on the storage engine named `engine` (`storage.engine`).
    pub fn start_on(engine: &str, extra_toml: &str) -> Server {
        let storage = format!("engine = {}\n", toml_string(engine));
        let extra = extra_toml.to_string();
        Self::try_start_custom(move |dir| {
            // `[storage]` ends the base configuration: the line belongs to it.
            format!("{}{storage}\n{extra}\n", base_config(dir, ""))
        })
        .unwrap_or_else(|e| panic!("chatd did not start: {e}"))
    }

    /// Like [`Server::start_with`], with extra lines for the `[listen]` table (e.g. TLS listeners:
    /// `mqtts = "127.0.0.1:0"` plus a `[tls]` section in `extra_toml`).
    pub fn start_with_listen(listen_extra: &str, extra_toml: &str) -> Server {
        let listen_extra = listen_extra.to_string();
        let extra = extra_toml.to_string();
        Self::try_start_custom(move |dir| {
            format!("{}\n{}\n", base_config(dir, &listen_extra), extra)
        })
        .unwrap_or_else(|e| panic!("chatd did not start: {e}"))
    }

    /// Starts chatd with a configuration built by `make_config` from the temporary directory.
    /// The configuration must put `storage.path` at `{dir}/data`. Returns the failure (exit
    /// status and log) instead of panicking when chatd exits or does not write `listen.json`.
    pub fn try_start_custom(make_config: impl FnOnce(&Path) -> String) -> Result<Server, String> {
        Self::try_start_custom_env(make_config, |_| Vec::new())
    }

    /// [`Server::try_start_custom`] with environment variables for every run of the server,
    /// built by `make_env` from the temporary directory (e.g. a test hook's control file).
    pub fn try_start_custom_env(
        make_config: impl FnOnce(&Path) -> String,
        make_env: impl FnOnce(&Path) -> Vec<(String, PathBuf)>,
    ) -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("chatd-test-")
            .tempdir()
            .expect("create temp dir");
        let config = dir.path().join("chatd.toml");
        let text = make_config(dir.path());
        fs::write(&config, text).expect("write config");
        let data = dir.path().join("data");
        let env = make_env(dir.path());
        let mut server = Server {
            mqtt: unspecified(),
            ws: unspecified(),
            http: unspecified(),
            mqtts: None,
            wss: None,
            token: String::new(),
            config,
            data,
            env,
            child: None,
            dir,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// Path of the configuration file the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.config.clone()
    }

    /// The server's `storage.path`.
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// The server's store, opened the way the server opens it: with the engine whose directory
    /// the data directory holds (the server must be stopped: a running one holds the store's
    /// lock).
    pub fn open_store(&self) -> std::sync::Arc<dyn chatd_kv::KvStore> {
        let chosen = chatd_kv::EngineConfig::for_data_dir(&self.data, chatd_kv::Engine::default())
            .expect("choose the store's engine");
        chatd_kv::open(&chosen.config).expect("open the store")
    }

    /// Whether the child process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Process id of the running child, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("chatd.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let listen = self.data.join("listen.json");
        // A stale file from a killed process must not be mistaken for the new one's.
        let _ = fs::remove_file(&listen);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open chatd.log");
        let log2 = log.try_clone().expect("clone log handle");
        let child = Command::new(chatd_bin())
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env_remove("CHATD_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", chatd_bin().display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + SERVER_WAIT;
        let parsed: Value = loop {
            if let Ok(text) = fs::read_to_string(&listen) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    break v;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "chatd exited ({status}) before writing listen.json; log:\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chatd wrote no listen.json within {SERVER_WAIT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let addr = |k: &str| -> Option<SocketAddr> {
            parsed.get(k).and_then(|v| v.as_str()).map(|s| {
                s.parse()
                    .unwrap_or_else(|e| panic!("listen.json {k}={s}: {e}"))
            })
        };
        self.mqtt = addr("mqtt").unwrap_or_else(unspecified);
        self.ws = addr("ws").unwrap_or_else(unspecified);
        self.http = addr("http").unwrap_or_else(unspecified);
        self.mqtts = addr("mqtts");
        self.wss = addr("wss");
        self.token = self.find_token();
        Ok(())
    }

    fn find_token(&self) -> String {
        let config = fs::read_to_string(&self.config).unwrap_or_default();
        for line in config.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("admin_token") {
                let rest = rest.trim_start();
                if let Some(value) = rest.strip_prefix('=') {
                    let value = value.trim().trim_matches('"');
                    if !value.is_empty() {
                        return value.to_string();
                    }
                }
            }
        }
        let path = self.data.join("admin.token");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(t) = fs::read_to_string(&path) {
                let t = t.trim();
                if !t.is_empty() {
                    return t.to_string();
                }
            }
            if Instant::now() > deadline {
                return String::new();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Creates a user through the admin API (`POST /admin/users`); panics unless the answer is 201.
    pub fn add_user(&self, user: &str, password: &str) {
        let body = json!({"user": user, "password": password}).to_string();
        let (status, text) = self.admin("POST", "/admin/users", Some(&body));
        assert_eq!(
            status, 201,
            "POST /admin/users {user}: expected 201, got {status} {text}"
        );
    }

    /// An admin API request with this server's bearer token: `(status, body)`.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_request(self.http, method, path, Some(&self.token), body)
    }

    /// Runs `chatd --config <config> <args…>` (the CLI) to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(chatd_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CHATD_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run chatd cli")
    }

    /// Sends `signal` (like `libc::SIGSTOP`) to the running server.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("server is not running");
        let pid = i32::try_from(pid).expect("pid");
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        let done = unsafe { libc::kill(pid, signal) };
        assert_eq!(done, 0, "kill({pid}, {signal})");
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (up to [`SERVER_WAIT`]) for the exit; returns the exit status.
    /// Panics (after a SIGKILL) if the server does not exit in time.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_stop("TERM")
    }

    /// Like [`Server::stop`] with SIGINT.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal_stop("INT")
    }

    fn signal_stop(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        let pid = child.id().to_string();
        let ok = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -s {signal} {pid} failed");
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chatd did not exit within {SERVER_WAIT:?} after SIG{signal}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the server again on the same directory and configuration (after [`Server::stop`] or
    /// [`Server::kill9`]), waits for the new `listen.json` and refreshes addresses and token.
    pub fn restart(&mut self) {
        if self.is_running() {
            panic!("restart() while chatd is still running");
        }
        self.child = None;
        if let Err(e) = self.spawn_and_wait() {
            panic!("chatd did not restart: {e}");
        }
    }

    /// The value of counter or gauge `name` on `/metrics` (None when it is not there).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (status, text) = http_get(self.http, "/metrics");
        assert_eq!(status, 200, "/metrics: {text}");
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// Resident memory of the server process in KiB (`VmRSS` of `/proc/{pid}/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Everything the server (all its runs) wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// `GET path` on `addr`: `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None, None)
}

/// A blocking HTTP/1.1 request (`Connection: close`) with an optional bearer token and an
/// optional JSON body: `(status, body)`. Panics on I/O errors or an unparsable response.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|e| panic!("connect to http {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str("Content-Type: application/json\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("write http request to {addr}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read http response from {addr}: {e}"));
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> (u16, String) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..pos]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            rest = &rest[pos + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = out;
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// MQTT: shared buffering core
// ---------------------------------------------------------------------------------------------

trait Proto: Send + 'static {
    type Publish: Clone + Debug + Send + 'static;
    type SubCode: Clone + Debug + Send + 'static;
    type PubAckReason: Clone + Debug + Send + 'static;
    type Disconnect: Clone + Debug + Send + 'static;
    fn topic(p: &Self::Publish) -> String;
    fn payload(p: &Self::Publish) -> &[u8];
}

enum Ev<P: Proto> {
    Publish(P::Publish),
    SubAck(Vec<P::SubCode>),
    PubAck(u16, P::PubAckReason),
    OutPublish(u16),
    OutDisconnect,
    Closed(String, Option<P::Disconnect>),
}

struct Core<P: Proto> {
    rx: UnboundedReceiver<Ev<P>>,
    publishes: VecDeque<P::Publish>,
    subacks: VecDeque<Vec<P::SubCode>>,
    seq: u64,
    out_publishes: Vec<(u64, u16)>,
    pubacks: Vec<(u64, u16, P::PubAckReason)>,
    publishes_requested: usize,
    sent_disconnect: bool,
    closed: Option<(String, Option<P::Disconnect>)>,
}

impl<P: Proto> Core<P> {
    fn new(rx: UnboundedReceiver<Ev<P>>) -> Self {
        Core {
            rx,
            publishes: VecDeque::new(),
            subacks: VecDeque::new(),
            seq: 0,
            out_publishes: Vec::new(),
            pubacks: Vec::new(),
            publishes_requested: 0,
            sent_disconnect: false,
            closed: None,
        }
    }

    fn absorb(&mut self, ev: Ev<P>) {
        self.seq += 1;
        match ev {
            Ev::Publish(p) => self.publishes.push_back(p),
            Ev::SubAck(codes) => self.subacks.push_back(codes),
            Ev::PubAck(pkid, reason) => self.pubacks.push((self.seq, pkid, reason)),
            Ev::OutPublish(pkid) => self.out_publishes.push((self.seq, pkid)),
            Ev::OutDisconnect => self.sent_disconnect = true,
            Ev::Closed(why, disc) => self.closed = Some((why, disc)),
        }
    }

    /// Takes every event already queued without waiting.
    fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.absorb(ev);
        }
    }

    /// Waits for one more event until `deadline`; false on timeout or when no more can come.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> bool {
        if self.closed.is_some() {
            self.drain();
            return false;
        }
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(ev)) => {
                self.absorb(ev);
                true
            }
            Ok(None) => {
                if self.closed.is_none() {
                    self.closed = Some(("event loop task ended".into(), None));
                }
                false
            }
            Err(_) => false,
        }
    }

    fn describe(&self) -> String {
        let topics: Vec<String> = self.publishes.iter().map(|p| P::topic(p)).collect();
        let state = match &self.closed {
            Some((why, disc)) => format!("closed ({why}; disconnect {disc:?})"),
            None => "open".to_string(),
        };
        format!("connection {state}; buffered publishes on {topics:?}")
    }

    async fn next_where(
        &mut self,
        topic: &str,
        pred: &(dyn Fn(&[u8]) -> bool + Sync),
        wait: Duration,
    ) -> Result<P::Publish, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.drain();
            if let Some(i) = self
                .publishes
                .iter()
                .position(|p| P::topic(p) == topic && pred(P::payload(p)))
            {
                return Ok(self.publishes.remove(i).unwrap());
            }
            if !self.pump(deadline).await && self.closed.is_some() {
                // Closed: nothing more will come, but the drain above may have queued the match.
                self.drain();
                if let Some(i) = self
                    .publishes
                    .iter()
                    .position(|p| P::topic(p) == topic && pred(P::payload(p)))
                {
                    return Ok(self.publishes.remove(i).unwrap());
                }
                return Err(self.describe());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.describe());
            }
        }
    }

    async fn nothing_on(&mut self, topic: &str, wait: Duration) -> Result<(), P::Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.drain();
            if let Some(i) = self.publishes.iter().position(|p| P::topic(p) == topic) {
                return Err(self.publishes.remove(i).unwrap());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            if !self.pump(deadline).await && self.closed.is_some() {
                // Nothing more can arrive; wait out the rest so callers keep their timing.
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    async fn suback(&mut self) -> Result<Vec<P::SubCode>, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(codes) = self.subacks.pop_front() {
                return Ok(codes);
            }
            if !self.pump(deadline).await {
                return Err(format!("no SUBACK: {}", self.describe()));
            }
        }
    }

    /// The PUBACK of the `index`-th publish requested through the helpers (0-based).
    async fn puback_of(&mut self, index: usize) -> Result<P::PubAckReason, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.drain();
            if let Some(&(seq, pkid)) = self.out_publishes.get(index) {
                if let Some((_, _, reason)) = self
                    .pubacks
                    .iter()
                    .find(|(s, id, _)| *s > seq && *id == pkid)
                {
                    return Ok(reason.clone());
                }
            }
            if !self.pump(deadline).await {
                return Err(format!("no PUBACK: {}", self.describe()));
            }
        }
    }

    async fn wait_closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while self.closed.is_none() {
            if !self.pump(deadline).await && self.closed.is_none() {
                return false;
            }
        }
        true
    }

    async fn wait_disconnect_sent(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.sent_disconnect && self.closed.is_none() {
            if !self.pump(deadline).await {
                return;
            }
        }
    }
}

fn json_of(topic: &str, payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap_or_else(|e| {
        panic!(
            "publish on {topic} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(payload)
        )
    })
}

fn field_is(payload: &[u8], field: &str, want: &Value) -> bool {
    serde_json::from_slice::<Value>(payload)
        .map(|v| v.get(field) == Some(want))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1
// ---------------------------------------------------------------------------------------------

struct V4;

impl Proto for V4 {
    type Publish = rumqttc::Publish;
    type SubCode = rumqttc::SubscribeReasonCode;
    type PubAckReason = ();
    type Disconnect = ();
    fn topic(p: &rumqttc::Publish) -> String {
        p.topic.clone()
    }
    fn payload(p: &rumqttc::Publish) -> &[u8] {
        &p.payload
    }
}

/// An MQTT 3.1.1 connection (rumqttc) whose event loop runs in a spawned task; everything it
/// receives is buffered so tests can wait for a given topic. The event loop never reconnects:
/// once the connection fails, the client stays closed. Dropping it drops the socket without a
/// DISCONNECT (like a device losing its network).
pub struct Client {
    /// The rumqttc handle, for anything the helpers do not cover. Publishing through it directly
    /// breaks the PUBACK bookkeeping of [`Client::publish_wait`].
    pub inner: rumqttc::AsyncClient,
    /// The CONNACK the server answered with.
    pub connack: rumqttc::ConnAck,
    core: Mutex<Core<V4>>,
    task: JoinHandle<()>,
}

/// The default 3.1.1 options of these tests: keep-alive 30 s, the given client id and credentials,
/// clean session, large packet limits.
pub fn options(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, password);
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    o
}

/// Connects with [`options`]; panics unless the CONNACK is a success.
pub async fn connect(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> Client {
    match connect_opts(options(addr, client_id, user, password)).await {
        Ok(c) => c,
        Err(e) => panic!("connect {client_id} as {user} to {addr}: {e}"),
    }
}

/// Connects with [`options`]; `Err(code)` when the server refuses with a CONNACK. Panics when
/// the connection fails without a CONNACK (use [`connect_opts`] to observe that).
pub async fn try_connect(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<Client, rumqttc::ConnectReturnCode> {
    match connect_raw(options(addr, client_id, user, password)).await {
        Ok(c) => Ok(c),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Err(code),
        Err(e) => panic!("connect {client_id} as {user}: failed without a CONNACK: {e:?}"),
    }
}

/// Connects with the given options (clean session, manual acks, wills, keep-alive, transport…);
/// `Err` describes a refusal (`ConnectionRefused(code)`) or any other failure.
pub async fn connect_opts(opts: rumqttc::MqttOptions) -> Result<Client, String> {
    connect_raw(opts).await.map_err(|e| format!("{e:?}"))
}

/// Like [`connect_opts`] with the rumqttc error itself.
pub async fn connect_raw(opts: rumqttc::MqttOptions) -> Result<Client, rumqttc::ConnectionError> {
    let (inner, mut el) = rumqttc::AsyncClient::new(opts, 100_000);
    let mut net = el.network_options();
    net.set_connection_timeout(WAIT.as_secs());
    el.set_network_options(net);
    let connack = match el.poll().await? {
        rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => ack,
        other => panic!("first event is not a CONNACK: {other:?}"),
    };
    let (tx, rx) = unbounded_channel();
    let task = tokio::spawn(run_v4(el, tx));
    Ok(Client {
        inner,
        connack,
        core: Mutex::new(Core::new(rx)),
        task,
    })
}

async fn run_v4(mut el: rumqttc::EventLoop, tx: UnboundedSender<Ev<V4>>) {
    use rumqttc::{Event, Outgoing, Packet};
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Ev::Publish(p),
            Ok(Event::Incoming(Packet::SubAck(s))) => Ev::SubAck(s.return_codes),
            Ok(Event::Incoming(Packet::PubAck(a))) => Ev::PubAck(a.pkid, ()),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ev::OutPublish(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::OutDisconnect,
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Ev::Closed(format!("{e:?}"), None));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

impl Client {
    /// Subscribes to one filter and waits for the SUBACK; returns its return codes.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.try_subscribe(filter, qos)
            .await
            .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"))
    }

    /// [`Client::subscribe`] for a test in which the server may be killed meanwhile: why there
    /// was no SUBACK instead of a panic.
    pub async fn try_subscribe(
        &self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Result<Vec<rumqttc::SubscribeReasonCode>, String> {
        self.inner
            .subscribe(filter, qos)
            .await
            .map_err(|e| e.to_string())?;
        let mut core = self.core.lock().await;
        core.suback().await.map_err(|e| e.to_string())
    }

    /// Subscribes to several filters in one SUBSCRIBE and waits for the SUBACK.
    pub async fn subscribe_many(
        &self,
        filters: &[(&str, rumqttc::QoS)],
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        let list: Vec<rumqttc::SubscribeFilter> = filters
            .iter()
            .map(|(f, q)| rumqttc::SubscribeFilter::new(f.to_string(), *q))
            .collect();
        self.inner
            .subscribe_many(list)
            .await
            .unwrap_or_else(|e| panic!("subscribe {filters:?}: {e}"));
        let mut core = self.core.lock().await;
        core.suback()
            .await
            .unwrap_or_else(|e| panic!("subscribe {filters:?}: {e}"))
    }

    /// Publishes `v` as JSON at QoS 1 (does not wait for the PUBACK).
    pub async fn publish_json(&self, topic: &str, v: &Value) {
        self.publish_bytes(topic, rumqttc::QoS::AtLeastOnce, v.to_string().into_bytes())
            .await;
    }

    /// Publishes raw bytes with the given QoS (does not wait for the PUBACK).
    pub async fn publish_bytes(&self, topic: &str, qos: rumqttc::QoS, payload: Vec<u8>) {
        let mut core = self.core.lock().await;
        core.publishes_requested += 1;
        drop(core);
        self.inner
            .publish(topic, qos, false, payload)
            .await
            .unwrap_or_else(|e| panic!("publish on {topic}: {e}"));
    }

    /// Publishes at QoS 1 and waits for its PUBACK; `Err` (with a description) when the
    /// connection closes first or no PUBACK comes within [`WAIT`].
    pub async fn publish_wait(&self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        let mut core = self.core.lock().await;
        let index = core.publishes_requested;
        core.publishes_requested += 1;
        self.inner
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        core.puback_of(index).await.map(|_| ())
    }

    /// The next publish on exactly `topic` (buffered ones first), as JSON; panics after [`WAIT`].
    pub async fn next_on(&mut self, topic: &str) -> Value {
        let p = self.next_publish(topic).await;
        json_of(topic, &p.payload)
    }

    /// The next publish on `topic`, raw (for manual acks, QoS / retain / dup checks).
    pub async fn next_publish(&mut self, topic: &str) -> rumqttc::Publish {
        self.next_publish_within(topic, WAIT)
            .await
            .unwrap_or_else(|e| panic!("no publish on {topic} within {WAIT:?}: {e}"))
    }

    /// The next publish on `topic` within `wait`, or `Err` describing the client state.
    pub async fn next_publish_within(
        &mut self,
        topic: &str,
        wait: Duration,
    ) -> Result<rumqttc::Publish, String> {
        self.core
            .lock()
            .await
            .next_where(topic, &|_| true, wait)
            .await
    }

    /// The next publish on `topic` whose JSON payload has `field == value` (others stay buffered).
    pub async fn next_where(&mut self, topic: &str, field: &str, value: &Value) -> Value {
        let p = self
            .core
            .lock()
            .await
            .next_where(topic, &|b| field_is(b, field, value), WAIT)
            .await
            .unwrap_or_else(|e| {
                panic!("no publish on {topic} with {field}={value} within {WAIT:?}: {e}")
            });
        json_of(topic, &p.payload)
    }

    /// Asserts that no publish arrives on `topic` within `wait` (negative checks only).
    pub async fn nothing_on(&mut self, topic: &str, wait: Duration) {
        if let Err(p) = self.core.lock().await.nothing_on(topic, wait).await {
            panic!(
                "unexpected publish on {topic}: {}",
                String::from_utf8_lossy(&p.payload)
            );
        }
    }

    /// The next publish on `topic` whose JSON payload has `field == value`, within `wait`;
    /// `Err` describes the client's state (closed, or nothing came).
    pub async fn next_where_within(
        &mut self,
        topic: &str,
        field: &str,
        value: &Value,
        wait: Duration,
    ) -> Result<Value, String> {
        let p = self
            .core
            .lock()
            .await
            .next_where(topic, &|b| field_is(b, field, value), wait)
            .await?;
        Ok(json_of(topic, &p.payload))
    }

    /// Publishes a text message on `chat/{me}/send` and returns the ack with that cid from
    /// `user/{me}/ack` (the caller must be subscribed to it).
    pub async fn send(&mut self, me: &str, to: &str, cid: &str, text: &str) -> Value {
        let msg = json!({"cid": cid, "to": to, "type": "text", "text": text});
        self.send_json(me, &msg).await
    }

    /// Publishes any payload on `chat/{me}/send` and returns the ack with the same `cid` (or the
    /// next ack at all when the payload has no string `cid`).
    pub async fn send_json(&mut self, me: &str, msg: &Value) -> Value {
        self.publish_json(&format!("chat/{me}/send"), msg).await;
        let topic = format!("user/{me}/ack");
        match msg.get("cid") {
            Some(cid @ Value::String(_)) => self.next_where(&topic, "cid", cid).await,
            _ => self.next_on(&topic).await,
        }
    }

    /// Publishes a request on `chat/{me}/rpc` and returns the reply with the same `rid` from
    /// `user/{me}/rpc` (the caller must be subscribed to it).
    pub async fn rpc(&mut self, me: &str, req: Value) -> Value {
        self.publish_json(&format!("chat/{me}/rpc"), &req).await;
        let topic = format!("user/{me}/rpc");
        match req.get("rid") {
            Some(rid) => self.next_where(&topic, "rid", rid).await,
            None => self.next_on(&topic).await,
        }
    }

    /// Sends DISCONNECT, waits for it to be written, then drops the connection.
    pub async fn disconnect(self) {
        let _ = self.inner.disconnect().await;
        self.core
            .lock()
            .await
            .wait_disconnect_sent(Duration::from_secs(10))
            .await;
        // Give the server the chance to close its side first; bounded, not required.
        self.core
            .lock()
            .await
            .wait_closed(Duration::from_secs(5))
            .await;
    }

    /// Waits up to [`WAIT`] for the connection to close or fail; true if it did.
    pub async fn closed(&mut self) -> bool {
        self.core.lock().await.wait_closed(WAIT).await
    }

    /// Waits up to `wait` for the connection to close or fail; true if it did.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        self.core.lock().await.wait_closed(wait).await
    }

    /// Why the connection closed (rumqttc's error), if it did.
    pub async fn close_reason(&self) -> Option<String> {
        let mut core = self.core.lock().await;
        core.drain();
        core.closed.as_ref().map(|(why, _)| why.clone())
    }

    /// Acknowledges a publish (for clients created with manual acks).
    pub fn ack_manually(&self, publish: &rumqttc::Publish) {
        self.inner
            .try_ack(publish)
            .unwrap_or_else(|e| panic!("ack {publish:?}: {e}"));
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT 5.0
// ---------------------------------------------------------------------------------------------

struct V5;

impl Proto for V5 {
    type Publish = m5::Publish;
    type SubCode = m5::SubscribeReasonCode;
    type PubAckReason = m5::PubAckReason;
    type Disconnect = m5::DisconnectReasonCode;
    fn topic(p: &m5::Publish) -> String {
        String::from_utf8_lossy(&p.topic).into_owned()
    }
    fn payload(p: &m5::Publish) -> &[u8] {
        &p.payload
    }
}

/// The MQTT 5.0 counterpart of [`Client`].
pub struct Client5 {
    /// The rumqttc v5 handle. Publishing through it directly breaks the PUBACK bookkeeping of
    /// [`Client5::publish_result`].
    pub inner: rumqttc::v5::AsyncClient,
    /// The CONNACK the server answered with (with its properties).
    pub connack: m5::ConnAck,
    core: Mutex<Core<V5>>,
    task: JoinHandle<()>,
}

/// The default 5.0 options of these tests: keep-alive 30 s, the given client id and credentials,
/// clean start, large incoming packet limit, 30 s connection timeout.
pub fn options5(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, password);
    o.set_max_packet_size(Some(16 * 1024 * 1024));
    o.set_connection_timeout(WAIT.as_secs());
    o
}

/// Connects with [`options5`]; panics unless the CONNACK is a success.
pub async fn connect5(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> Client5 {
    match connect5_opts(options5(addr, client_id, user, password)).await {
        Ok(c) => c,
        Err(e) => panic!("connect (v5) {client_id} as {user} to {addr}: {e}"),
    }
}

/// Connects with [`options5`]; `Err(reason)` when the server refuses with a CONNACK. Panics when
/// the connection fails without a CONNACK (use [`connect5_opts`] to observe that).
pub async fn try_connect5(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<Client5, m5::ConnectReturnCode> {
    match connect5_raw(options5(addr, client_id, user, password)).await {
        Ok(c) => Ok(c),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(code),
        Err(e) => panic!("connect (v5) {client_id} as {user}: failed without a CONNACK: {e:?}"),
    }
}

/// Connects with the given v5 options; `Err` describes a refusal or any other failure.
pub async fn connect5_opts(opts: rumqttc::v5::MqttOptions) -> Result<Client5, String> {
    connect5_raw(opts).await.map_err(|e| format!("{e:?}"))
}

/// Like [`connect5_opts`] with the rumqttc error itself.
pub async fn connect5_raw(
    opts: rumqttc::v5::MqttOptions,
) -> Result<Client5, rumqttc::v5::ConnectionError> {
    let (inner, mut el) = rumqttc::v5::AsyncClient::new(opts, 100_000);
    let connack = match el.poll().await? {
        rumqttc::v5::Event::Incoming(m5::Packet::ConnAck(ack)) => ack,
        other => panic!("first event is not a CONNACK: {other:?}"),
    };
    let (tx, rx) = unbounded_channel();
    let task = tokio::spawn(run_v5(el, tx));
    Ok(Client5 {
        inner,
        connack,
        core: Mutex::new(Core::new(rx)),
        task,
    })
}

async fn run_v5(mut el: rumqttc::v5::EventLoop, tx: UnboundedSender<Ev<V5>>) {
    use rumqttc::v5::{ConnectionError, Event, StateError};
    use rumqttc::Outgoing;
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(m5::Packet::Publish(p))) => Ev::Publish(p),
            Ok(Event::Incoming(m5::Packet::SubAck(s))) => Ev::SubAck(s.return_codes),
            Ok(Event::Incoming(m5::Packet::PubAck(a))) => Ev::PubAck(a.pkid, a.reason),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ev::OutPublish(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::OutDisconnect,
            Ok(_) => continue,
            Err(e) => {
                let disc = match &e {
                    ConnectionError::MqttState(StateError::ServerDisconnect {
                        reason_code,
                        ..
                    }) => Some(*reason_code),
                    _ => None,
                };
                let _ = tx.send(Ev::Closed(format!("{e:?}"), disc));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

impl Client5 {
    /// Subscribes to one filter and waits for the SUBACK; returns its reason codes.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> Vec<m5::SubscribeReasonCode> {
        self.try_subscribe(filter, qos)
            .await
            .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"))
    }

    /// [`Client5::subscribe`] for a test in which the server may be killed meanwhile: why
    /// there was no SUBACK instead of a panic.
    pub async fn try_subscribe(
        &self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> Result<Vec<m5::SubscribeReasonCode>, String> {
        self.inner
            .subscribe(filter, qos)
            .await
            .map_err(|e| e.to_string())?;
        let mut core = self.core.lock().await;
        core.suback().await.map_err(|e| e.to_string())
    }

    /// Subscribes to several filters in one SUBSCRIBE and waits for the SUBACK.
    pub async fn subscribe_many(
        &self,
        filters: &[(&str, rumqttc::v5::mqttbytes::QoS)],
    ) -> Vec<m5::SubscribeReasonCode> {
        let list: Vec<m5::Filter> = filters
            .iter()
            .map(|(f, q)| m5::Filter::new(f.to_string(), *q))
            .collect();
        self.inner
            .subscribe_many(list)
            .await
            .unwrap_or_else(|e| panic!("subscribe {filters:?}: {e}"));
        let mut core = self.core.lock().await;
        core.suback()
            .await
            .unwrap_or_else(|e| panic!("subscribe {filters:?}: {e}"))
    }

    /// Publishes `v` as JSON at QoS 1 (does not wait for the PUBACK).
    pub async fn publish_json(&self, topic: &str, v: &Value) {
        self.publish_bytes(
            topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            v.to_string().into_bytes(),
        )
        .await;
    }

    /// Publishes raw bytes with the given QoS (does not wait for the PUBACK).
    pub async fn publish_bytes(
        &self,
        topic: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
        payload: Vec<u8>,
    ) {
        let mut core = self.core.lock().await;
        core.publishes_requested += 1;
        drop(core);
        self.inner
            .publish(topic, qos, false, payload)
            .await
            .unwrap_or_else(|e| panic!("publish on {topic}: {e}"));
    }

    /// Publishes at QoS 1 and returns the reason code of its PUBACK; panics when the connection
    /// closes first or no PUBACK arrives within [`WAIT`].
    pub async fn publish_result(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> m5::PubAckReason {
        self.try_publish_result(topic, payload.into())
            .await
            .unwrap_or_else(|e| panic!("publish on {topic}: {e}"))
    }

    /// Like [`Client5::publish_result`], with `Err` instead of a panic.
    pub async fn try_publish_result(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<m5::PubAckReason, String> {
        let mut core = self.core.lock().await;
        let index = core.publishes_requested;
        core.publishes_requested += 1;
        self.inner
            .publish(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .map_err(|e| e.to_string())?;
        core.puback_of(index).await
    }

    /// The next publish on exactly `topic` (buffered ones first), as JSON; panics after [`WAIT`].
    pub async fn next_on(&mut self, topic: &str) -> Value {
        let p = self.next_publish(topic).await;
        json_of(topic, &p.payload)
    }

    /// The next publish on `topic`, raw.
    pub async fn next_publish(&mut self, topic: &str) -> m5::Publish {
        self.next_publish_within(topic, WAIT)
            .await
            .unwrap_or_else(|e| panic!("no publish on {topic} within {WAIT:?}: {e}"))
    }

    /// The next publish on `topic` within `wait`, or `Err` describing the client state.
    pub async fn next_publish_within(
        &mut self,
        topic: &str,
        wait: Duration,
    ) -> Result<m5::Publish, String> {
        self.core
            .lock()
            .await
            .next_where(topic, &|_| true, wait)
            .await
    }

    /// The next publish on `topic` whose JSON payload has `field == value` (others stay buffered).
    pub async fn next_where(&mut self, topic: &str, field: &str, value: &Value) -> Value {
        let p = self
            .core
            .lock()
            .await
            .next_where(topic, &|b| field_is(b, field, value), WAIT)
            .await
            .unwrap_or_else(|e| {
                panic!("no publish on {topic} with {field}={value} within {WAIT:?}: {e}")
            });
        json_of(topic, &p.payload)
    }

    /// Asserts that no publish arrives on `topic` within `wait` (negative checks only).
    pub async fn nothing_on(&mut self, topic: &str, wait: Duration) {
        if let Err(p) = self.core.lock().await.nothing_on(topic, wait).await {
            panic!(
                "unexpected publish on {topic}: {}",
                String::from_utf8_lossy(&p.payload)
            );
        }
    }

    /// Publishes a text message on `chat/{me}/send` and returns the ack with that cid.
    pub async fn send(&mut self, me: &str, to: &str, cid: &str, text: &str) -> Value {
        let msg = json!({"cid": cid, "to": to, "type": "text", "text": text});
        self.send_json(me, &msg).await
    }

    /// Publishes any payload on `chat/{me}/send` and returns the ack with the same `cid` (or the
    /// next ack at all when the payload has no string `cid`).
    pub async fn send_json(&mut self, me: &str, msg: &Value) -> Value {
        self.publish_json(&format!("chat/{me}/send"), msg).await;
        let topic = format!("user/{me}/ack");
        match msg.get("cid") {
            Some(cid @ Value::String(_)) => self.next_where(&topic, "cid", cid).await,
            _ => self.next_on(&topic).await,
        }
    }

    /// Publishes a request on `chat/{me}/rpc` and returns the reply with the same `rid`.
    pub async fn rpc(&mut self, me: &str, req: Value) -> Value {
        self.publish_json(&format!("chat/{me}/rpc"), &req).await;
        let topic = format!("user/{me}/rpc");
        match req.get("rid") {
            Some(rid) => self.next_where(&topic, "rid", rid).await,
            None => self.next_on(&topic).await,
        }
    }

    /// Sends DISCONNECT, waits for it to be written, then drops the connection.
    pub async fn disconnect(self) {
        let _ = self.inner.disconnect().await;
        self.core
            .lock()
            .await
            .wait_disconnect_sent(Duration::from_secs(10))
            .await;
        self.core
            .lock()
            .await
            .wait_closed(Duration::from_secs(5))
            .await;
    }

    /// Waits up to [`WAIT`] for the connection to close or fail; true if it did.
    pub async fn closed(&mut self) -> bool {
        self.core.lock().await.wait_closed(WAIT).await
    }

    /// Waits up to `wait` for the connection to close or fail; true if it did.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        self.core.lock().await.wait_closed(wait).await
    }

    /// Why the connection closed (rumqttc's error), if it did.
    pub async fn close_reason(&self) -> Option<String> {
        let mut core = self.core.lock().await;
        core.drain();
        core.closed.as_ref().map(|(why, _)| why.clone())
    }

    /// The reason code of the server's DISCONNECT, if the connection ended with one.
    pub async fn disconnect_reason(&self) -> Option<m5::DisconnectReasonCode> {
        let mut core = self.core.lock().await;
        core.drain();
        core.closed.as_ref().and_then(|(_, d)| *d)
    }

    /// Acknowledges a publish (for clients created with manual acks).
    pub fn ack_manually(&self, publish: &m5::Publish) {
        self.inner
            .try_ack(publish)
            .unwrap_or_else(|e| panic!("ack {publish:?}: {e}"));
    }
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects `client_id` as `user` (password `{user}-pw`, the tests' convention) and subscribes
/// to `user/{user}/#` at QoS 1.
pub async fn online(s: &Server, client_id: &str, user: &str) -> Client {
    let c = connect(s.mqtt, client_id, user, &format!("{user}-pw")).await;
    let codes = c
        .subscribe(&format!("user/{user}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        codes,
        vec![rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    c
}

/// Wall-clock milliseconds since the epoch, to compare with the server's timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The server is alive and a fresh pair of users can still exchange a message.
pub async fn still_serves(srv: &mut Server) {
    assert!(
        srv.is_running(),
        "chatd is not running any more; log:\n{}",
        srv.log()
    );
    let (a, b) = (unique("ok-a"), unique("ok-b"));
    srv.add_user(&a, "pw-a");
    srv.add_user(&b, "pw-b");
    let mut ca = connect(srv.mqtt, &a, &a, "pw-a").await;
    let mut cb = connect5(srv.mqtt, &b, &b, "pw-b").await;
    ca.subscribe(&format!("user/{a}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    cb.subscribe(
        &format!("user/{b}/#"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    )
    .await;
    let cid = unique("c");
    let ack = ca.send(&a, &b, &cid, "still here").await;
    assert_eq!(
        ack["status"], "sent",
        "ack after bad or hostile input: {ack}"
    );
    let msg = cb.next_on(&format!("user/{b}/inbox")).await;
    assert_eq!(msg["text"], "still here");
    assert_eq!(msg["from"], a.as_str());
    assert!(srv.is_running(), "chatd died; log:\n{}", srv.log());
}
