//! The one TOML file an operator writes. Every section has defaults, so no file at all serves a
//! single node with its data in `./data`; unknown keys and bad values stop the server at start
//! with a message that names the key.
//!
//! Each plugin's section lives with the plugin, types, defaults and checks: `[media]` in
//! `chatd_media::config`, `[push]` in `chatd_push_bridge::config`, and the messaging limits of
//! `[limits]` are checked by `chatd_core::config`. This module assembles them with the broker's
//! own sections (`[limits]` in `config/limits.rs`), parses the file and runs every check at start,
//! including those that span sections.

mod cluster;
mod limits;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chatd_core::config::InvalidSetting;
use chatd_core::messaging::ChatConfig;
use chatd_kv::{Engine, EngineConfig};
use chatd_media::config::{MediaBackend, MediaConfig};
use chatd_push_bridge::config::PushConfig;
use serde::Deserialize;

pub use cluster::{ClusterConfig, PostgresConfig, StoreKind};
pub use limits::LimitsConfig;
pub use web::WebConfig;

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

impl From<InvalidSetting> for ConfigError {
    fn from(e: InvalidSetting) -> ConfigError {
        ConfigError::Invalid {
            key: e.key,
            why: e.why,
        }
    }
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
    /// `[cluster]`: the embedded store (one node) or PostgreSQL (a cluster).
    pub cluster: ClusterConfig,
    /// `[postgres]`: the database of a cluster.
    pub postgres: PostgresConfig,
    /// `[web]`: the web client at `/` on the HTTP listener.
    pub web: WebConfig,
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
    /// The store's engine by name (`sled` or `fjall`) for a new data directory; an existing
    /// one is opened with the engine that created it.
    pub engine: String,
    /// The engine's block cache in MiB (1 to 65536); what the server's memory grows by as
    /// the store is read, beyond which it re-reads (usually from the OS page cache).
    pub cache_mb: u64,
    /// fjall's largest memtable in MiB (1 to 1024), recorded when the store is created: the
    /// memory writes take before they are written out as a table, and the journal that
    /// start-up replays.
    pub memtable_mb: u64,
    /// fjall: KiB of a table being written that are handed to the disk at a time, and of a
    /// deleted table or journal that are freed at a time (0, or 64 to 1048576), so that the
    /// journal's fsyncs do not wait behind a whole file; 0 turns the pacing off.
    pub table_pacing_kb: u64,
    /// fjall: how many nice levels (0 to 19) below the rest of chatd its flush and compaction
    /// threads run, so that a compaction does not delay the threads that serve clients; 0
    /// runs them at the same priority.
    pub background_nice: u8,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./data"),
            engine: Engine::default().name().to_string(),
            cache_mb: chatd_kv::DEFAULT_CACHE_BYTES / (1024 * 1024),
            memtable_mb: chatd_kv::DEFAULT_MEMTABLE_BYTES / (1024 * 1024),
            table_pacing_kb: chatd_kv::DEFAULT_PACING_CHUNK_BYTES / 1024,
            background_nice: chatd_kv::DEFAULT_BACKGROUND_NICE,
        }
    }
}

impl StorageConfig {
    /// The configured engine and its directory in the data directory (`{path}/store` for sled,
    /// `{path}/fjall` for fjall); `server::open_store` opens an existing store with its own
    /// engine instead.
    pub fn engine_config(&self) -> Result<EngineConfig, ConfigError> {
        let engine = self
            .engine
            .parse::<Engine>()
            .map_err(|e| ConfigError::Invalid {
                key: "storage.engine",
                why: e.to_string(),
            })?;
        if !(1..=65536).contains(&self.cache_mb) {
            return Err(ConfigError::Invalid {
                key: "storage.cache_mb",
                why: format!("{} is not between 1 and 65536", self.cache_mb),
            });
        }
        if !(1..=1024).contains(&self.memtable_mb) {
            return Err(ConfigError::Invalid {
                key: "storage.memtable_mb",
                why: format!("{} is not between 1 and 1024", self.memtable_mb),
            });
        }
        if self.table_pacing_kb != 0 && !(64..=1_048_576).contains(&self.table_pacing_kb) {
            return Err(ConfigError::Invalid {
                key: "storage.table_pacing_kb",
                why: format!(
                    "{} is neither 0 (off) nor between 64 and 1048576",
                    self.table_pacing_kb
                ),
            });
        }
        if self.background_nice > 19 {
            return Err(ConfigError::Invalid {
                key: "storage.background_nice",
                why: format!("{} is not between 0 and 19", self.background_nice),
            });
        }
        Ok(EngineConfig::in_data_dir(&self.path, engine)
            .with_cache_bytes(self.cache_bytes())
            .with_memtable_bytes(self.memtable_mb.saturating_mul(1024 * 1024))
            .with_pacing_chunk_bytes(self.table_pacing_kb.saturating_mul(1024))
            .with_background_nice(self.background_nice))
    }

    /// `cache_mb` in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1024 * 1024)
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Secret for HS256 JWTs used as MQTT passwords.
    pub jwt_hs256_secret: Option<String>,
    /// PEM public key for RS256 JWTs used as MQTT passwords.
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    /// Bearer token for the admin API; generated into the data directory when absent.
    pub admin_token: Option<String>,
    /// Key that signs the login tokens of `POST /auth/token`; generated into the data
    /// directory (`login.key`) when absent.
    pub login_token_secret: Option<String>,
    /// How long a login token of `POST /auth/token` is valid, in seconds.
    pub login_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_hs256_secret: None,
            jwt_rs256_public_key_file: None,
            admin_token: None,
            login_token_secret: None,
            login_token_ttl_secs: 24 * 3600,
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
        self.web.validate()?;
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
        if let Some(secret) = &self.auth.login_token_secret {
            if secret.len() < 32 {
                return Err(ConfigError::Invalid {
                    key: "auth.login_token_secret",
                    why: "must be at least 32 bytes".into(),
                });
            }
        }
        if !(60..=30 * 24 * 3600).contains(&self.auth.login_token_ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "auth.login_token_ttl_secs",
                why: "must be between 60 and 2592000 (30 days)".into(),
            });
        }
        if let Some(token) = &self.auth.admin_token {
            if token.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "auth.admin_token",
                    why: "must be at least 16 characters".into(),
                });
            }
        }
        self.redis.validate()?;
        if let Some(push) = &self.push {
            push.validate()?;
        }
        self.validate_media()?;
        self.limits.validate()?;
        cluster::validate(self)?;
        Ok(())
    }

    /// Messaging's settings from `[node]` and `[limits]`; what depends on other plugins
    /// (push jobs) is the caller's to set.
    pub fn chat(&self) -> ChatConfig {
        ChatConfig {
            node_id: self.node.id,
            fanout_takeover: self.cluster.fanout_takeover(),
            ..self.limits.chat()
        }
    }

    /// `[media]`'s own checks, with the one that involves `[listen]` where it has always been
    /// met: after the URL lifetime and limits, before the back end's settings.
    fn validate_media(&self) -> Result<(), ConfigError> {
        self.media.validate_service()?;
        if self.media.backend == MediaBackend::Fs && self.listen.http.is_empty() {
            return Err(ConfigError::Invalid {
                key: "media.backend",
                why:
                    "\"fs\" serves media through chatd's HTTP listener, so listen.http must be set"
                        .into(),
            });
        }
        self.media.validate_backend()?;
        Ok(())
    }
}

impl RedisConfig {
    /// Checks `[redis]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
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
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::Invalid {
                key: "redis.key_prefix",
                why: "must be non-empty, without spaces".into(),
            });
        }
        if !(5..=3600).contains(&self.ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "redis.ttl_secs",
                why: "must be between 5 and 3600".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_media::Limits;
    use chatd_push_bridge::ApnsEnvironment;

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
            ApnsEnvironment::Sandbox
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
    fn storage_engine_is_fjall_by_default() {
        let cfg = Config::parse("[storage]\npath = \"/srv/chatd\"\n", "t.toml").unwrap();
        let engine = cfg.storage.engine_config().unwrap();
        assert_eq!(engine.engine, Engine::Fjall);
        assert_eq!(engine.path, Path::new("/srv/chatd/fjall"));
        let cfg = Config::parse("[storage]\nengine = \"sled\"\n", "t.toml").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn storage_engine_fjall_is_accepted() {
        let cfg = Config::parse(
            "[storage]\npath = \"/srv/chatd\"\nengine = \"fjall\"\n",
            "t.toml",
        )
        .unwrap();
        cfg.validate().unwrap();
        let engine = cfg.storage.engine_config().unwrap();
        assert_eq!(engine.engine, Engine::Fjall);
        assert_eq!(engine.path, Path::new("/srv/chatd/fjall"));
    }

    #[test]
    fn unknown_storage_engine_is_named() {
        let cfg = Config::parse("[storage]\nengine = \"rocksdb\"\n", "t.toml").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "config key `storage.engine`: unknown storage engine `rocksdb` (known: sled, fjall)"
        );
    }

    #[test]
    fn storage_cache_is_32_mib_unless_configured_and_bounded() {
        let cfg = Config::parse("[storage]\npath = \"/srv/chatd\"\n", "t.toml").unwrap();
        assert_eq!(cfg.storage.engine_config().unwrap().cache_bytes, 32 << 20);
        let cfg = Config::parse("[storage]\ncache_mb = 256\n", "t.toml").unwrap();
        assert_eq!(cfg.storage.engine_config().unwrap().cache_bytes, 256 << 20);
        for bad in ["0", "65537"] {
            let text = format!("[storage]\ncache_mb = {bad}\n");
            let err = Config::parse(&text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("storage.cache_mb"), "{err}");
        }
    }

    #[test]
    fn table_pacing_is_1_mib_unless_configured_and_bounded() {
        let pacing = |text: &str| {
            Config::parse(text, "t.toml")
                .unwrap()
                .storage
                .engine_config()
                .map(|c| c.pacing_chunk_bytes)
        };
        assert_eq!(pacing("").unwrap(), 1 << 20);
        assert_eq!(pacing("[storage]\ntable_pacing_kb = 0\n").unwrap(), 0);
        assert_eq!(
            pacing("[storage]\ntable_pacing_kb = 256\n").unwrap(),
            256 << 10
        );
        for bad in ["1", "63", "1048577"] {
            let err = pacing(&format!("[storage]\ntable_pacing_kb = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("storage.table_pacing_kb"), "{err}");
        }
    }

    #[test]
    fn background_threads_are_10_levels_lower_unless_configured_and_bounded() {
        let nice = |text: &str| {
            Config::parse(text, "t.toml")
                .map_err(|e| e.to_string())?
                .storage
                .engine_config()
                .map(|c| c.background_nice)
                .map_err(|e| e.to_string())
        };
        assert_eq!(nice(""), Ok(10));
        assert_eq!(nice("[storage]\nbackground_nice = 0\n"), Ok(0));
        assert_eq!(nice("[storage]\nbackground_nice = 19\n"), Ok(19));
        let err = nice("[storage]\nbackground_nice = 20\n").unwrap_err();
        assert!(err.contains("storage.background_nice"), "{err}");
        // Out of u8's range: refused when the file is read.
        assert!(nice("[storage]\nbackground_nice = -1\n").is_err());
    }

    #[test]
    fn memtables_are_32_mib_unless_configured_and_bounded() {
        let cfg = Config::parse("[storage]\npath = \"/srv/chatd\"\n", "t.toml").unwrap();
        assert_eq!(
            cfg.storage.engine_config().unwrap().memtable_bytes,
            32 << 20
        );
        let cfg = Config::parse("[storage]\nmemtable_mb = 64\n", "t.toml").unwrap();
        assert_eq!(
            cfg.storage.engine_config().unwrap().memtable_bytes,
            64 << 20
        );
        for bad in ["0", "1025"] {
            let text = format!("[storage]\nmemtable_mb = {bad}\n");
            let err = Config::parse(&text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("storage.memtable_mb"), "{err}");
        }
    }

    #[test]
    fn cluster_sections_are_checked() {
        const PG: &str = "[postgres]\nurl = \"postgres://chatd@127.0.0.1:5432/chatd?target_session_attrs=read-write\"\n";
        const REDIS: &str = "[redis]\nurl = \"redis://127.0.0.1:6379\"\n";
        const S3: &str = "[media]\nbackend = \"s3\"\n[media.s3]\nbucket = \"chatd-media\"\n";
        let cluster = "[node]\nid = 2\n[cluster]\nstore = \"postgres\"\n";
        // The issue's example, with media every node reaches.
        let cfg = Config::parse(&format!("{cluster}{PG}{REDIS}{S3}"), "t.toml").unwrap();
        cfg.validate().unwrap();
        assert!(cfg.cluster.is_cluster());
        assert_eq!(cfg.postgres.timeout_secs, 10);
        assert_eq!(
            cfg.chat().fanout_takeover,
            Some(std::time::Duration::from_secs(10))
        );
        let key = "signing_key = \"0123456789abcdef0123456789abcdef\"\n";
        let shared = format!("[media.fs]\nshared = true\npath = \"/mnt/media\"\n{key}");
        let cfg = Config::parse(&format!("{cluster}{PG}{REDIS}{shared}"), "t.toml").unwrap();
        cfg.validate().unwrap();
        let no_path = format!("[media.fs]\nshared = true\n{key}");
        let no_key = "[media.fs]\nshared = true\npath = \"/mnt/media\"\n";
        // One node: the default, and [postgres] alone changes nothing.
        let cfg = Config::parse(PG, "t.toml").unwrap();
        cfg.validate().unwrap();
        assert!(!cfg.cluster.is_cluster());
        assert_eq!(cfg.chat().fanout_takeover, None);
        for (text, key) in [
            (format!("{cluster}{REDIS}{S3}"), "postgres.url"),
            (format!("{cluster}{PG}{S3}"), "redis.url"),
            (format!("{cluster}{PG}{REDIS}"), "media.fs.shared"),
            (format!("{cluster}{PG}{REDIS}{no_path}"), "media.fs.path"),
            (
                format!("{cluster}{PG}{REDIS}{no_key}"),
                "media.fs.signing_key",
            ),
            ("[postgres]\nurl = \"mysql://x\"\n".into(), "postgres.url"),
            (
                "[postgres]\nurl = \"postgres://h:notaport/db\"\n".into(),
                "postgres.url",
            ),
            (
                "[postgres]\ntimeout_secs = 0\n".into(),
                "postgres.timeout_secs",
            ),
            ("[cluster]\nlease_secs = 1\n".into(), "cluster.lease_secs"),
        ] {
            let err = Config::parse(&text, "t.toml")
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        for (text, key) in [
            ("[cluster]\nstore = \"mysql\"\n", "mysql"),
            ("[cluster]\nstores = \"postgres\"\n", "stores"),
            ("[postgres]\nuri = \"postgres://x\"\n", "uri"),
        ] {
            let err = Config::parse(text, "t.toml").unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }
}
