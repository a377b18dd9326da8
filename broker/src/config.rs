//! The one TOML file an operator writes. Every section has defaults, so no file at all serves a
//! single node with its data in `./data`; unknown keys and bad values stop the server at start
//! with a message that names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chatd_kv::{Engine, EngineConfig};
use chatd_media::{Limits, MediaKind, TypeLimit, MAX_URL_TTL_SECS};
use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (toml names the key).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// A value of the right type that is still unusable.
    #[error("config key `{key}`: {why}")]
    Invalid {
        /// Dotted key path, e.g. `listen.mqtt`.
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's identity.
    pub node: NodeConfig,
    /// Listener addresses.
    pub listen: ListenConfig,
    /// Certificate and key for the TLS listeners.
    pub tls: Option<TlsConfig>,
    /// Where data lives.
    pub storage: StorageConfig,
    /// Credentials accepted at CONNECT and for the admin API.
    pub auth: AuthConfig,
    /// Protective limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The connection cache in Redis (in-process without a URL).
    pub redis: RedisConfig,
    /// Push notifications (FCM, APNs); absent: off, and no push jobs are written.
    pub push: Option<PushConfig>,
    /// Media uploads and downloads: back end, URL lifetime, limits per type.
    pub media: MediaConfig,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Part of every message id; distinct per node so ids are unique across a deployment.
    pub id: u16,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { id: 1 }
    }
}

/// `[listen]`: an empty string turns a listener off; port 0 picks a free port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// MQTT over TCP.
    pub mqtt: String,
    /// MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`).
    pub ws: String,
    /// HTTP: health, metrics, admin API.
    pub http: String,
    /// MQTT over TLS (off unless set).
    pub mqtts: String,
    /// MQTT over WebSocket over TLS (off unless set).
    pub wss: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            mqtt: "0.0.0.0:1883".into(),
            ws: "0.0.0.0:8083".into(),
            http: "0.0.0.0:8080".into(),
            mqtts: String::new(),
            wss: String::new(),
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory: the store, the admin token and `listen.json`.
    pub path: PathBuf,
    /// The store's engine by name (`sled`, the only one so far).
    pub engine: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./data"),
            engine: Engine::default().name().to_string(),
        }
    }
}

impl StorageConfig {
    /// The engine and its directory in the data directory (`{path}/store` for sled).
    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let engine = self
            .engine
            .parse::<Engine>()
            .map_err(|e| ConfigError::Invalid {
                key: "storage.engine",
                why: e.to_string(),
            })?;
        Ok(EngineConfig::in_data_dir(&self.path, engine))
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Secret for HS256 JWTs used as MQTT passwords.
    pub jwt_hs256_secret: Option<String>,
    /// PEM public key for RS256 JWTs used as MQTT passwords.
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    /// Bearer token for the admin API; generated into the data directory when absent.
    pub admin_token: Option<String>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections held at once; more are refused (CONNACK "server unavailable").
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// Seconds a new socket has to send its CONNECT.
    pub connect_timeout_secs: u64,
    /// QoS 1 messages in flight from the server to one session.
    pub max_inflight: u16,
    /// Largest message text, in bytes.
    pub max_text_bytes: usize,
    /// Typing indicators per second per user (also the burst); more are refused.
    pub typing_per_sec: u32,
    /// Most members of one group, the creator included; adding more is refused `too_large`.
    pub max_group_members: usize,
    /// Group recipients queued per store batch; the rest of a big group follows in later
    /// batches, so 1:1 messages never wait for a whole group.
    pub fanout_slice: usize,
    /// Most groups one user may belong to at once; creating or adding with a user already in
    /// this many is refused `too_large`.
    pub max_groups_per_user: usize,
    /// Groups one user may create per hour (also the burst); more are refused `rate_limited`
    /// (0: no limit).
    pub groups_created_per_hour: u32,
    /// Failed logins (password or JWT) per user within `login_failure_window_secs`; past it the
    /// user's CONNECTs are refused without checking the password (0: no per-user limit).
    pub login_failures_per_user: u32,
    /// Failed logins per source address (IPv4 address, IPv6 /64) within the window; past it
    /// that address's CONNECTs are refused without checking the password (0: no limit).
    pub login_failures_per_ip: u32,
    /// The window over which the login failure budgets refill, in seconds.
    pub login_failure_window_secs: u64,
    /// Sockets one source address may hold open before their CONNECT is answered; more are
    /// closed at once (0: no limit).
    pub max_handshakes_per_ip: usize,
    /// Seconds a session's writes may make no progress (the client reads nothing) before the
    /// connection is closed; what it had not acknowledged stays queued.
    pub write_timeout_secs: u64,
    /// Bytes one session may hold for its client: deliveries waiting in its mailbox plus QoS 1
    /// PUBLISHes written and not yet acknowledged. Past it the session takes no more deliveries
    /// (queued ones are re-read from the store when there is room).
    pub max_session_buffer_bytes: usize,
    /// Seconds a QoS 1 PUBLISH may go unacknowledged before the session is closed; what it
    /// had not acknowledged stays queued. Sessions with nothing in flight are never closed
    /// by it.
    pub ack_timeout_secs: u64,
    /// Filters one SUBSCRIBE may add; the rest of that packet's filters are refused (SUBACK
    /// 0x97 quota exceeded, 3.1.1 0x80).
    pub max_filters_per_subscribe: usize,
    /// `user/{me}/…` filters one session may hold; new ones past it are refused the same way.
    pub max_subscriptions: usize,
    /// `presence/{user}` subscriptions one session may hold; new ones past it are refused.
    pub max_presence_watches: usize,
    /// `chat/{me}/send` publishes per second per user, over all of the user's connections;
    /// more are answered `rate_limited`.
    pub sends_per_sec: u32,
    /// Sends a user may make at once after a quiet spell (the bucket's size).
    pub sends_burst: u32,
    /// `chat/{me}/receipt` and `chat/{me}/rpc` publishes per second per user, together;
    /// more are answered `rate_limited`.
    pub requests_per_sec: u32,
    /// Receipts and requests a user may make at once after a quiet spell.
    pub requests_burst: u32,
    /// Connections of one user at once (distinct client ids); more CONNECTs are refused
    /// (3.1.1 code 3, 5.0 0x97 quota exceeded). A CONNECT that takes over a client id already
    /// connected is not refused.
    pub max_sessions_per_user: usize,
    /// Connections the HTTP listener holds at once; more are answered 503 and closed. Its own
    /// share of the file descriptors, so HTTP clients can never use up those of MQTT.
    pub http_max_connections: usize,
    /// HTTP connections one source address may hold at once (0: no limit).
    pub http_connections_per_ip: usize,
    /// Seconds an HTTP connection has to send a whole request head, counted from its opening
    /// or from the end of the previous response (so it also ends idle keep-alive connections).
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP request may move no byte either way (a stalled upload body, a download
    /// nobody reads) while the server is not working on it; then the connection is closed.
    pub http_idle_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            connect_timeout_secs: 10,
            max_inflight: 100,
            max_text_bytes: 16 * 1024,
            typing_per_sec: 5,
            max_group_members: 1024,
            fanout_slice: 64,
            max_groups_per_user: 512,
            groups_created_per_hour: 60,
            login_failures_per_user: 10,
            login_failures_per_ip: 30,
            login_failure_window_secs: 60,
            max_handshakes_per_ip: 512,
            write_timeout_secs: 30,
            max_session_buffer_bytes: 1024 * 1024,
            ack_timeout_secs: 60,
            max_filters_per_subscribe: 64,
            max_subscriptions: 256,
            max_presence_watches: 1024,
            sends_per_sec: 20,
            sends_burst: 60,
            requests_per_sec: 50,
            requests_burst: 200,
            max_sessions_per_user: 16,
            http_max_connections: 4096,
            http_connections_per_ip: 128,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 30,
        }
    }
}

/// `[redis]`: where the connection cache lives; without `url` it stays in the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host[:port][/db]`; absent: in-process connection cache.
    pub url: Option<String>,
    /// Prefix of every key chatd writes.
    pub key_prefix: String,
    /// Lifetime of a connection entry that its node stops refreshing, in seconds.
    pub ttl_secs: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            key_prefix: "chatd".into(),
            ttl_secs: 30,
        }
    }
}

/// `[push]`: push notifications for users with no device online. At least one of
/// `[push.fcm]` and `[push.apns]` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Messages to one user in one conversation within this many ms become one notification.
    pub collapse_window_ms: u64,
    /// Put the start of the message text in notifications (off: sender and count only).
    pub previews: bool,
    /// Most push requests in flight at once.
    pub concurrency: usize,
    /// Retries of one notification (429, 5xx, network errors) before it is dropped.
    pub max_retries: u32,
    /// First retry delay in ms, doubled for each further retry (`Retry-After` wins if longer).
    pub retry_base_ms: u64,
    /// Longest wait before one retry, in ms.
    pub retry_max_ms: u64,
    /// Safety-net scan for pending jobs, in ms.
    pub scan_interval_ms: u64,
    /// How long a notification stays worth delivering, in seconds (APNs `apns-expiration`,
    /// FCM `android.ttl`).
    pub ttl_secs: u64,
    /// Limit for one HTTP request to a push service, in ms.
    pub timeout_ms: u64,
    /// Firebase Cloud Messaging.
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service.
    pub apns: Option<ApnsConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            collapse_window_ms: 2000,
            previews: false,
            concurrency: 32,
            max_retries: 5,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            scan_interval_ms: 1000,
            ttl_secs: 86_400,
            timeout_ms: 10_000,
            fcm: None,
            apns: None,
        }
    }
}

/// `[media]`: where media bytes live and what may be uploaded. No section at all: the `fs`
/// back end under `{storage.path}/media`, served by chatd's own HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `fs` (local disk, the default) or `s3`.
    pub backend: MediaBackend,
    /// Lifetime of upload and download URLs, in seconds.
    pub url_ttl_secs: u64,
    /// `[media.limits.image]`, `…video`, `…audio`, `…file`.
    pub limits: MediaLimitsConfig,
    /// `[media.fs]`: settings of the `fs` back end.
    pub fs: FsMediaConfig,
    /// `[media.s3]`: settings of the `s3` back end (required with `backend = "s3"`).
    pub s3: Option<S3MediaConfig>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            backend: MediaBackend::Fs,
            url_ttl_secs: 900,
            limits: MediaLimitsConfig::default(),
            fs: FsMediaConfig::default(),
            s3: None,
        }
    }
}

/// `[push.fcm]`: FCM HTTP v1 with a service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service account key file (JSON) downloaded from the Firebase console.
    pub service_account: PathBuf,
    /// Base URL of the FCM API; default `https://fcm.googleapis.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Overrides the service account's `token_uri` (OAuth token endpoint).
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// `[push.apns]`: APNs with a token-based (`.p8`) key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` key file from the Apple developer account.
    pub key_file: PathBuf,
    /// The key's id (10 characters).
    pub key_id: String,
    /// The developer team id (10 characters).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `production` (default) or `sandbox`: which Apple endpoint the app's tokens belong to.
    #[serde(default)]
    pub environment: ApnsEnvironmentConfig,
    /// Overrides the environment's endpoint (a relay or a test server).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `push.apns.environment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironmentConfig {
    /// `https://api.push.apple.com`.
    #[default]
    Production,
    /// `https://api.sandbox.push.apple.com`.
    Sandbox,
}

/// `media.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// Local disk under the data directory, served by chatd's HTTP listener.
    Fs,
    /// An S3-compatible object store with presigned URLs.
    S3,
}

/// `[media.limits]`: one optional table per kind; a missing table or key keeps the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimitsConfig {
    /// `[media.limits.image]`
    pub image: Option<TypeLimitConfig>,
    /// `[media.limits.video]`
    pub video: Option<TypeLimitConfig>,
    /// `[media.limits.audio]`
    pub audio: Option<TypeLimitConfig>,
    /// `[media.limits.file]`
    pub file: Option<TypeLimitConfig>,
}

/// `[media.limits.{kind}]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypeLimitConfig {
    /// Largest upload of this kind, in bytes.
    pub max_bytes: Option<u64>,
    /// Accepted MIME types (`image/png`, `image/*`, `*/*`).
    pub mime: Option<Vec<String>>,
}

/// `[media.fs]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsMediaConfig {
    /// Where the bytes live; default `{storage.path}/media`.
    pub path: Option<PathBuf>,
    /// Base of the upload/download URLs handed to clients (how clients reach chatd's HTTP
    /// listener, e.g. `https://chat.example.com`); default `http://` + the listener's address.
    pub public_url: Option<String>,
    /// HMAC key for the URLs (at least 32 characters); default generated into
    /// `{storage.path}/media.key` (mode 0600).
    pub signing_key: Option<String>,
}

/// `[media.s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3MediaConfig {
    /// Service URL (MinIO, other S3-compatible stores); absent: AWS's endpoint for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region used for signing.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// The bucket (it must exist).
    pub bucket: String,
    /// Access key id; absent: `AWS_ACCESS_KEY_ID` from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret key; absent: `AWS_SECRET_ACCESS_KEY` from the environment.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), needed by MinIO and most self-hosted stores.
    #[serde(default)]
    pub force_path_style: bool,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

/// Largest object one S3 `PUT` may carry (5 GiB).
const S3_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

impl MediaLimitsConfig {
    /// The effective limits: each kind's defaults overridden by what the file sets.
    pub fn resolve(&self) -> Limits {
        let one = |kind: MediaKind, set: &Option<TypeLimitConfig>| {
            let mut limit: TypeLimit = Limits::default_for(kind);
            if let Some(set) = set {
                if let Some(max) = set.max_bytes {
                    limit.max_bytes = max;
                }
                if let Some(mime) = &set.mime {
                    limit.mime = mime.clone();
                }
            }
            limit
        };
        Limits {
            image: one(MediaKind::Image, &self.image),
            video: one(MediaKind::Video, &self.video),
            audio: one(MediaKind::Audio, &self.audio),
            file: one(MediaKind::File, &self.file),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `chatd=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads and validates a file, or returns the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::parse(&text, &path.display().to_string())?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listeners: [(&'static str, &str); 5] = [
            ("listen.mqtt", &self.listen.mqtt),
            ("listen.ws", &self.listen.ws),
            ("listen.http", &self.listen.http),
            ("listen.mqtts", &self.listen.mqtts),
            ("listen.wss", &self.listen.wss),
        ];
        for (key, value) in listeners {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Invalid {
                    key,
                    why: format!("`{value}` is not an address like 0.0.0.0:1883"),
                });
            }
        }
        if (!self.listen.mqtts.is_empty() || !self.listen.wss.is_empty()) && self.tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "tls",
                why:
                    "listen.mqtts or listen.wss is set, so [tls] cert_file and key_file are needed"
                        .into(),
            });
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.path",
                why: "must not be empty".into(),
            });
        }
        self.storage.engine_config()?;
        if let Some(secret) = &self.auth.jwt_hs256_secret {
            if secret.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "auth.jwt_hs256_secret",
                    why: "must be at least 16 bytes".into(),
                });
            }
        }
        if let Some(token) = &self.auth.admin_token {
            if token.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "auth.admin_token",
                    why: "must be at least 16 characters".into(),
                });
            }
        }
        self.validate_redis()?;
        if let Some(push) = &self.push {
            push.validate()?;
        }
        self.validate_media()?;
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 15] = [
            (
                "limits.typing_per_sec",
                (1..=1000).contains(&l.typing_per_sec),
                "must be between 1 and 1000",
            ),
            (
                "limits.max_connections",
                l.max_connections >= 1,
                "must be at least 1",
            ),
            (
                "limits.max_packet_size",
                (1024..=256 * 1024 * 1024).contains(&l.max_packet_size),
                "must be between 1024 and 268435456",
            ),
            (
                "limits.connect_timeout_secs",
                (1..=3600).contains(&l.connect_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.max_inflight",
                l.max_inflight >= 1,
                "must be at least 1",
            ),
            (
                "limits.max_text_bytes",
                l.max_text_bytes >= 1 && l.max_text_bytes < l.max_packet_size,
                "must be at least 1 and below limits.max_packet_size",
            ),
            (
                "limits.max_group_members",
                (2..=100_000).contains(&l.max_group_members),
                "must be between 2 and 100000",
            ),
            (
                "limits.fanout_slice",
                (1..=100_000).contains(&l.fanout_slice),
                "must be between 1 and 100000",
            ),
            (
                "limits.max_groups_per_user",
                (1..=100_000).contains(&l.max_groups_per_user),
                "must be between 1 and 100000",
            ),
            (
                "limits.groups_created_per_hour",
                l.groups_created_per_hour <= 1_000_000,
                "must be between 0 (no limit) and 1000000",
            ),
            (
                "limits.login_failure_window_secs",
                (1..=86_400).contains(&l.login_failure_window_secs),
                "must be between 1 and 86400",
            ),
            (
                "limits.write_timeout_secs",
                (1..=3600).contains(&l.write_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.http_max_connections",
                (1..=1_000_000).contains(&l.http_max_connections),
                "must be between 1 and 1000000",
            ),
            (
                "limits.http_header_timeout_secs",
                (1..=3600).contains(&l.http_header_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.http_idle_timeout_secs",
                (1..=3600).contains(&l.http_idle_timeout_secs),
                "must be between 1 and 3600",
            ),
        ];
        first_invalid(&checks)?;
        self.validate_subscription_limits()?;
        self.validate_session_buffers()?;
        self.validate_user_rates()
    }

    /// What a session may hold for a client that stops reading or acknowledging.
    fn validate_session_buffers(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 2] = [
            (
                "limits.max_session_buffer_bytes",
                (4096..=1024 * 1024 * 1024).contains(&l.max_session_buffer_bytes),
                "must be between 4096 and 1073741824",
            ),
            (
                "limits.ack_timeout_secs",
                (1..=3600).contains(&l.ack_timeout_secs),
                "must be between 1 and 3600",
            ),
        ];
        first_invalid(&checks)
    }

    /// The per-session subscription limits (a session's filters and watches cost memory and
    /// work on every SUBSCRIBE; they must allow at least one).
    fn validate_subscription_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 3] = [
            (
                "limits.max_filters_per_subscribe",
                (1..=65_535).contains(&l.max_filters_per_subscribe),
                "must be between 1 and 65535",
            ),
            (
                "limits.max_subscriptions",
                (1..=100_000).contains(&l.max_subscriptions),
                "must be between 1 and 100000",
            ),
            (
                "limits.max_presence_watches",
                (1..=1_000_000).contains(&l.max_presence_watches),
                "must be between 1 and 1000000",
            ),
        ];
        first_invalid(&checks)
    }

    /// Checks the per-user write rates and the per-user connection cap.
    fn validate_user_rates(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 5] = [
            (
                "limits.sends_per_sec",
                (1..=100_000).contains(&l.sends_per_sec),
                "must be between 1 and 100000",
            ),
            (
                "limits.sends_burst",
                (1..=1_000_000).contains(&l.sends_burst) && l.sends_burst >= l.sends_per_sec,
                "must be between 1 and 1000000 and at least limits.sends_per_sec",
            ),
            (
                "limits.requests_per_sec",
                (1..=100_000).contains(&l.requests_per_sec),
                "must be between 1 and 100000",
            ),
            (
                "limits.requests_burst",
                (1..=1_000_000).contains(&l.requests_burst)
                    && l.requests_burst >= l.requests_per_sec,
                "must be between 1 and 1000000 and at least limits.requests_per_sec",
            ),
            (
                "limits.max_sessions_per_user",
                (1..=100_000).contains(&l.max_sessions_per_user),
                "must be between 1 and 100000",
            ),
        ];
        first_invalid(&checks)
    }

    fn validate_media(&self) -> Result<(), ConfigError> {
        let m = &self.media;
        let invalid = |key: &'static str, why: String| Err(ConfigError::Invalid { key, why });
        if !(1..=MAX_URL_TTL_SECS).contains(&m.url_ttl_secs) {
            return invalid(
                "media.url_ttl_secs",
                format!("must be between 1 and {MAX_URL_TTL_SECS} (7 days)"),
            );
        }
        let limits = m.limits.resolve();
        if let Err(e) = limits.validate() {
            // The message names the exact key (media.limits.{kind}.…).
            return invalid("media.limits", e.to_string());
        }
        match m.backend {
            MediaBackend::Fs => {
                if self.listen.http.is_empty() {
                    return invalid(
                        "media.backend",
                        "\"fs\" serves media through chatd's HTTP listener, so listen.http must be set"
                            .into(),
                    );
                }
                if let Some(url) = &m.fs.public_url {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return invalid(
                            "media.fs.public_url",
                            format!("must start with http:// or https://, not {url:?}"),
                        );
                    }
                }
                if let Some(key) = &m.fs.signing_key {
                    if key.len() < 32 {
                        return invalid(
                            "media.fs.signing_key",
                            "must be at least 32 characters".into(),
                        );
                    }
                }
                if m.fs.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                    return invalid("media.fs.path", "must not be empty".into());
                }
            }
            MediaBackend::S3 => {
                let Some(s3) = &m.s3 else {
                    return invalid(
                        "media.s3",
                        "backend = \"s3\" needs a [media.s3] section (bucket, region, credentials)"
                            .into(),
                    );
                };
                let bucket_ok = (3..=63).contains(&s3.bucket.len())
                    && s3.bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    });
                if !bucket_ok {
                    return invalid(
                        "media.s3.bucket",
                        format!(
                            "{:?} is not a bucket name (3 to 63 of a-z 0-9 . -)",
                            s3.bucket
                        ),
                    );
                }
                if s3.region.is_empty() || s3.region.chars().any(char::is_whitespace) {
                    return invalid(
                        "media.s3.region",
                        "must be a region name like eu-west-1".into(),
                    );
                }
                if let Some(endpoint) = &s3.endpoint {
                    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                        return invalid(
                            "media.s3.endpoint",
                            format!("must start with http:// or https://, not {endpoint:?}"),
                        );
                    }
                }
                if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                    return invalid(
                        "media.s3.secret_access_key",
                        "set access_key_id and secret_access_key together (or neither, to use \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment)"
                            .into(),
                    );
                }
                if let Some(kind) = MediaKind::ALL
                    .into_iter()
                    .find(|k| limits.get(*k).max_bytes > S3_MAX_PUT_BYTES)
                {
                    return invalid(
                        "media.limits",
                        format!(
                            "media.limits.{kind}.max_bytes is over 5 GiB, more than one S3 PUT can carry"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_redis(&self) -> Result<(), ConfigError> {
        let r = &self.redis;
        if let Some(url) = &r.url {
            if !url.starts_with("redis://") {
                return Err(ConfigError::Invalid {
                    key: "redis.url",
                    why: "must start with redis:// (like redis://127.0.0.1:6379)".into(),
                });
            }
            if let Err(e) = redis::Client::open(url.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "redis.url",
                    why: format!("not a usable Redis URL: {e}"),
                });
            }
        }
        if r.key_prefix.is_empty() || r.key_prefix.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::Invalid {
                key: "redis.key_prefix",
                why: "must be non-empty, without spaces".into(),
            });
        }
        if !(5..=3600).contains(&r.ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "redis.ttl_secs",
                why: "must be between 5 and 3600".into(),
            });
        }
        Ok(())
    }
}

impl PushConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, why: &str| ConfigError::Invalid {
            key,
            why: why.to_string(),
        };
        if self.fcm.is_none() && self.apns.is_none() {
            return Err(invalid(
                "push",
                "configure [push.fcm] or [push.apns] (or remove [push] to turn push off)",
            ));
        }
        let checks: [(&'static str, bool, &str); 8] = [
            (
                "push.collapse_window_ms",
                self.collapse_window_ms <= 600_000,
                "must be at most 600000 (10 minutes)",
            ),
            (
                "push.concurrency",
                (1..=1024).contains(&self.concurrency),
                "must be between 1 and 1024",
            ),
            (
                "push.max_retries",
                self.max_retries <= 20,
                "must be at most 20",
            ),
            (
                "push.retry_base_ms",
                (10..=60_000).contains(&self.retry_base_ms),
                "must be between 10 and 60000",
            ),
            (
                "push.retry_max_ms",
                self.retry_max_ms >= self.retry_base_ms && self.retry_max_ms <= 3_600_000,
                "must be at least push.retry_base_ms and at most 3600000",
            ),
            (
                "push.scan_interval_ms",
                (50..=60_000).contains(&self.scan_interval_ms),
                "must be between 50 and 60000",
            ),
            (
                "push.ttl_secs",
                self.ttl_secs <= 2_419_200,
                "must be at most 2419200 (28 days)",
            ),
            (
                "push.timeout_ms",
                (100..=120_000).contains(&self.timeout_ms),
                "must be between 100 and 120000",
            ),
        ];
        for (key, ok, why) in checks {
            if !ok {
                return Err(invalid(key, why));
            }
        }
        let url_ok = |u: &Option<String>| {
            u.as_deref()
                .is_none_or(|u| u.starts_with("http://") || u.starts_with("https://"))
        };
        if let Some(fcm) = &self.fcm {
            if fcm.service_account.as_os_str().is_empty() {
                return Err(invalid("push.fcm.service_account", "must not be empty"));
            }
            if !url_ok(&fcm.endpoint) {
                return Err(invalid(
                    "push.fcm.endpoint",
                    "must start with http:// or https://",
                ));
            }
            if !url_ok(&fcm.token_uri) {
                return Err(invalid(
                    "push.fcm.token_uri",
                    "must start with http:// or https://",
                ));
            }
        }
        if let Some(apns) = &self.apns {
            if apns.key_file.as_os_str().is_empty() {
                return Err(invalid("push.apns.key_file", "must not be empty"));
            }
            let id_ok = |s: &str| {
                !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric())
            };
            if !id_ok(&apns.key_id) {
                return Err(invalid(
                    "push.apns.key_id",
                    "must be the key's id: letters and digits (10 characters)",
                ));
            }
            if !id_ok(&apns.team_id) {
                return Err(invalid(
                    "push.apns.team_id",
                    "must be the team id: letters and digits (10 characters)",
                ));
            }
            if apns.topic.is_empty()
                || apns
                    .topic
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "push.apns.topic",
                    "must be the app's bundle id, without spaces",
                ));
            }
            if !url_ok(&apns.endpoint) {
                return Err(invalid(
                    "push.apns.endpoint",
                    "must start with http:// or https://",
                ));
            }
        }
        Ok(())
    }
}

/// The first failed check of a list of `(key, holds, why)`, as the error naming its key.
fn first_invalid(checks: &[(&'static str, bool, &str)]) -> Result<(), ConfigError> {
    match checks.iter().find(|(_, ok, _)| !ok) {
        Some((key, _, why)) => Err(ConfigError::Invalid {
            key,
            why: why.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[listen]\nmqtt = \"0.0.0.0:1\"\nmqqt = \"x\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqqt"), "{err}");
    }

    #[test]
    fn bad_address_is_named() {
        let cfg = Config::parse("[listen]\nmqtt = \"nowhere\"\n", "t.toml").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("listen.mqtt"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::parse("[limits]\nmax_inflight = \"many\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_inflight"), "{err}");
    }

    #[test]
    fn tls_listener_needs_tls_section() {
        let cfg = Config::parse("[listen]\nmqtts = \"127.0.0.1:0\"\n", "t.toml").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("tls"));
    }

    #[test]
    fn session_buffer_limits_are_checked() {
        let cfg = Config::parse("", "t.toml").unwrap();
        assert_eq!(cfg.limits.max_session_buffer_bytes, 1024 * 1024);
        assert_eq!(cfg.limits.ack_timeout_secs, 60);
        for (text, key) in [
            (
                "[limits]\nmax_session_buffer_bytes = 100\n",
                "limits.max_session_buffer_bytes",
            ),
            (
                "[limits]\nack_timeout_secs = 0\n",
                "limits.ack_timeout_secs",
            ),
            (
                "[limits]\nack_timeout_secs = 86400\n",
                "limits.ack_timeout_secs",
            ),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn group_limits_are_checked() {
        let cfg = Config::parse("[limits]\ngroups_created_per_hour = 0\n", "t.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.limits.max_groups_per_user, 512);
        for (text, key) in [
            (
                "[limits]\nmax_groups_per_user = 0\n",
                "limits.max_groups_per_user",
            ),
            (
                "[limits]\ngroups_created_per_hour = 2000000\n",
                "limits.groups_created_per_hour",
            ),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn hostile_input_limits_are_checked() {
        let cfg = Config::parse(
            "[limits]\nlogin_failures_per_user = 0\nmax_handshakes_per_ip = 0\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        for (text, key) in [
            (
                "[limits]\nlogin_failure_window_secs = 0\n",
                "limits.login_failure_window_secs",
            ),
            (
                "[limits]\nwrite_timeout_secs = 0\n",
                "limits.write_timeout_secs",
            ),
            ("[limits]\nsends_per_sec = 0\n", "limits.sends_per_sec"),
            (
                "[limits]\nsends_per_sec = 50\nsends_burst = 10\n",
                "limits.sends_burst",
            ),
            (
                "[limits]\nrequests_per_sec = 0\n",
                "limits.requests_per_sec",
            ),
            ("[limits]\nrequests_burst = 0\n", "limits.requests_burst"),
            (
                "[limits]\nmax_sessions_per_user = 0\n",
                "limits.max_sessions_per_user",
            ),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn subscription_limits_are_checked() {
        let cfg = Config::parse("", "t.toml").unwrap();
        assert_eq!(cfg.limits.max_filters_per_subscribe, 64);
        assert_eq!(cfg.limits.max_subscriptions, 256);
        assert_eq!(cfg.limits.max_presence_watches, 1024);
        for key in [
            "max_filters_per_subscribe",
            "max_subscriptions",
            "max_presence_watches",
        ] {
            let text = format!("[limits]\n{key} = 0\n");
            let err = Config::parse(&text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(&format!("limits.{key}")), "{err}");
        }
    }

    #[test]
    fn http_listener_limits_are_checked() {
        let cfg = Config::parse("[limits]\nhttp_connections_per_ip = 0\n", "t.toml").unwrap();
        cfg.validate().unwrap();
        for (text, key) in [
            (
                "[limits]\nhttp_max_connections = 0\n",
                "limits.http_max_connections",
            ),
            (
                "[limits]\nhttp_header_timeout_secs = 0\n",
                "limits.http_header_timeout_secs",
            ),
            (
                "[limits]\nhttp_idle_timeout_secs = 3601\n",
                "limits.http_idle_timeout_secs",
            ),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn redis_section_is_checked() {
        let cfg = Config::parse("[redis]\nurl = \"redis://127.0.0.1:6379\"\n", "t.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.redis.ttl_secs, 30);
        assert_eq!(cfg.redis.key_prefix, "chatd");
        for (text, key) in [
            ("[redis]\nurl = \"http://x\"\n", "redis.url"),
            ("[redis]\nurl = \"rediss://x\"\n", "redis.url"),
            ("[redis]\nttl_secs = 2\n", "redis.ttl_secs"),
            ("[redis]\nkey_prefix = \"\"\n", "redis.key_prefix"),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        let err = Config::parse("[redis]\nurll = \"redis://x\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }

    #[test]
    fn push_section_is_checked() {
        let cfg = Config::parse("", "t.toml").unwrap();
        assert!(cfg.push.is_none());
        let fcm = "[push]\n[push.fcm]\nservice_account = \"sa.json\"\n";
        let cfg = Config::parse(fcm, "t.toml").unwrap();
        cfg.validate().unwrap();
        let push = cfg.push.unwrap();
        assert_eq!(push.collapse_window_ms, 2000);
        assert!(!push.previews);
        let apns = "[push.apns]\nkey_file = \"k.p8\"\nkey_id = \"ABC123DEFG\"\nteam_id = \"TEAM123456\"\ntopic = \"com.example.chat\"\nenvironment = \"sandbox\"\n";
        let cfg = Config::parse(apns, "t.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(
            cfg.push.unwrap().apns.unwrap().environment,
            ApnsEnvironmentConfig::Sandbox
        );
        for (text, key) in [
            ("[push]\nprevies = true\n", "previes"),
            (&apns.replace("sandbox", "staging"), "staging"),
            ("[push.fcm]\nendpoint = \"https://x\"\n", "service_account"),
        ] {
            let err = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        for (text, key) in [
            ("[push]\nconcurrency = 4\n", "push"),
            (
                &fcm.replace("[push]\n", "[push]\nconcurrency = 0\n"),
                "push.concurrency",
            ),
            (
                &fcm.replace("[push]\n", "[push]\nmax_retries = 99\n"),
                "push.max_retries",
            ),
            (
                &format!("{fcm}endpoint = \"fcm.example\"\n"),
                "push.fcm.endpoint",
            ),
            (&apns.replace("ABC123DEFG", "ABC 123"), "push.apns.key_id"),
            (&apns.replace("com.example.chat", ""), "push.apns.topic"),
        ] {
            let err = match Config::parse(text, "t.toml") {
                Ok(cfg) => cfg.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn documented_push_examples_are_valid() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Push notifications")
            .nth(1)
            .expect("README has a Push notifications section");
        let blocks: Vec<&str> = section
            .split("```toml")
            .skip(1)
            .take(2)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert_eq!(blocks.len(), 2);
        for block in blocks {
            let cfg = Config::parse(block, "README.md").unwrap();
            cfg.validate().unwrap();
            assert!(cfg.push.is_some());
        }
        // config/chatd.toml with its [push] sections uncommented.
        let example = include_str!("../../config/chatd.toml");
        let (head, push) = example.split_once("# [push]\n").expect("a [push] example");
        let mut text = format!("{head}[push]\n");
        for line in push.lines() {
            if line.starts_with('[') {
                break; // the next (uncommented) section: push ends here
            }
            let is_setting = line
                .strip_prefix("# ")
                .and_then(|l| l.split_once(" = "))
                .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if line.starts_with("# [") || is_setting {
                text.push_str(&line[2..]);
                text.push('\n');
            }
        }
        let cfg = Config::parse(&text, "config/chatd.toml").unwrap();
        cfg.validate().unwrap();
        let push = cfg.push.unwrap();
        assert_eq!(push.collapse_window_ms, 2000);
        assert!(push.fcm.is_some() && push.apns.is_some());
    }

    #[test]
    fn example_file_is_the_defaults() {
        let text = include_str!("../../config/chatd.toml");
        let cfg = Config::parse(text, "config/chatd.toml").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.media.backend, MediaBackend::Fs);
        assert_eq!(cfg.media.url_ttl_secs, MediaConfig::default().url_ttl_secs);
        assert_eq!(cfg.media.limits.resolve(), Limits::default());
    }

    #[test]
    fn media_defaults_to_fs_with_default_limits() {
        let cfg = Config::default();
        assert_eq!(cfg.media.backend, MediaBackend::Fs);
        assert_eq!(cfg.media.limits.resolve(), Limits::default());
        let cfg = Config::parse(
            "[media.limits.image]\nmax_bytes = 1000\n[media.limits.file]\nmime = [\"application/pdf\"]\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let limits = cfg.media.limits.resolve();
        assert_eq!(limits.image.max_bytes, 1000);
        assert_eq!(limits.image.mime, Limits::default().image.mime);
        assert_eq!(limits.file.mime, vec!["application/pdf".to_string()]);
        assert_eq!(limits.file.max_bytes, Limits::default().file.max_bytes);
    }

    #[test]
    fn media_section_is_checked() {
        let s3 = "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"chatd-media\"\n";
        Config::parse(s3, "t.toml").unwrap().validate().unwrap();
        for (text, key) in [
            ("[media]\nurl_ttl_secs = 0\n", "media.url_ttl_secs"),
            ("[media]\nurl_ttl_secs = 604801\n", "media.url_ttl_secs"),
            ("[media.limits.image]\nmax_bytes = 0\n", "media.limits.image.max_bytes"),
            ("[media.limits.video]\nmime = [\"Video/MP4\"]\n", "media.limits.video.mime"),
            ("[media.fs]\npublic_url = \"chat.example.com\"\n", "media.fs.public_url"),
            ("[media.fs]\nsigning_key = \"short\"\n", "media.fs.signing_key"),
            ("[listen]\nhttp = \"\"\n", "listen.http"),
            ("[media]\nbackend = \"s3\"\n", "media.s3"),
            (
                "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"No_Such\"\n",
                "media.s3.bucket",
            ),
            (
                "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"b-1\"\nendpoint = \"minio:9000\"\n",
                "media.s3.endpoint",
            ),
            (
                "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"b-1\"\naccess_key_id = \"k\"\n",
                "media.s3.secret_access_key",
            ),
            (
                "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"b-1\"\n[media.limits.file]\nmax_bytes = 6000000000\n",
                "media.limits.file.max_bytes",
            ),
        ] {
            let err = Config::parse(text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        for (text, key) in [
            ("[media]\nbackend = \"ftp\"\n", "backend"),
            ("[media.limits.image]\nmax_byte = 1\n", "max_byte"),
            ("[media.limits.sticker]\nmax_bytes = 1\n", "sticker"),
            ("[media.s3]\nbuckit = \"b\"\n", "buckit"),
        ] {
            let err = Config::parse(text, "t.toml").unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn storage_engine_is_sled_by_default() {
        let cfg = Config::parse("[storage]\npath = \"/srv/chatd\"\n", "t.toml").unwrap();
        let engine = cfg.storage.engine_config().unwrap();
        assert_eq!(engine.engine, Engine::Sled);
        assert_eq!(engine.path, Path::new("/srv/chatd/store"));
        let cfg = Config::parse("[storage]\nengine = \"sled\"\n", "t.toml").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_storage_engine_is_named() {
        let cfg = Config::parse("[storage]\nengine = \"fjall\"\n", "t.toml").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `storage.engine`: unknown storage engine `fjall` (known: sled)"
        );
    }
}
