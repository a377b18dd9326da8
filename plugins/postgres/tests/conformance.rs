//! The message-log port conformance suite (`chatd_core::ports::log_conformance`) against a
//! real PostgreSQL: the same checks the embedded store passes.

mod common;

use chatd_postgres::{Options, PostgresLog};

/// A log on a fresh, migrated database.
fn fresh() -> (PostgresLog, ()) {
    // As a cluster node connects: to whichever server of the URL takes writes.
    let url = format!(
        "{}?target_session_attrs=read-write",
        common::migrated_database()
    );
    let options = Options {
        readers: 2,
        ..Options::default()
    };
    (PostgresLog::open(&url, options).expect("open"), ())
}

chatd_core::log_conformance_tests!(fresh);
