//! Push notifications for chatd users with no device online, through Firebase Cloud Messaging
//! (HTTP v1) and the Apple Push Notification service (HTTP/2).
//!
//! How it fits together:
//!
//! * The messaging committer writes a push job `j/{user}/{conversation}/{id}` in the same
//!   atomic batch as message `id` whenever `user` has no device connected ([`jobs`]).
//! * Devices register their tokens with `push.register` / `push.unregister` on
//!   `chat/{me}/rpc` ([`rpc`], stored by [`tokens`]).
//! * The [`PushBridge`] worker scans the jobs, waits until the oldest job of a (user,
//!   conversation) pair is older than the collapse window, then sends one notification per
//!   token of the user — or nothing when the user came online meanwhile — and deletes exactly
//!   the jobs it handled ([`bridge`]).
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
