//! [`PostgresStore`]: one connection check, then every storage port from it. The ports share
//! the adapter's runtime; the records ports also share one set of connections, while the log
//! keeps connections of its own, so that account, media and push calls never wait behind a
//! batch's commit.

use std::sync::Arc;

use crate::bridge::Bridge;
use crate::connect::Connector;
use crate::error::PgError;
use crate::log::{Options, PostgresLog};
use crate::records::{
    PostgresAccounts, PostgresLastSeen, PostgresMedia, PostgresProfiles, PostgresPush,
    PostgresSessions, Records,
};

/// The PostgreSQL store of a cluster node: hands out each storage port.
pub struct PostgresStore {
    connector: Connector,
    bridge: Arc<Bridge>,
    options: Options,
    records: Records,
}

impl PostgresStore {
    /// The store in the database at `url`, whose schema must be this build's (see
    /// [`crate::migrate`]); connects once to find out.
    pub fn open(url: &str, options: Options) -> Result<PostgresStore, PgError> {
        let connector = Connector::new(url)?;
        let bridge = Arc::new(Bridge::new(2, options.timeout)?);
        let records = Records::new(connector.clone(), bridge.clone(), options.readers);
        // Opening the writer's session checks the schema version.
        records.call(|c| async move { c.writer().await.map(drop) })?;
        Ok(PostgresStore {
            connector,
            bridge,
            options,
            records,
        })
    }

    /// The message log, with connections of its own (each call opens another log: a node
    /// takes one); connects once.
    pub fn log(&self) -> Result<PostgresLog, PgError> {
        PostgresLog::on(self.connector.clone(), self.bridge.clone(), &self.options)
    }

    /// The accounts port.
    pub fn accounts(&self) -> PostgresAccounts {
        PostgresAccounts {
            records: self.records.clone(),
        }
    }

    /// The last-seen port.
    pub fn last_seen(&self) -> PostgresLastSeen {
        PostgresLastSeen {
            records: self.records.clone(),
        }
    }

    /// The media records port.
    pub fn media(&self) -> PostgresMedia {
        PostgresMedia {
            records: self.records.clone(),
        }
    }

    /// The push tokens and push jobs ports (one adapter implements both).
    pub fn push(&self) -> PostgresPush {
        PostgresPush {
            records: self.records.clone(),
        }
    }

    /// The profiles port.
    pub fn profiles(&self) -> PostgresProfiles {
        PostgresProfiles {
            records: self.records.clone(),
        }
    }

    /// The kept MQTT sessions port.
    pub fn sessions(&self) -> PostgresSessions {
        PostgresSessions {
            records: self.records.clone(),
        }
    }
}
