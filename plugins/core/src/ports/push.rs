//! The push port: the jobs messaging leaves for users with no device online (one per message
//! and recipient), claimed by a push worker with a lease so that two workers sharing a store
//! never send the same notification; the device tokens users register; and the little a
//! notification says about the conversation (newest message, unread count, whether it is
//! still undelivered).
//!
//! Jobs are claimed a (user, conversation) pair at a time, so that a burst of messages
//! becomes one notification: a pair is due once its oldest job is older than the collapse
//! window, and while one claim of a pair is held no other claim gets that pair (jobs that
//! arrive meanwhile wait for the next claim).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::accounts::RecordError;

/// The pending jobs of one (user, conversation) pair, as claimed together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobGroup {
    /// The recipient.
    pub user: String,
    /// `d:{a}:{b}` or `g:{group}`.
    pub conversation: String,
    /// Message ids, oldest first.
    pub ids: Vec<String>,
    /// Where each message of `ids` waits in the user's queue, in the same order: its own id
    /// for a 1:1 message, the fan-out slice's id for a group message.
    pub queued: Vec<String>,
}

impl JobGroup {
    /// When the oldest job was accepted (ms since the epoch, from its message id); 0 when the
    /// id carries no readable time, which makes the group due at once.
    pub fn oldest_ms(&self) -> u64 {
        self.ids.first().map_or(0, |id| id_ms(id))
    }

    /// The group's identity: (user, conversation).
    pub fn key(&self) -> (String, String) {
        (self.user.clone(), self.conversation.clone())
    }
}

/// The acceptance time carried by a message id's first 13 characters (0 when unreadable).
pub fn id_ms(id: &str) -> u64 {
    id.get(..13).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// What one [`PushJobs::claim`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The due groups now claimed by the caller, in (user, conversation) order.
    pub groups: Vec<JobGroup>,
    /// The earliest time (ms since the epoch) an unclaimed group that is not yet due becomes
    /// due.
    pub next_due: Option<u64>,
    /// Due work was left: more due groups than `limit`, or new jobs for a pair whose claim is
    /// still held.
    pub deferred: bool,
}

/// What a notification may say about the newest message of a group (string fields of the
/// stored message; all `None` when it cannot be read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageNotice {
    /// The sender.
    pub from: Option<String>,
    /// The group of a group message.
    pub group: Option<String>,
    /// The message type (`text`, `image`, …).
    pub kind: Option<String>,
    /// The text of a text message.
    pub text: Option<String>,
}

impl MessageNotice {
    /// What a notification may say, read from a stored message's JSON (all `None` when it is
    /// missing or unreadable).
    pub fn from_stored(stored: Option<&[u8]>) -> MessageNotice {
        let message =
            stored.and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok());
        let field = |name: &str| {
            message
                .as_ref()
                .and_then(|m| m.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        MessageNotice {
            from: field("from"),
            group: field("group"),
            kind: field("type"),
            text: field("text"),
        }
    }
}

/// Push jobs and what a notification needs to know.
pub trait PushJobs: Send + Sync + 'static {
    /// Claims for `owner`, for `lease`, up to `limit` due groups: pairs whose oldest job was
    /// accepted at least `window` ago and that no unexpired claim holds. A claimed group is
    /// handed to no other claim until [`PushJobs::finish`], [`PushJobs::release`] or the end
    /// of the lease. Jobs that cannot be read are dropped.
    fn claim(
        &self,
        owner: &str,
        lease: Duration,
        window: Duration,
        limit: usize,
    ) -> Result<Claim, RecordError>;

    /// The group was handled: deletes exactly its jobs and ends the claim. Need not be durable:
    /// a job that comes back after a crash is pushed once more, which the notification's
    /// collapse id makes harmless.
    fn finish(&self, owner: &str, group: &JobGroup) -> Result<(), RecordError>;

    /// Ends the claim without deleting the jobs (interrupted: the next claim gets them).
    fn release(&self, owner: &str, group: &JobGroup);

    /// True while `user`'s queue still holds the entry `queued` (the message is undelivered).
    fn still_queued(&self, user: &str, queued: &str) -> Result<bool, RecordError>;

    /// What the stored message `id` says, for a notification.
    fn notice(&self, id: &str) -> Result<MessageNotice, RecordError>;

    /// How many messages of `conversation` `user` has not read (0 when unknown).
    fn unread(&self, user: &str, conversation: &str) -> Result<u64, RecordError>;
}

/// The push service a token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Firebase Cloud Messaging.
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl Platform {
    /// Reads the contract's name (`fcm` or `apns`).
    pub fn parse(name: &str) -> Option<Platform> {
        match name {
            "fcm" => Some(Platform::Fcm),
            "apns" => Some(Platform::Apns),
            _ => None,
        }
    }

    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
        }
    }
}

/// The stored value of one token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Which service it is for.
    pub platform: Platform,
    /// The device part of the client id that registered it (`None` for a bare `{user}`).
    pub device: Option<String>,
    /// When it was registered, ms since the epoch; also tells a re-registration apart.
    pub ts: u64,
}

/// One token of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceToken {
    /// The token itself.
    pub token: String,
    /// Its stored record.
    pub record: TokenRecord,
}

/// One change to the tokens, part of an atomic [`PushTokens::write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenChange {
    /// `token` is `user`'s, with `record`; the token's owner becomes `user`.
    Put {
        /// The owner.
        user: String,
        /// The token.
        token: String,
        /// Its record.
        record: TokenRecord,
    },
    /// Removes `token` from `user`'s tokens (the owner index is left alone).
    Drop {
        /// Whose token.
        user: String,
        /// The token.
        token: String,
    },
    /// Forgets who owns `token`.
    DropOwner {
        /// The token.
        token: String,
    },
}

/// Where device tokens are kept: each user's tokens and the owner of each token.
pub trait PushTokens: Send + Sync + 'static {
    /// Up to `limit` tokens of `user` read, in token order; records that cannot be read are
    /// skipped (and count towards `limit`).
    fn tokens(&self, user: &str, limit: usize) -> Result<Vec<DeviceToken>, RecordError>;

    /// The record of `user`'s `token`; `None` when absent or unreadable.
    fn token(&self, user: &str, token: &str) -> Result<Option<TokenRecord>, RecordError>;

    /// True when `user` has `token` stored, readable or not.
    fn has_token(&self, user: &str, token: &str) -> Result<bool, RecordError>;

    /// The user `token` belongs to, if any.
    fn owner(&self, token: &str) -> Result<Option<String>, RecordError>;

    /// True when `owner` still holds `token`: their token record is there and they have an
    /// account record (live or removed).
    fn holds(&self, owner: &str, token: &str) -> Result<bool, RecordError>;

    /// Carries out `changes` atomically (not yet durable: see [`PushTokens::flush`]).
    fn write(&self, changes: Vec<TokenChange>) -> Result<(), RecordError>;

    /// Returns once every change written before the call is durable.
    fn flush(&self) -> Result<(), RecordError>;
}
