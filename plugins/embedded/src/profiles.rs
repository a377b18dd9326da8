//! The profiles port over the key-value engine: `d/{user}` = the profile as JSON
//! (`{"name","avatar"}`, each left out when unset); no key while both are unset.

use std::sync::{Arc, Mutex};

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::profiles::{Profile, ProfileChange, ProfileStore};
use chatd_kv::{KvStore, Op};

use crate::accounts::{encode, failed, load};
use crate::keys;

/// Profiles kept in an embedded key-value store.
pub struct EmbeddedProfiles {
    store: Arc<dyn KvStore>,
    /// Makes a change's read and write one step within this process (the store's lock keeps
    /// other processes out), so two devices changing different fields lose neither change.
    write: Mutex<()>,
}

impl EmbeddedProfiles {
    /// Profiles in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedProfiles {
        EmbeddedProfiles {
            store,
            write: Mutex::new(()),
        }
    }
}

impl ProfileStore for EmbeddedProfiles {
    fn profile(&self, user: &str) -> Result<Profile, RecordError> {
        Ok(load(self.store.as_ref(), &keys::profile(user))?.unwrap_or_default())
    }

    fn change(&self, user: &str, change: &ProfileChange) -> Result<(), RecordError> {
        let key = keys::profile(user);
        {
            // Nothing inside can leave the lock's data half changed: a poisoned lock is fine.
            let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
            let old: Profile = load(self.store.as_ref(), &key)?.unwrap_or_default();
            let new = change.apply(old);
            let op = if new.is_empty() {
                Op::Delete(key)
            } else {
                Op::Put(key, encode(&new)?)
            };
            self.store.apply(vec![op]).map_err(failed)?;
        }
        self.store.flush().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::ports::profiles::FieldChange;

    // What every adapter must do is the conformance suite (`tests/records_conformance.rs`).
    #[test]
    fn a_profile_is_json_under_its_key_and_goes_when_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let profiles = EmbeddedProfiles::new(store.clone());
        let name = |name: FieldChange| ProfileChange {
            name,
            avatar: FieldChange::Keep,
        };
        profiles
            .change("bob", &name(FieldChange::Set("Bob".into())))
            .unwrap();
        assert_eq!(
            store.get(b"d/bob").unwrap(),
            Some(br#"{"name":"Bob"}"#.to_vec())
        );
        profiles.change("bob", &name(FieldChange::Clear)).unwrap();
        assert_eq!(store.get(b"d/bob").unwrap(), None);
    }
}
