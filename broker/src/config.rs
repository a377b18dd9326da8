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
            login_failures_per_user: 10,
            login_failures_per_ip: 30,
            login_failure_window_secs: 60,
            max_handshakes_per_ip: 512,
            write_timeout_secs: 30,
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
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 9] = [
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
                "limits.login_failure_window_secs",
                (1..=86_400).contains(&l.login_failure_window_secs),
                "must be between 1 and 86400",
            ),
            (
                "limits.write_timeout_secs",
                (1..=3600).contains(&l.write_timeout_secs),
                "must be between 1 and 3600",
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
}
