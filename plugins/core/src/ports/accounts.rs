//! The accounts port: account records (a live account or the tombstone a removal leaves), the
//! look-alike index that refuses an id too similar to an existing one, and the marker of a
//! removal whose clean-up is still pending. Every change is one [`AccountChange`], carried out
//! atomically and durably by the store.
//!
//! The error type [`RecordError`] is shared by the accounts, last-seen, media and push ports.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Why a store behind the accounts, last-seen, media or push ports failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store itself failed (I/O, engine); the text is the store's.
    #[error("{0}")]
    Store(String),
    /// A stored record could not be read back.
    #[error("corrupt record under {key}: {why}")]
    Corrupt {
        /// Where the record is kept, as the store names it.
        key: String,
        /// The decoding error.
        why: String,
    },
}

/// The stored form of an account: a live account, or the tombstone a removal leaves
/// (`removed`), which keeps the id from being claimed again by accident.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// argon2id PHC string; absent in a tombstone and in an account created by a token login
    /// (it has no password until an administrator sets one, and password logins fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Creation time, ms since the epoch.
    #[serde(default)]
    pub created: u64,
    /// When the account was removed, ms since the epoch: this record is a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// The id below which this account sees no 1:1 history: set when a removed id is given
    /// out again, so that the new owner never sees what the old one exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
}

impl AccountRecord {
    /// True for a live account, false for a tombstone.
    pub fn live(&self) -> bool {
        self.removed.is_none()
    }
}

/// One change to the accounts, written atomically and durably (all of it or nothing, on disk
/// when [`AccountStore::write`] returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountChange {
    /// A new account (or a removed id given out again): its record, and the look-alike
    /// `skeleton` held by `user` unless someone already holds it.
    Create {
        /// The user id.
        user: String,
        /// The new live record.
        record: AccountRecord,
        /// `chatd_auth::skeleton` of the id.
        skeleton: String,
    },
    /// Replaces the record of an existing account (a new password).
    Update {
        /// The user id.
        user: String,
        /// The record that replaces the stored one.
        record: AccountRecord,
    },
    /// The account becomes `tombstone` and the clean-up of its data is marked as pending,
    /// together.
    Remove {
        /// The user id.
        user: String,
        /// The tombstone that replaces the live record.
        tombstone: AccountRecord,
    },
    /// The look-alike index for accounts from before it existed: each `(skeleton, user)`
    /// held by that user unless someone already holds it, and the index marked complete.
    IndexSkeletons(Vec<(String, String)>),
}

/// Where accounts are kept.
pub trait AccountStore: Send + Sync + 'static {
    /// The record of `user`, live or tombstone, if any.
    fn get(&self, user: &str) -> Result<Option<AccountRecord>, RecordError>;

    /// The records of those of `users` that have one ([`AccountStore::get`] for many users;
    /// a store a network away answers them in one round trip).
    fn get_many(&self, users: &[String]) -> Result<HashMap<String, AccountRecord>, RecordError> {
        let mut found = HashMap::with_capacity(users.len());
        for user in users {
            if let Some(record) = self.get(user)? {
                found.insert(user.clone(), record);
            }
        }
        Ok(found)
    }

    /// Up to `limit` user ids with a record, in id order, after `after` (from the start when
    /// `None`); each with its record, or `None` when the record cannot be read.
    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<AccountRecord>)>, RecordError>;

    /// The user id that holds this look-alike skeleton, if any.
    fn skeleton_holder(&self, skeleton: &str) -> Result<Option<String>, RecordError>;

    /// True once every account has its look-alike entry ([`AccountChange::IndexSkeletons`]
    /// was written).
    fn skeletons_indexed(&self) -> Result<bool, RecordError>;

    /// True while the clean-up after the removal of `user` is still pending.
    fn purge_pending(&self, user: &str) -> Result<bool, RecordError>;

    /// Carries out `change` atomically; durable when it returns.
    fn write(&self, change: AccountChange) -> Result<(), RecordError>;
}
