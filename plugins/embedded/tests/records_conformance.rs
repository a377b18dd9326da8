//! The records ports' conformance suites (`chatd_core::ports::records_conformance`) against
//! the embedded store: the same checks every adapter of the ports passes.

use std::sync::Arc;

use chatd_core::ports::records_conformance::Ports;
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_embedded::log::EmbeddedLog;
use chatd_embedded::media::EmbeddedMedia;
use chatd_embedded::presence::EmbeddedLastSeen;
use chatd_embedded::profiles::EmbeddedProfiles;
use chatd_embedded::push::EmbeddedPush;
use chatd_embedded::sessions::EmbeddedSessions;
use chatd_kv::{Engine, EngineConfig, KvStore};

/// Every port over one store of the default engine in a fresh temporary directory, kept as
/// long as the ports.
fn fresh() -> (Ports, tempfile::TempDir) {
    fresh_on(Engine::default())
}

/// [`fresh`] on `engine`.
fn fresh_on(engine: Engine) -> (Ports, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn KvStore> =
        chatd_kv::open(&EngineConfig::new(engine, dir.path())).expect("store");
    let log = EmbeddedLog::open(store.clone()).expect("open");
    let push = Arc::new(EmbeddedPush::new(store.clone()).seeing(log.held_entries()));
    let ports = Ports {
        log: Arc::new(log),
        accounts: Arc::new(EmbeddedAccounts::new(store.clone())),
        last_seen: Arc::new(EmbeddedLastSeen::new(store.clone())),
        media: Arc::new(EmbeddedMedia::new(store.clone())),
        profiles: Arc::new(EmbeddedProfiles::new(store.clone())),
        sessions: Arc::new(EmbeddedSessions::new(store)),
        tokens: push.clone(),
        jobs: push,
    };
    (ports, dir)
}

chatd_core::accounts_conformance_tests!(fresh);
chatd_core::presence_conformance_tests!(fresh);
chatd_core::media_conformance_tests!(fresh);
chatd_core::push_conformance_tests!(fresh);
chatd_core::removal_conformance_tests!(fresh);
chatd_core::sessions_conformance_tests!(fresh);
chatd_core::profiles_conformance_tests!(fresh);

/// The media records on sled too, which older data directories still run on: its values are
/// the same JSON, but a record with a preview is the largest value the media port writes.
mod on_sled {
    use chatd_core::ports::records_conformance::Ports;
    use chatd_kv::Engine;

    fn fresh() -> (Ports, tempfile::TempDir) {
        super::fresh_on(Engine::Sled)
    }

    chatd_core::media_conformance_tests!(fresh);
}
