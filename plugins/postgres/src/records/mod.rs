//! The records ports in PostgreSQL: accounts, last-seen times, media records, push tokens,
//! push jobs, kept MQTT sessions and profiles. They share one set of connections and the adapter's runtime (see
//! [`crate::PostgresStore`], which hands them out); each port is a cheap handle on it.
//!
//! Every write is one transaction on the durable connection, committed (and so durable)
//! before it returns, except last-seen times, which go through the lazy connection because
//! the port allows them to be lost in a crash. Statements are constants of each port's file,
//! prepared on a connection the first time it runs them.

mod accounts;
mod media;
mod presence;
mod profiles;
mod push;
mod push_jobs;
mod sessions;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::MappedMutexGuard;

use crate::bridge::Bridge;
use crate::connect::{Connector, Role, Session, Slot};
use crate::error::PgError;

pub use accounts::PostgresAccounts;
pub use media::PostgresMedia;
pub use presence::PostgresLastSeen;
pub use profiles::PostgresProfiles;
pub use push::PostgresPush;
pub use sessions::PostgresSessions;

/// The connections the records ports share.
pub(crate) struct Conns {
    connector: Connector,
    /// Writes and claims (`synchronous_commit = on`).
    writer: Slot,
    /// Last-seen times (`synchronous_commit = off`).
    lazy: Slot,
    /// Reads, used in turn.
    readers: Vec<Slot>,
    /// The reader the next read takes.
    next: AtomicUsize,
}

impl Conns {
    /// The writer's session.
    pub(crate) async fn writer(&self) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        self.writer.session(&self.connector).await
    }

    /// The lazy writer's session.
    pub(crate) async fn lazy(&self) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        self.lazy.session(&self.connector).await
    }

    /// A reader's session, taken in turn.
    pub(crate) async fn reader(&self) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(n) {
            Some(slot) => slot.session(&self.connector).await,
            None => self.writer().await,
        }
    }
}

/// What every records port holds: the shared connections and the runtime that drives them.
#[derive(Clone)]
pub(crate) struct Records {
    conns: Arc<Conns>,
    bridge: Arc<Bridge>,
}

impl Records {
    /// Records reached through `connector` with `readers` read connections (none opened yet).
    pub(crate) fn new(connector: Connector, bridge: Arc<Bridge>, readers: usize) -> Records {
        Records {
            conns: Arc::new(Conns {
                connector,
                writer: Slot::new(Role::Durable),
                lazy: Slot::new(Role::Lazy),
                readers: (0..readers.max(1))
                    .map(|_| Slot::new(Role::Durable))
                    .collect(),
                next: AtomicUsize::new(0),
            }),
            bridge,
        }
    }

    /// Runs `f` on the adapter's runtime and waits for it.
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conns>) -> Fut,
        Fut: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        self.bridge.run(f(self.conns.clone()))
    }
}

/// A row count limit as SQL wants it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A record stored as JSON text; `what` names it in the error.
fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, PgError> {
    serde_json::from_str(text).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// The JSON text of a record.
fn encode<T: serde::Serialize>(record: &T, what: &str) -> Result<String, PgError> {
    serde_json::to_string(record).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        why: e.to_string(),
    })
}
