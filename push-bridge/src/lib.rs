//! Push notifications for chatd users with no device online, through Firebase Cloud Messaging
//! (HTTP v1) and the Apple Push Notification service (HTTP/2).
//!
//! How it fits together:
//!
//! * The messaging committer writes a push job for message `id` and recipient `user` in the
//!   same atomic batch as the message whenever `user` has no device connected ([`jobs`]).
//! * Devices register their tokens with `push.register` / `push.unregister` on
//!   `chat/{me}/rpc` ([`rpc`], stored by [`tokens`]).
//! * The [`PushBridge`] worker claims the jobs of a (user, conversation) pair, with a lease,
//!   once the oldest is older than the collapse window, then sends one notification per token
//!   of the user — or nothing when the user came online meanwhile — and finishes (deletes)
//!   exactly the jobs it handled ([`bridge`]).
//! * The store is reached only through the chat core's ports
//!   (`chatd_core::ports::push::{PushJobs, PushTokens}`); the broker hands in its adapter.
//! * What a notification says is built once ([`payload`]); FCM and APNs are two
//!   [`adapter::PushAdapter`]s that turn it into their own request and classify the answer
//!   ([`fcm`] with [`oauth`], [`apns`] with [`provider_token`]).

#![deny(missing_docs)]

pub mod adapter;
pub mod apns;
pub mod bridge;
pub mod config;
pub mod fcm;
pub mod jobs;
pub mod oauth;
pub mod payload;
pub mod provider_token;
pub mod retry;
pub mod rpc;
pub mod stats;
pub mod tokens;

pub use adapter::{Outcome, PushAdapter};
pub use bridge::{Adapters, OnlineCheck, PushBridge};
pub use config::{ApnsEnvironment, ApnsSettings, BridgeSettings, ConfigError, FcmSettings};
pub use stats::PushStats;
pub use tokens::{Platform, Tokens};
