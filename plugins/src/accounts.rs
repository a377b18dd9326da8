//! User accounts: who may log in with a password, and who exists as a message recipient.

use std::sync::{Arc, Mutex, OnceLock};

use chatd_auth::{AuthError, IdError};
use serde::{Deserialize, Serialize};

use crate::ids::now_ms;
use crate::keys;
use crate::store::{KvStore, Op, StoreError};
use crate::verified::VerifiedLogins;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The user id breaks the id rules.
    #[error("invalid user id: {0}")]
    InvalidId(#[from] IdError),
    /// The password breaks the password rules (or could not be hashed).
    #[error("invalid password: {0}")]
    InvalidPassword(#[from] AuthError),
    /// `add` for a user that already has an account.
    #[error("user already exists")]
    Exists,
    /// An operation on a user that has no account.
    #[error("no such user")]
    NotFound,
    /// The store failed, or holds a record that cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored form of an account (`u/{user}`).
#[derive(Serialize, Deserialize)]
struct Record {
    /// argon2id PHC string.
    hash: String,
    /// Creation time, ms since the epoch.
    created: u64,
}

/// Account management over a [`KvStore`]; cheap to clone and share between tasks.
///
/// Calls are blocking (argon2 hashing is deliberately slow): async callers run them on a
/// blocking thread.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn KvStore>,
    /// Serialises read-modify-write of account records within this process (the store's lock
    /// keeps other processes out), so two concurrent `add`s cannot both succeed.
    write: Arc<Mutex<()>>,
    /// Recent successful password logins (see [`VerifiedLogins`]).
    verified: Arc<VerifiedLogins>,
}

impl Accounts {
    /// Accounts kept in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> Accounts {
        Accounts {
            store,
            write: Arc::new(Mutex::new(())),
            verified: Arc::new(VerifiedLogins::default()),
        }
    }

    /// Creates an account; durable when it returns.
    pub fn add(&self, user: &str, password: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        chatd_auth::validate_password(password)?;
        let hash = chatd_auth::hash_password(password)?;
        let _guard = self.lock();
        if self.store.get(&keys::account(user))?.is_some() {
            return Err(AccountError::Exists);
        }
        self.write_record(user, hash, now_ms())
    }

    /// Replaces the password of an existing account; durable when it returns.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        chatd_auth::validate_password(password)?;
        let hash = chatd_auth::hash_password(password)?;
        let _guard = self.lock();
        let record = self.read(user)?.ok_or(AccountError::NotFound)?;
        self.verified.forget(user);
        self.write_record(user, hash, record.created)
    }

    /// Deletes an account; durable when it returns. Stored messages stay (the peers keep
    /// their history).
    pub fn remove(&self, user: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        let _guard = self.lock();
        if self.store.get(&keys::account(user))?.is_none() {
            return Err(AccountError::NotFound);
        }
        self.verified.forget(user);
        self.store.apply(vec![Op::Delete(keys::account(user))])?;
        self.store.flush()?;
        Ok(())
    }

    /// All user ids, sorted.
    pub fn list(&self) -> Result<Vec<String>, AccountError> {
        let start = keys::ACCOUNTS_PREFIX.as_bytes();
        let end = keys::prefix_end(keys::ACCOUNTS_PREFIX);
        let pairs = self.store.scan(start, &end, false, usize::MAX)?;
        Ok(pairs
            .into_iter()
            .filter_map(|(k, _)| {
                let user = k.get(start.len()..)?;
                String::from_utf8(user.to_vec()).ok()
            })
            .collect())
    }

    /// True when `user` has an account; false for ids that could never have one.
    pub fn exists(&self, user: &str) -> Result<bool, AccountError> {
        if chatd_auth::validate_user_id(user).is_err() {
            return Ok(false);
        }
        Ok(self.store.get(&keys::account(user))?.is_some())
    }

    /// True when `password` is the password of `user`; false for unknown users too (after
    /// the same amount of hashing work, so timing does not tell which users exist). A
    /// password verified for this user within the last hour is recognised without argon2.
    pub fn verify(&self, user: &str, password: &str) -> Result<bool, AccountError> {
        let record = match chatd_auth::validate_user_id(user) {
            Ok(()) => self.read(user)?,
            Err(_) => None,
        };
        match record {
            Some(r) => {
                if self.verified.matches(user, &r.hash, password) {
                    return Ok(true);
                }
                let ok = chatd_auth::verify_password(password, &r.hash);
                if ok {
                    self.verified.remember(user, &r.hash, password);
                }
                Ok(ok)
            }
            None => {
                let _ = chatd_auth::verify_password(password, dummy_hash());
                Ok(false)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`, so a poisoned lock holds nothing broken.
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, user: &str) -> Result<Option<Record>, AccountError> {
        match self.store.get(&keys::account(user))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                AccountError::Store(StoreError::Other(format!(
                    "account record of {user} is unreadable: {e}"
                )))
            }),
        }
    }

    fn write_record(&self, user: &str, hash: String, created: u64) -> Result<(), AccountError> {
        let value = serde_json::to_vec(&Record { hash, created })
            .map_err(|e| StoreError::Other(e.to_string()))?;
        self.store
            .apply(vec![Op::Put(keys::account(user), value)])?;
        self.store.flush()?;
        Ok(())
    }
}

/// A hash of a fixed password, computed once, to spend the same time on unknown users.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| chatd_auth::hash_password("not a real password").unwrap_or_default())
}
