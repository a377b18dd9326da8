//! The message-log port conformance suite (`chatd_core::ports::log_conformance`) against the
//! embedded store: the same checks every adapter of the port passes.

use chatd_embedded::log::EmbeddedLog;
use chatd_kv::{Engine, EngineConfig};

/// A log in a fresh temporary directory, kept as long as the log.
fn fresh() -> (EmbeddedLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path())).expect("store");
    (EmbeddedLog::open(store).expect("open"), dir)
}

chatd_core::log_conformance_tests!(fresh);
