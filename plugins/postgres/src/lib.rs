//! chatd's PostgreSQL store: the storage ports of the chat core in PostgreSQL, the one durable
//! store of a cluster (see docs/architecture.md and docs/scaling.md). This first part holds
//! the message log ([`PostgresLog`]) and its schema ([`schema`], [`migrate`]).

pub mod bridge;
pub mod connect;
pub mod error;
pub mod log;
pub mod schema;
pub mod statements;

pub use error::PgError;
pub use log::{migrate, Options, PostgresLog};
