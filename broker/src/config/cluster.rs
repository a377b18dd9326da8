//! `[cluster]` and `[postgres]`: where a node keeps its data. Absent, the node is alone with its
//! embedded store; `store = "postgres"` makes it one node of a cluster that shares one
//! PostgreSQL database (the durable store) and one Redis (connections and wake-ups between
//! nodes). The names are fixed by issue 16 so that operators and tests can rely on them.

use serde::Deserialize;

use super::{Config, ConfigError};
use chatd_media::config::MediaBackend;

/// Which store holds the node's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store in `storage.path`: one node on its own (the default).
    #[default]
    Embedded,
    /// The PostgreSQL database at `postgres.url`, shared by every node of a cluster.
    Postgres,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `"embedded"` (the default) or `"postgres"`.
    pub store: StoreKind,
    /// Seconds a node's claim on an unfinished group fan-out lasts without renewal: a node
    /// that dies or stops mid-way has its fan-outs finished by another node this long after.
    pub lease_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            store: StoreKind::Embedded,
            lease_secs: 10,
        }
    }
}

/// `[postgres]`: the database of a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database[?target_session_attrs=read-write]`.
    pub url: Option<String>,
    /// Seconds a statement may take before the node gives up on it and answers `unavailable`.
    pub timeout_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            timeout_secs: 10,
        }
    }
}

impl ClusterConfig {
    /// True when this node shares a PostgreSQL database with the other nodes of a cluster.
    pub fn is_cluster(&self) -> bool {
        self.store == StoreKind::Postgres
    }

    /// How long a fan-out claim lasts when other nodes may take the work over; `None` for a
    /// node alone with its store.
    pub fn fanout_takeover(&self) -> Option<std::time::Duration> {
        self.is_cluster()
            .then(|| std::time::Duration::from_secs(self.lease_secs))
    }
}

/// The checks that span `[cluster]`, `[postgres]`, `[redis]` and `[media]`.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let pg = &config.postgres;
    if let Some(url) = &pg.url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "postgres.url",
                why: "must start with postgres:// (like postgres://chatd@127.0.0.1:5432/chatd)"
                    .into(),
            });
        }
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            return Err(ConfigError::Invalid {
                key: "postgres.url",
                why: format!("not a usable PostgreSQL URL: {e}"),
            });
        }
    }
    if !(2..=3600).contains(&config.cluster.lease_secs) {
        return Err(ConfigError::Invalid {
            key: "cluster.lease_secs",
            why: "must be between 2 and 3600".into(),
        });
    }
    if !(1..=600).contains(&pg.timeout_secs) {
        return Err(ConfigError::Invalid {
            key: "postgres.timeout_secs",
            why: "must be between 1 and 600".into(),
        });
    }
    if !config.cluster.is_cluster() {
        return Ok(());
    }
    if pg.url.is_none() {
        return Err(ConfigError::Invalid {
            key: "postgres.url",
            why: "cluster.store = \"postgres\" needs the database's URL".into(),
        });
    }
    if config.redis.url.is_none() {
        return Err(ConfigError::Invalid {
            key: "redis.url",
            why: "cluster.store = \"postgres\" needs Redis: the nodes find each other's users \
                  and wake each other through it"
                .into(),
        });
    }
    if config.media.backend == MediaBackend::Fs && !config.media.fs.shared {
        return Err(ConfigError::Invalid {
            key: "media.fs.shared",
            why: "in a cluster every node must reach every file: use media.backend = \"s3\", \
                  or set media.fs.shared = true for a path all nodes share (an NFS mount)"
                .into(),
        });
    }
    if config.media.backend == MediaBackend::Fs {
        if config.media.fs.path.is_none() {
            return Err(ConfigError::Invalid {
                key: "media.fs.path",
                why: "in a cluster the shared directory must be named: the default is inside \
                      each node's own storage.path"
                    .into(),
            });
        }
        if config.media.fs.signing_key.is_none() {
            return Err(ConfigError::Invalid {
                key: "media.fs.signing_key",
                why: "in a cluster every node must sign and check media URLs with the same key: \
                      the default is generated per node"
                    .into(),
            });
        }
    }
    Ok(())
}
