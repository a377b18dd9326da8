//! The node's storage: every storage port of the chat core, from the embedded store (one
//! node, the default) or from the cluster's PostgreSQL database (`cluster.store =
//! "postgres"`). This is the one place that knows which; everything after it speaks to ports.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use chatd_core::ports::accounts::AccountStore;
use chatd_core::ports::log::MessageLog;
use chatd_core::ports::media::MediaRecords;
use chatd_core::ports::presence::LastSeenStore;
use chatd_core::ports::profiles::ProfileStore;
use chatd_core::ports::push::{PushJobs, PushTokens};
use chatd_core::ports::sessions::SessionStore;
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_embedded::log::EmbeddedLog;
use chatd_embedded::log::HeldEntries;
use chatd_embedded::media::EmbeddedMedia;
use chatd_embedded::presence::EmbeddedLastSeen;
use chatd_embedded::profiles::EmbeddedProfiles;
use chatd_embedded::push::EmbeddedPush;
use chatd_embedded::sessions::EmbeddedSessions;
use chatd_kv::{GuardedStore, KvStore, StoreError, StoreHealth};
use chatd_postgres::PostgresStore;

use crate::config::{Config, StoreKind};
use crate::server::open_guarded_store;

/// Every storage port, and the health of what is under them.
pub struct Stores {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Messages, queues, receipts, groups.
    pub log: Arc<dyn MessageLog>,
    /// Last-seen times.
    pub last_seen: Arc<dyn LastSeenStore>,
    /// Media records.
    pub media: Arc<dyn MediaRecords>,
    /// Push jobs.
    pub push_jobs: Arc<dyn PushJobs>,
    /// Push device tokens.
    pub push_tokens: Arc<dyn PushTokens>,
    /// Kept (persistent) MQTT sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Profiles (display names, avatars).
    pub profiles: Arc<dyn ProfileStore>,
    /// Whether the store takes durable writes (for `/healthz` and `/metrics`).
    pub health: Arc<StoreHealth>,
    /// The queue entries the embedded log holds in memory (for `/metrics`); none on PostgreSQL.
    pub held: Option<Arc<HeldEntries>>,
}

/// Opens the configured store and every port on it.
pub fn open(config: &Config) -> Result<Stores> {
    match config.cluster.store {
        StoreKind::Embedded => embedded(config),
        StoreKind::Postgres => postgres(config),
    }
}

fn embedded(config: &Config) -> Result<Stores> {
    let dir = &config.storage.path;
    let guarded: Arc<GuardedStore> = match open_guarded_store(config) {
        Ok(store) => store,
        Err(StoreError::Locked) => {
            return Err(anyhow!(
                "another chatd is already using {} (the store is locked)",
                dir.display()
            ))
        }
        Err(e) => {
            return Err(anyhow!(e).context(format!("cannot open the store in {}", dir.display())))
        }
    };
    let health = guarded.health();
    on_embedded(guarded, health)
}

/// Every port on an embedded store already open (the offline commands open it unguarded).
pub fn on_embedded(store: Arc<dyn KvStore>, health: Arc<StoreHealth>) -> Result<Stores> {
    let log = EmbeddedLog::open(store.clone()).context("cannot open the message log")?;
    // Push asks whether a message is still queued: held entries are.
    let held = log.held_entries();
    let push = Arc::new(EmbeddedPush::new(store.clone()).seeing(held.clone()));
    Ok(Stores {
        accounts: Arc::new(EmbeddedAccounts::new(store.clone())),
        log: Arc::new(log),
        last_seen: Arc::new(EmbeddedLastSeen::new(store.clone())),
        media: Arc::new(EmbeddedMedia::new(store.clone())),
        profiles: Arc::new(EmbeddedProfiles::new(store.clone())),
        sessions: Arc::new(EmbeddedSessions::new(store)),
        push_jobs: push.clone(),
        push_tokens: push,
        health,
        held: Some(held),
    })
}

/// `url` with `application_name=chatd-node-{node}` unless it names one already, so that
/// `pg_stat_activity` shows which node holds which connection.
fn named(url: &str, node: u16) -> String {
    if url.contains("application_name=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name=chatd-node-{node}")
}

fn postgres(config: &Config) -> Result<Stores> {
    let url = config
        .postgres
        .url
        .as_deref()
        .ok_or_else(|| anyhow!("config key `postgres.url` is not set"))?;
    let options = chatd_postgres::Options {
        timeout: std::time::Duration::from_secs(config.postgres.timeout_secs),
        ..chatd_postgres::Options::default()
    };
    let url = named(url, config.node.id);
    let store = PostgresStore::open(&url, options).context("cannot open the PostgreSQL store")?;
    let push = Arc::new(store.push());
    Ok(Stores {
        accounts: Arc::new(store.accounts()),
        log: Arc::new(store.log().context("cannot open the message log")?),
        last_seen: Arc::new(store.last_seen()),
        media: Arc::new(store.media()),
        sessions: Arc::new(store.sessions()),
        profiles: Arc::new(store.profiles()),
        push_jobs: push.clone(),
        push_tokens: push,
        health: Arc::new(StoreHealth::default()),
        held: None,
    })
}

/// How often the health of a PostgreSQL store is looked at.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps `health` in step with a log that knows when it fails (PostgreSQL: a commit failed
/// and no recovery succeeded since), until `stop`. The embedded store reports its own.
pub fn watch_health(
    config: &Config,
    log: Arc<dyn MessageLog>,
    health: Arc<StoreHealth>,
    stop: tokio_util::sync::CancellationToken,
) {
    if config.cluster.store != StoreKind::Postgres {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(HEALTH_EVERY) => {}
            }
            if log.failing() {
                if health.fail("PostgreSQL does not take commits".into()) {
                    tracing::error!("storage failing: PostgreSQL does not take commits; sends are answered `unavailable` until it does");
                }
            } else if health.succeed() {
                tracing::info!("storage recovered: PostgreSQL takes commits again");
            }
        }
    });
}
