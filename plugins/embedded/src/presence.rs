//! The last-seen port over the key-value engine: `p/{user}` = milliseconds since the epoch, as
//! decimal text.

use std::sync::Arc;

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::presence::LastSeenStore;
use chatd_kv::{KvStore, Op};

use crate::accounts::failed;

/// Last-seen times kept in an embedded key-value store.
pub struct EmbeddedLastSeen {
    store: Arc<dyn KvStore>,
}

impl EmbeddedLastSeen {
    /// Last-seen times in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedLastSeen {
        EmbeddedLastSeen { store }
    }
}

impl LastSeenStore for EmbeddedLastSeen {
    fn last_seen(&self, user: &str) -> Result<Option<u64>, RecordError> {
        Ok(self
            .store
            .get(&keys::last_seen(user))
            .map_err(failed)?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    fn set_last_seen(&self, user: &str, ms: u64) -> Result<(), RecordError> {
        self.store
            .apply(vec![Op::Put(
                keys::last_seen(user),
                ms.to_string().into_bytes(),
            )])
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What every adapter must do is the conformance suite (`tests/records_conformance.rs`).
    #[test]
    fn last_seen_is_kept_as_decimal_text() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let seen = EmbeddedLastSeen::new(store.clone());
        seen.set_last_seen("bob", 1_732_790_000_123).unwrap();
        assert_eq!(
            store.get(b"p/bob").unwrap(),
            Some(b"1732790000123".to_vec())
        );
    }
}
