//! The accounts port over the key-value engine: `u/{user}` = the account record as JSON,
//! `l/{skeleton}` = the user id holding a look-alike skeleton, `x/skeletons` once that index
//! is complete, `x/purge/{user}` while a removal's clean-up is pending.

use std::sync::{Arc, Mutex};

use crate::keys;
use chatd_core::ports::accounts::{AccountChange, AccountRecord, AccountStore, RecordError};
use chatd_kv::{KvStore, Op, StoreError};

/// A store failure as the ports report it (the store's own text).
pub(crate) fn failed(e: StoreError) -> RecordError {
    RecordError::Store(e.to_string())
}

/// Reads a JSON record under `key`; a record that does not decode is [`RecordError::Corrupt`].
pub(crate) fn load<T: serde::de::DeserializeOwned>(
    store: &dyn KvStore,
    key: &[u8],
) -> Result<Option<T>, RecordError> {
    match store.get(key).map_err(failed)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RecordError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                why: e.to_string(),
            }),
    }
}

/// Encodes a record as JSON for the store.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(value).map_err(|e| RecordError::Store(e.to_string()))
}

/// Accounts kept in an embedded key-value store.
pub struct EmbeddedAccounts {
    store: Arc<dyn KvStore>,
    /// Makes "held unless someone already holds it" one step within this process (the
    /// store's lock keeps other processes out).
    write: Mutex<()>,
}

impl EmbeddedAccounts {
    /// Accounts in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedAccounts {
        EmbeddedAccounts {
            store,
            write: Mutex::new(()),
        }
    }

    /// The operation that holds `skeleton` for `user`, unless someone holds it already.
    fn hold_skeleton(&self, skeleton: &str, user: &str) -> Result<Option<Op>, RecordError> {
        let key = keys::skeleton(skeleton);
        Ok(match self.store.get(&key).map_err(failed)? {
            Some(_) => None,
            None => Some(Op::Put(key, user.as_bytes().to_vec())),
        })
    }
}

impl AccountStore for EmbeddedAccounts {
    fn get(&self, user: &str) -> Result<Option<AccountRecord>, RecordError> {
        match self.store.get(&keys::account(user)).map_err(failed)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RecordError::Corrupt {
                        key: String::from_utf8_lossy(&keys::account(user)).into_owned(),
                        why: format!("account record of {user} is unreadable: {e}"),
                    })
            }
        }
    }

    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<AccountRecord>)>, RecordError> {
        let prefix = keys::ACCOUNTS_PREFIX;
        let start = match after {
            Some(user) => keys::successor(&keys::account(user)),
            None => prefix.as_bytes().to_vec(),
        };
        let rows = self
            .store
            .scan(&start, &keys::prefix_end(prefix), false, limit)
            .map_err(failed)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| {
                let user = std::str::from_utf8(key.get(prefix.len()..)?).ok()?;
                Some((user.to_string(), serde_json::from_slice(&value).ok()))
            })
            .collect())
    }

    fn skeleton_holder(&self, skeleton: &str) -> Result<Option<String>, RecordError> {
        Ok(self
            .store
            .get(&keys::skeleton(skeleton))
            .map_err(failed)?
            .map(|holder| String::from_utf8_lossy(&holder).into_owned()))
    }

    fn skeletons_indexed(&self) -> Result<bool, RecordError> {
        Ok(self
            .store
            .get(keys::SKELETONS_BUILT)
            .map_err(failed)?
            .is_some())
    }

    fn purge_pending(&self, user: &str) -> Result<bool, RecordError> {
        Ok(self
            .store
            .get(&keys::purge_marker(user))
            .map_err(failed)?
            .is_some())
    }

    fn write(&self, change: AccountChange) -> Result<(), RecordError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let ops = match change {
            AccountChange::Create {
                user,
                record,
                skeleton,
            } => {
                let mut ops = vec![Op::Put(keys::account(&user), encode(&record)?)];
                ops.extend(self.hold_skeleton(&skeleton, &user)?);
                ops
            }
            AccountChange::Update { user, record } => {
                vec![Op::Put(keys::account(&user), encode(&record)?)]
            }
            AccountChange::Remove { user, tombstone } => vec![
                Op::Put(keys::account(&user), encode(&tombstone)?),
                Op::Put(keys::purge_marker(&user), Vec::new()),
            ],
            AccountChange::IndexSkeletons(entries) => {
                let mut ops = Vec::with_capacity(entries.len() + 1);
                for (skeleton, user) in &entries {
                    ops.extend(self.hold_skeleton(skeleton, user)?);
                }
                ops.push(Op::Put(keys::SKELETONS_BUILT.to_vec(), b"1".to_vec()));
                ops
            }
        };
        self.store.apply(ops).map_err(failed)?;
        self.store.flush().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> (tempfile::TempDir, Arc<dyn KvStore>, EmbeddedAccounts) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        (dir, store.clone(), EmbeddedAccounts::new(store))
    }

    fn live(hash: &str) -> AccountRecord {
        AccountRecord {
            hash: Some(hash.to_string()),
            created: 7,
            removed: None,
            floor: None,
        }
    }

    // What every adapter must do is the conformance suite (`tests/records_conformance.rs`);
    // these check the key layout and records that cannot be read.

    #[test]
    fn records_are_kept_under_todays_keys() {
        let (_dir, store, a) = accounts();
        a.write(AccountChange::Create {
            user: "bob".into(),
            record: live("$h1"),
            skeleton: "b0b".into(),
        })
        .unwrap();
        assert_eq!(
            store.get(b"u/bob").unwrap().unwrap(),
            br#"{"hash":"$h1","created":7}"#.to_vec()
        );
        assert_eq!(store.get(b"l/b0b").unwrap().unwrap(), b"bob".to_vec());
        a.write(AccountChange::Remove {
            user: "bob".into(),
            tombstone: AccountRecord::default(),
        })
        .unwrap();
        assert_eq!(store.get(b"x/purge/bob").unwrap(), Some(Vec::new()));
        a.write(AccountChange::IndexSkeletons(Vec::new())).unwrap();
        assert_eq!(store.get(b"x/skeletons").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn an_unreadable_record_is_corrupt_and_listed_without_its_record() {
        let (_dir, store, a) = accounts();
        a.write(AccountChange::Create {
            user: "bob".into(),
            record: live("$h1"),
            skeleton: "b0b".into(),
        })
        .unwrap();
        store
            .apply(vec![Op::Put(b"u/carol".to_vec(), b"not json".to_vec())])
            .unwrap();
        assert!(matches!(a.get("carol"), Err(RecordError::Corrupt { .. })));
        assert_eq!(
            a.list(None, 10).unwrap(),
            vec![
                ("bob".to_string(), Some(live("$h1"))),
                ("carol".to_string(), None),
            ]
        );
    }
}
