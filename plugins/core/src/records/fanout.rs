//! The durable part of a group fan-out: a message stored once and queued for its recipients a
//! slice at a time (see `messaging/fanout.rs` for why).

use serde::{Deserialize, Serialize};

/// Who a stored group message (or event) must still be queued for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutRecord {
    /// The group conversation (push jobs and history name it).
    pub conversation: String,
    /// Media the message references: each recipient gets the right to download it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Whether recipients with no device online get a push job (messages yes, events no).
    #[serde(default)]
    pub push: bool,
    /// Everyone who gets the message, online members first.
    pub recipients: Vec<String>,
    /// How many of `recipients` are queued already.
    pub done: usize,
}
