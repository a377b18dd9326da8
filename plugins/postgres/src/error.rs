//! The adapter's errors, and how they reach the chat core: every one becomes
//! [`RecordError::Store`] with its text (the core tells only "the store failed" from "a record
//! is unreadable", and a failed commit goes down its failing-storage path either way).

use chatd_core::ports::accounts::RecordError;

/// Why the PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse as a PostgreSQL connection string.
    #[error("bad PostgreSQL URL: {0}")]
    Url(String),
    /// The server, the connection or a statement failed.
    #[error("PostgreSQL: {}", describe(.0))]
    Sql(#[from] tokio_postgres::Error),
    /// The database has no chatd schema yet.
    #[error("the database has no chatd schema: create it with `chatd db migrate`")]
    NoSchema,
    /// The database's schema is older than this build's.
    #[error("the database schema is version {found}, older than this build's {known}: upgrade it with `chatd db migrate`")]
    OldSchema {
        /// The version found.
        found: i32,
        /// The version this build writes.
        known: i32,
    },
    /// The database's schema is newer than this build knows: a newer chatd migrated it.
    #[error("the database schema is version {found}, newer than this build knows ({known}): run a newer chatd")]
    UnknownSchema {
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        known: i32,
    },
    /// A stored row could not be turned back into a record.
    #[error("corrupt {what}: {why}")]
    Corrupt {
        /// Which record, as the schema names it.
        what: String,
        /// The decoding error.
        why: String,
    },
    /// The adapter's own runtime could not run or finish the call.
    #[error("PostgreSQL adapter: {0}")]
    Runtime(String),
    /// The call took longer than the adapter's timeout (a server or network that hangs).
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// A client error with its cause: the client's own text is only the kind ("db error"), and
/// the server's message or the I/O error that says what happened is its source.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl From<PgError> for RecordError {
    fn from(e: PgError) -> RecordError {
        match e {
            PgError::Corrupt { what, why } => RecordError::Corrupt { key: what, why },
            other => RecordError::Store(other.to_string()),
        }
    }
}
