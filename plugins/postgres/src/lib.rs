//! chatd's PostgreSQL store: the storage ports of the chat core in PostgreSQL, the one durable
//! store of a cluster (see docs/architecture.md and docs/scaling.md): the message log
//! ([`PostgresLog`]), the records ports ([`records`]), the schema ([`schema`], [`migrate`]),
//! and [`PostgresStore`], which hands out every port from one connection check.

pub mod bridge;
pub mod connect;
pub mod error;
pub mod log;
pub mod records;
pub mod schema;
pub mod statements;
pub mod store;

pub use error::PgError;
pub use log::{migrate, Options, PostgresLog};
pub use records::{
    PostgresAccounts, PostgresLastSeen, PostgresMedia, PostgresProfiles, PostgresPush,
    PostgresSessions,
};
pub use store::PostgresStore;
