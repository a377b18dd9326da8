//! The storage ports: what the chat core needs from a store, at the level of the domain (store
//! a batch of intents, read a queue, acknowledge, history…), never keys. An engine is one
//! adapter that implements these traits: `chatd-embedded` over the embedded key-value engines
//! today, an SQL store for a cluster later. Changes are written as intents ("unread + 1",
//! "status = max(old, new)", "insert this cid if absent") so that an adapter can carry out a
//! whole batch in one transaction, and work that must be done once (push jobs, unfinished
//! fan-outs) is claimed with a lease, so that several processes sharing one store never do it
//! twice.

pub mod accounts;
pub mod log;
// Built for this crate's tests and for adapters' tests, with the `conformance` feature.
#[cfg(any(test, feature = "conformance"))]
pub mod log_conformance;
pub mod media;
pub mod presence;
pub mod profiles;
pub mod push;
// Built for this crate's tests and for adapters' tests, with the `conformance` feature.
#[cfg(any(test, feature = "conformance"))]
pub mod records_conformance;
pub mod sessions;
