//! User accounts: who may log in with a password, and who exists as a message recipient.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chatd_auth::{AuthError, IdError};

use crate::live_accounts::LiveAccounts;
use crate::ports::accounts::{AccountChange, AccountRecord, AccountStore, RecordError};
use crate::verified::VerifiedLogins;
use chatd_wire::ids::now_ms;

/// Account records read per page while listing or indexing all accounts.
const PAGE: usize = 4096;

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
    /// `add` for an id whose look-alike skeleton another id holds (`ALICE` beside `alice`).
    #[error("user id is too similar to an existing id `{0}`")]
    TooSimilar(String),
    /// `add` for a removed id without `reclaim`: a removed id stays reserved until an
    /// administrator gives it out again explicitly.
    #[error("user id was removed; add it with reclaim to give it out again")]
    Removed,
    /// `add` with `reclaim` while the removed account's data is still being cleaned up.
    #[error("the removal of this user id is still being completed; retry shortly")]
    RemovalPending,
    /// The store failed, or holds a record that cannot be read.
    #[error(transparent)]
    Store(#[from] RecordError),
}

/// What the store says about one user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// Never created (or not a valid id).
    Missing,
    /// A live account; `floor` is set when the id was reclaimed after a removal.
    Live {
        /// No 1:1 message with an id at or below this belongs to this account.
        floor: Option<String>,
    },
    /// Removed: a tombstone holds the id.
    Removed,
}

/// Account management over an [`AccountStore`]; cheap to clone and share between tasks.
///
/// Calls are blocking (argon2 hashing is deliberately slow): async callers run them on a
/// blocking thread.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    /// Serialises read-modify-write of account records within this process (the store's lock
    /// keeps other processes out), so two concurrent `add`s cannot both succeed.
    write: Arc<Mutex<()>>,
    /// Recent successful password logins (see [`VerifiedLogins`]).
    verified: Arc<VerifiedLogins>,
    /// Accounts seen live, so that sends do not read their recipients' records
    /// (see [`LiveAccounts`]).
    live: Arc<LiveAccounts>,
}

impl Accounts {
    /// Accounts kept in `store`, which only this process writes (the embedded store, locked
    /// by it): the accounts it saw live are kept in memory.
    pub fn new(store: Arc<dyn AccountStore>) -> Accounts {
        Accounts {
            store,
            write: Arc::new(Mutex::new(())),
            verified: Arc::new(VerifiedLogins::default()),
            live: Arc::new(LiveAccounts::default()),
        }
    }

    /// Accounts kept in `store` that other processes write too (a cluster's database): an
    /// account another node removes must not stay live here, so every status is read.
    pub fn shared(store: Arc<dyn AccountStore>) -> Accounts {
        Accounts {
            live: Arc::new(LiveAccounts::off()),
            ..Accounts::new(store)
        }
    }

    /// Creates an account; durable when it returns. Refused for an id that exists, was removed
    /// (see [`Accounts::add_reclaiming`]) or looks like an existing one (same
    /// [`chatd_auth::skeleton`]).
    pub fn add(&self, user: &str, password: &str) -> Result<(), AccountError> {
        self.add_reclaiming(user, password, false)
    }

    /// [`Accounts::add`]; with `reclaim`, a removed id is given out again (its look-alike check
    /// is skipped: the id itself held the skeleton). The new account sees nothing of the old
    /// one's 1:1 history (its `floor` is the removal's).
    pub fn add_reclaiming(
        &self,
        user: &str,
        password: &str,
        reclaim: bool,
    ) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        chatd_auth::validate_password(password)?;
        // Refusals that need no hash are answered before hashing; they are checked again
        // under the lock.
        self.creatable(user, reclaim)?;
        let hash = chatd_auth::hash_password(password)?;
        self.create(user, Some(hash), reclaim)
    }

    /// Creates an account without a password, for a user who proved itself with a token:
    /// password logins fail until [`Accounts::set_password`] gives it one. Refused like
    /// [`Accounts::add`] (no reclaim); durable when it returns. No argon2 work: a first token
    /// login costs a store write, not a hash (and its memory).
    pub fn add_without_password(&self, user: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        self.create(user, None, false)
    }

    /// Writes a new live account record with `hash` (and its look-alike skeleton), after the
    /// refusals of [`Accounts::creatable`], under the write lock.
    fn create(&self, user: &str, hash: Option<String>, reclaim: bool) -> Result<(), AccountError> {
        let _guard = self.lock();
        self.ensure_skeletons()?;
        let floor = self.creatable(user, reclaim)?;
        let record = AccountRecord {
            hash,
            created: now_ms(),
            removed: None,
            floor,
        };
        let written = self.store.write(AccountChange::Create {
            user: user.to_string(),
            record,
            skeleton: chatd_auth::skeleton(user),
        });
        // A reclaimed id gets a new floor: read it from the store from now on.
        self.live.forget(user);
        written?;
        Ok(())
    }

    /// Whether `user` may be created now; for a reclaimed id, the floor its history starts at.
    fn creatable(&self, user: &str, reclaim: bool) -> Result<Option<String>, AccountError> {
        match self.read(user)? {
            Some(r) if r.live() => Err(AccountError::Exists),
            Some(_) if !reclaim => Err(AccountError::Removed),
            Some(tombstone) => {
                // The marker is read before the tombstone's floor: the clean-up writes the
                // floor before it deletes the marker.
                if self.store.purge_pending(user)? {
                    return Err(AccountError::RemovalPending);
                }
                let tombstone = self.read(user)?.unwrap_or(tombstone);
                Ok(tombstone.floor)
            }
            None => match self.store.skeleton_holder(&chatd_auth::skeleton(user))? {
                Some(holder) if holder != user => Err(AccountError::TooSimilar(holder)),
                _ => Ok(None),
            },
        }
    }

    /// Builds the look-alike index for accounts created before it existed (once per store;
    /// the first of two existing look-alikes holds the skeleton, both keep working).
    fn ensure_skeletons(&self) -> Result<(), AccountError> {
        if self.store.skeletons_indexed()? {
            return Ok(());
        }
        let mut taken = std::collections::HashSet::new();
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(after.as_deref(), PAGE)?;
            let full = page.len() >= PAGE;
            for (user, _) in page {
                let skeleton = chatd_auth::skeleton(&user);
                if taken.insert(skeleton.clone()) {
                    entries.push((skeleton, user.clone()));
                }
                after = Some(user);
            }
            if !full {
                break;
            }
        }
        self.store.write(AccountChange::IndexSkeletons(entries))?;
        Ok(())
    }

    /// Sets or replaces the password of an existing account (one created by a token login
    /// included); durable when it returns.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        chatd_auth::validate_password(password)?;
        let hash = chatd_auth::hash_password(password)?;
        let _guard = self.lock();
        let record = self
            .read(user)?
            .filter(AccountRecord::live)
            .ok_or(AccountError::NotFound)?;
        self.verified.forget(user);
        self.write_record(
            user,
            AccountRecord {
                hash: Some(hash),
                ..record
            },
        )
    }

    /// Removes an account; durable when it returns. The record becomes a tombstone (the id
    /// stays reserved: logins, JWT logins, sends and `add` without reclaim are refused) and the
    /// clean-up of the user's data is marked as pending (`x/purge/{user}`); the messaging
    /// service does it (`Chat::purge_account`, or at the next start). Stored messages stay
    /// (the peers keep their history).
    pub fn remove(&self, user: &str) -> Result<(), AccountError> {
        chatd_auth::validate_user_id(user)?;
        let _guard = self.lock();
        let record = self
            .read(user)?
            .filter(AccountRecord::live)
            .ok_or(AccountError::NotFound)?;
        self.verified.forget(user);
        let tombstone = AccountRecord {
            hash: None,
            created: record.created,
            removed: Some(now_ms()),
            floor: None,
        };
        let written = self.store.write(AccountChange::Remove {
            user: user.to_string(),
            tombstone,
        });
        // After the write (failed or not), so that no read from before it stays cached.
        self.live.forget(user);
        written?;
        Ok(())
    }

    /// The tombstone of `user` with the clean-up's `floor` recorded (the id below which a
    /// later owner of the id sees no 1:1 history); `None` unless `user` is removed. For the
    /// committer's clean-up batch, which writes it together with the rest of the clean-up.
    pub fn purged_record(
        &self,
        user: &str,
        floor: &str,
    ) -> Result<Option<AccountRecord>, AccountError> {
        let Some(record) = self.read(user)?.filter(|r| r.removed.is_some()) else {
            return Ok(None);
        };
        Ok(Some(AccountRecord {
            floor: Some(floor.to_string()),
            ..record
        }))
    }

    /// True while the clean-up after the removal of `user` is still pending.
    pub fn purge_pending(&self, user: &str) -> Result<bool, AccountError> {
        Ok(self.store.purge_pending(user)?)
    }

    /// Whether `user` has a live account, a tombstone, or nothing.
    pub fn status(&self, user: &str) -> Result<AccountStatus, AccountError> {
        if chatd_auth::validate_user_id(user).is_err() {
            return Ok(AccountStatus::Missing);
        }
        if let Some(floor) = self.live.get(user) {
            return Ok(AccountStatus::Live { floor });
        }
        let generation = self.live.generation();
        Ok(match self.read(user)? {
            None => AccountStatus::Missing,
            Some(r) if r.live() => {
                self.live.remember(user, r.floor.clone(), generation);
                AccountStatus::Live { floor: r.floor }
            }
            Some(_) => AccountStatus::Removed,
        })
    }

    /// All user ids, sorted.
    pub fn list(&self) -> Result<Vec<String>, AccountError> {
        let mut users = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(after.as_deref(), PAGE)?;
            let full = page.len() >= PAGE;
            for (user, record) in page {
                if record.is_some_and(|r| r.live()) {
                    users.push(user.clone());
                }
                after = Some(user);
            }
            if !full {
                return Ok(users);
            }
        }
    }

    /// [`Accounts::exists`] of each of `users`, read from the store together (one round trip
    /// to a database) for those not known live already.
    pub fn exists_many(&self, users: &[String]) -> Result<HashMap<String, bool>, AccountError> {
        let mut known = HashMap::with_capacity(users.len());
        let mut ask = Vec::new();
        for user in users {
            if chatd_auth::validate_user_id(user).is_err() {
                known.insert(user.clone(), false);
            } else if self.live.get(user).is_some() {
                known.insert(user.clone(), true);
            } else {
                ask.push(user.clone());
            }
        }
        if ask.is_empty() {
            return Ok(known);
        }
        let generation = self.live.generation();
        let records = self.store.get_many(&ask)?;
        for user in ask {
            let live = match records.get(&user) {
                Some(r) if r.live() => {
                    self.live.remember(&user, r.floor.clone(), generation);
                    true
                }
                _ => false,
            };
            known.insert(user, live);
        }
        Ok(known)
    }

    /// True when `user` has a live account; false for removed ids and for ids that could
    /// never have one.
    pub fn exists(&self, user: &str) -> Result<bool, AccountError> {
        Ok(matches!(self.status(user)?, AccountStatus::Live { .. }))
    }

    /// True when `password` is the password of `user`; false for unknown users too (after
    /// the same amount of hashing work, so timing does not tell which users exist) and for
    /// accounts without a password (created by a token login). A password verified for this user within the last hour is recognised without argon2.
    pub fn verify(&self, user: &str, password: &str) -> Result<bool, AccountError> {
        let record = match chatd_auth::validate_user_id(user) {
            Ok(()) => self.read(user)?.filter(AccountRecord::live),
            Err(_) => None,
        };
        match record.and_then(|r| r.hash) {
            Some(hash) => {
                if self.verified.matches(user, &hash, password) {
                    return Ok(true);
                }
                let ok = chatd_auth::verify_password(password, &hash);
                if ok {
                    self.verified.remember(user, &hash, password);
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

    fn read(&self, user: &str) -> Result<Option<AccountRecord>, AccountError> {
        Ok(self.store.get(user)?)
    }

    fn write_record(&self, user: &str, record: AccountRecord) -> Result<(), AccountError> {
        self.store.write(AccountChange::Update {
            user: user.to_string(),
            record,
        })?;
        Ok(())
    }
}

/// A hash of a fixed password, computed once, to spend the same time on unknown users.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| chatd_auth::hash_password("not a real password").unwrap_or_default())
}
