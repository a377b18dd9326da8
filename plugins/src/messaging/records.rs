//! The JSON records messaging stores: messages (as delivered) and conversation summaries.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// A message exactly as it is delivered on `user/{to}/inbox` and stored under `m/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Server-assigned id (see [`crate::ids`]).
    pub id: String,
    /// The authenticated sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// `text` (the only type this server accepts so far).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text, or a caption for media types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When the server accepted it, ms since the epoch.
    pub ts: u64,
    /// Delivery status; only set in history/conversation results, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Message {
    /// Reads a stored message.
    pub fn decode(bytes: &[u8]) -> Result<Message, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Other(format!("stored message is unreadable: {e}")))
    }
}

/// One user's view of one conversation (`v/{user}/{conversation}`), so the conversation list
/// needs no scan of the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The other participant.
    pub peer: String,
    /// Id of the newest message.
    pub last_id: String,
    /// Messages received since the user last read the conversation.
    pub unread: u64,
}

impl Summary {
    /// Reads a stored summary.
    pub fn decode(bytes: &[u8]) -> Result<Summary, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Other(format!("stored summary is unreadable: {e}")))
    }
}
