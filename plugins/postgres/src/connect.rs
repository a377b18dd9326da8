//! Connections: parsed once from a `postgres://…` URL, opened lazily, and opened again after a
//! lost connection. A [`Slot`] holds one connection for one role; a call that finds its
//! connection closed (the server restarted, a failover, a network cut) opens a new one first,
//! so the call after a failure reconnects, and the failure itself reaches the caller as an
//! error (a failed commit goes down the committer's failing-storage path).
//!
//! TLS is not supported yet (`NoTls`): the store is reached over a private network or a
//! Unix socket.

use std::collections::HashMap;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::error::PgError;
use crate::schema;
use crate::statements::Statements;

/// What a connection is used for, which sets how its commits are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Batches, claims and purges: `synchronous_commit = on`, so a commit is durable (and,
    /// with a synchronous standby, on two machines) when it returns.
    Durable,
    /// Dequeues and last-seen times only: `synchronous_commit = off`, because a lost dequeue
    /// is a redelivery, which clients de-duplicate, a lost last-seen time loses no message,
    /// and the session task waiting on either should not wait for a disk flush.
    Lazy,
}

/// Where the store is.
#[derive(Clone)]
pub struct Connector {
    config: Config,
}

impl Connector {
    /// Parses `url` (`postgres://user@host:port/db?…`, `target_session_attrs` included).
    pub fn new(url: &str) -> Result<Connector, PgError> {
        let config = url
            .parse::<Config>()
            .map_err(|e| PgError::Url(e.to_string()))?;
        Ok(Connector { config })
    }

    /// A new connection, its driver spawned on the current runtime.
    pub async fn client(&self) -> Result<Client, PgError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            // The client sees the closed connection and the next call reconnects.
            if let Err(e) = connection.await {
                tracing::warn!("PostgreSQL connection lost: {e}");
            }
        });
        Ok(client)
    }
}

/// How long the server keeps a transaction whose client went quiet before it ends the
/// session. A node's transactions are pipelined and never wait on anything but the server,
/// so only a node that stopped (SIGSTOP, a VM paused, a network cut) gets near this.
const IDLE_IN_TRANSACTION: &str = "SET idle_in_transaction_session_timeout TO '5s'";

/// One open connection with its prepared statements.
pub struct Session {
    /// The connection.
    pub client: Client,
    /// Every statement of the log, prepared on it.
    pub st: Statements,
    /// Statements prepared on first use: history range reads (one per shape of bounds) and
    /// the records ports' statements.
    cached: HashMap<String, Statement>,
}

impl Session {
    /// Connects for `role`, refusing a database whose schema this build does not know.
    async fn open(connector: &Connector, role: Role) -> Result<Session, PgError> {
        let client = connector.client().await?;
        let setting = match role {
            Role::Durable => "SET synchronous_commit TO on",
            Role::Lazy => "SET synchronous_commit TO off",
        };
        client.batch_execute(setting).await?;
        // A node that stops mid-transaction (paused, or cut off) must not hold its row locks
        // for long: the server ends such a session, rolling back what it had not committed.
        client.batch_execute(IDLE_IN_TRANSACTION).await?;
        schema::check(&client).await?;
        let st = Statements::prepare(&client).await?;
        Ok(Session {
            client,
            st,
            cached: HashMap::new(),
        })
    }

    /// The statement for `sql`, prepared on first use.
    pub async fn prepared(&mut self, sql: String) -> Result<Statement, PgError> {
        if let Some(st) = self.cached.get(&sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(&sql).await?;
        self.cached.insert(sql, st.clone());
        Ok(st)
    }

    /// The statement for a constant `sql`, prepared on first use (no allocation once cached).
    pub async fn statement(&mut self, sql: &'static str) -> Result<Statement, PgError> {
        if let Some(st) = self.cached.get(sql) {
            return Ok(st.clone());
        }
        self.prepared(sql.to_string()).await
    }
}

/// One connection for one role, opened on first use and after it was lost.
pub struct Slot {
    role: Role,
    session: Mutex<Option<Session>>,
}

impl Slot {
    /// An empty slot for `role`.
    pub fn new(role: Role) -> Slot {
        Slot {
            role,
            session: Mutex::new(None),
        }
    }

    /// The slot's session, connected first when it has none or its connection closed; held
    /// exclusively until the guard drops.
    pub async fn session(
        &self,
        connector: &Connector,
    ) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            *guard = None;
            *guard = Some(Session::open(connector, self.role).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| PgError::Runtime("a connection vanished".into()))
    }
}
