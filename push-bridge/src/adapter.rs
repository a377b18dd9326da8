//! The one interface both push services sit behind: send one notification to one device token
//! and say what the bridge should do next. Adapters never retry or touch the store themselves;
//! the bridge owns retries, token deletion and counting, so both services behave alike.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::payload::Notification;

/// What became of one send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The service accepted it.
    Sent,
    /// The service says the token is dead or not ours: delete it, do not retry.
    TokenInvalid {
        /// The service's reason, for the log.
        reason: String,
    },
    /// A temporary failure (429, 5xx, network, expired credentials): try again, not before
    /// `after` when the service said so (`Retry-After`).
    Retry {
        /// The service's minimum wait, if it gave one.
        after: Option<Duration>,
        /// What happened, for the log.
        reason: String,
    },
    /// A failure retrying cannot fix (a refused request, bad credentials); the token is kept.
    Failed {
        /// What happened, for the log.
        reason: String,
    },
}

/// A boxed future, so adapters can be used as trait objects.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A push service.
pub trait PushAdapter: Send + Sync + 'static {
    /// The service's name for logs (`fcm`, `apns`).
    fn name(&self) -> &'static str;

    /// Sends `notification` to the device with `token`. Must not panic on any answer.
    fn send<'a>(&'a self, token: &'a str, notification: &'a Notification) -> SendFuture<'a>;
}
