//! The chat core of chatd, kept apart from the MQTT layer so it can be tested without a network:
//! accounts, 1:1 and group messaging with group commit, receipts, the per-recipient queue,
//! history and conversations, last-seen times, profiles, and what the core asks of the broker
//! (delivery) and of the media service (may this sender reference this media?), and what the
//! media service asks of profiles (is this media an avatar this viewer may see?).

pub mod accounts;
pub mod avatar_access;
pub mod config;
mod live_accounts;
pub mod media_gate;
pub mod messaging;
pub mod outbox;
pub mod ports;
pub mod presence;
pub mod profiles;
pub mod records;
pub mod user_list;
pub mod verified;
