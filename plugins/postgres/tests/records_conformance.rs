//! The records ports' conformance suites (`chatd_core::ports::records_conformance`) against a
//! real PostgreSQL: the same checks the embedded store passes, every port handed out by one
//! [`PostgresStore`].

mod common;

use std::sync::Arc;

use chatd_core::ports::records_conformance::Ports;
use chatd_postgres::{Options, PostgresStore};

/// Every port of a store on a fresh, migrated database.
fn fresh() -> (Ports, ()) {
    let url = format!(
        "{}?target_session_attrs=read-write",
        common::migrated_database()
    );
    let options = Options {
        readers: 2,
        ..Options::default()
    };
    let store = PostgresStore::open(&url, options).expect("open");
    let push = Arc::new(store.push());
    let ports = Ports {
        log: Arc::new(store.log().expect("log")),
        accounts: Arc::new(store.accounts()),
        last_seen: Arc::new(store.last_seen()),
        media: Arc::new(store.media()),
        tokens: push.clone(),
        jobs: push,
        sessions: Arc::new(store.sessions()),
        profiles: Arc::new(store.profiles()),
    };
    (ports, ())
}

chatd_core::accounts_conformance_tests!(fresh);
chatd_core::presence_conformance_tests!(fresh);
chatd_core::media_conformance_tests!(fresh);
chatd_core::push_conformance_tests!(fresh);
chatd_core::removal_conformance_tests!(fresh);
chatd_core::sessions_conformance_tests!(fresh);
chatd_core::profiles_conformance_tests!(fresh);
