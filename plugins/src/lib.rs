//! The parts of chatd that act on the message stream, kept apart from the MQTT layer so they can
//! be tested without a network: the key-value store and its sled engine, accounts, message ids,
//! 1:1 messaging with group commit, the per-recipient queue, history and conversations, and the
//! media service (uploads, verification, download rights).

pub mod accounts;
pub mod ids;
pub mod keys;
pub mod media;
pub mod media_gate;
pub mod messaging;
pub mod outbox;
pub mod presence;
pub mod sled_store;
pub mod store;
pub mod verified;
