//! The records of 1:1 and group chat that the message log keeps: messages (exactly as
//! delivered), conversation summaries, receipt statuses and receipt events.

use serde::{Deserialize, Serialize};

use crate::ports::accounts::RecordError;

/// The conversation key of a 1:1 chat, the same from both sides: `d:{a}:{b}` with `a < b`.
pub fn direct_conversation(a: &str, b: &str) -> String {
    if a <= b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// The conversation key of a group: `g:{group}` (history, summaries, push jobs).
pub fn group_conversation(group: &str) -> String {
    format!("g:{group}")
}

/// A message exactly as it is delivered on `user/{to}/inbox` and stored by the message log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Server-assigned id (see [`chatd_wire::ids`]).
    pub id: String,
    /// The authenticated sender; empty for a group event (which names its actor in `by`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The recipient of a 1:1 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The group of a group message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `text`, `image`, `video`, `audio`, `file`, or `event` (a group event).
    #[serde(rename = "type")]
    pub kind: String,
    /// A group event's kind: `member_added`, `member_removed`, `member_left`, `promoted`,
    /// `demoted` or `renamed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Who caused a group event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The users a group event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// The group's name, on `renamed` and on the event that created the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text, or a caption for media types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The referenced media id (media types only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// The id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When the server accepted it, ms since the epoch.
    pub ts: u64,
    /// Delivery status; only set in history/conversation results, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Per-member receipt totals of a group message; only in history results, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<GroupReceipts>,
    /// Set in a reply when the message alone did not fit in it and was shortened (its name
    /// lists emptied, then its text dropped); never stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trimmed: bool,
}

impl Message {
    /// A message with only its identity set; callers fill in the rest.
    pub fn new(id: String, kind: &str, ts: u64) -> Message {
        Message {
            id,
            from: String::new(),
            to: None,
            group: None,
            kind: kind.to_string(),
            event: None,
            by: None,
            users: None,
            name: None,
            text: None,
            media: None,
            reply_to: None,
            ts,
            status: None,
            receipts: None,
            trimmed: false,
        }
    }
}

/// How far one group message has come, over all the members it went to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReceipts {
    /// Members the message went to (the sender excluded).
    pub members: u32,
    /// How many have it delivered (those who read it included).
    pub delivered: u32,
    /// How many have read it.
    pub read: u32,
    /// Who has it delivered (readers included), in user id order.
    pub delivered_by: Vec<String>,
    /// Who has read it, in user id order.
    pub read_by: Vec<String>,
}

impl GroupReceipts {
    /// Empties the name lists and keeps the counts, for a reply that must shrink.
    pub fn empty_names(&mut self) {
        self.delivered_by.clear();
        self.read_by.clear();
    }
}

impl Message {
    /// Reads a stored message.
    pub fn decode(bytes: &[u8]) -> Result<Message, RecordError> {
        decode(bytes, "message")
    }
}

/// One user's view of one conversation, so the conversation list
/// needs no scan of the history. A group's summary is written when the user joins and only
/// tracks what they have read: its last message and unread count come from the group's
/// history index, so a group message does not rewrite one summary per member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The other participant, or the group id.
    pub peer: String,
    /// True for a group conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group: bool,
    /// Group conversations: the newest message id the user has read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub read_upto: String,
    /// Id of the newest message.
    pub last_id: String,
    /// Messages received since the user last read the conversation.
    pub unread: u64,
}

impl Summary {
    /// Reads a stored summary.
    pub fn decode(bytes: &[u8]) -> Result<Summary, RecordError> {
        decode(bytes, "conversation summary")
    }
}

/// How far a message has come for one recipient. Only moves forward: the derived order is
/// `Sent < Delivered < Read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stored; no receipt yet. Never stored as such: it is the absence of a record.
    Sent,
    /// A device of the recipient has it.
    Delivered,
    /// The recipient has read it (implies delivered).
    Read,
}

impl Status {
    /// The contract's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
        }
    }
}

/// The receipt status of one message for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `delivered` or `read`.
    pub status: Status,
    /// When the server stored this status, ms since the epoch.
    pub ts: u64,
}

impl StatusRecord {
    /// Reads a stored status record.
    pub fn decode(bytes: &[u8]) -> Result<StatusRecord, RecordError> {
        decode(bytes, "receipt status")
    }
}

/// A status change as the author gets it on `user/{author}/receipt`, and as it waits in the
/// author's queue (exactly these bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    /// The message whose status changed.
    pub id: String,
    /// The recipient who sent the receipt.
    pub by: String,
    /// The new status.
    pub status: Status,
    /// When the server stored the change, ms since the epoch.
    pub ts: u64,
}

/// Reads a stored JSON record; `what` names it in the error.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| RecordError::Corrupt {
        key: what.to_string(),
        why: e.to_string(),
    })
}
