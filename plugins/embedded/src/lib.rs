//! The embedded store: the chat core's storage ports (`chatd_core::ports`) carried out on an
//! ordered key-value engine (`chatd_kv`), with the key layout of [`keys`], which only this
//! crate knows; an engine only has to pass `chatd_kv`'s conformance suite to run beneath it.

pub mod accounts;
pub mod keys;
pub mod log;
pub mod media;
pub mod presence;
pub mod profiles;
pub mod push;
pub mod sessions;
