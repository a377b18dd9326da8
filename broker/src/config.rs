//! The one TOML file an operator writes. Every section has defaults, so no file at all serves a
//! single node with its data in `./data`; unknown keys and bad values stop the server at start
//! with a message that names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./data"),
        }
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
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 7] = [
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
        ];
        for (key, ok, why) in checks {
            if !ok {
                return Err(ConfigError::Invalid {
                    key,
                    why: why.to_string(),
                });
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
}
