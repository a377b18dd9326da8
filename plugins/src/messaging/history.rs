//! Reading the past: one conversation's messages page by page (`history`) and a user's
//! conversation list (`conversations`). Only committed messages are shown.

use serde::Serialize;

use super::records::{Message, Status, StatusRecord, Summary};
use crate::keys;
use crate::store::{KvStore, StoreError};

/// Which page of a conversation to read (see the contract's `history` request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Only ids below this one.
    pub before: Option<String>,
    /// Only ids above this one; the page then starts at the oldest such message.
    pub after: Option<String>,
    /// Most messages in the page.
    pub limit: usize,
}

/// One page of history.
#[derive(Debug, Serialize)]
pub struct Page {
    /// Oldest first, each with its status.
    pub messages: Vec<Message>,
    /// Whether further messages exist beyond this page in the paging direction.
    pub more: bool,
}

/// One entry of the conversation list: a 1:1 chat (`with`) or a group (`group`, `name`).
#[derive(Debug, Serialize)]
pub struct Conversation {
    /// The other participant of a 1:1 chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    /// The group id of a group conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The group's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The newest message, with its status.
    pub last: Message,
    /// Messages received and not yet read.
    pub unread: u64,
}

/// The conversation list.
#[derive(Debug, Serialize)]
pub struct Conversations {
    /// Newest last message first.
    pub conversations: Vec<Conversation>,
}

/// A page of the 1:1 conversation between `me` and `with`, up to the `committed` watermark.
///
/// The conversation key is derived from `me`, so a caller can only ever read a conversation
/// it takes part in.
pub fn page(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    with: &str,
    window: &Window,
) -> Result<Page, StoreError> {
    let empty = Page {
        messages: Vec::new(),
        more: false,
    };
    if committed.is_empty() || window.limit == 0 {
        return Ok(empty);
    }
    let prefix = keys::history_prefix(&keys::direct_conversation(me, with));
    let ceiling = keys::successor(format!("{prefix}{committed}").as_bytes());
    let mut low = match &window.after {
        Some(after) => keys::successor(format!("{prefix}{after}").as_bytes()),
        None => prefix.as_bytes().to_vec(),
    };
    // A reclaimed id sees nothing its previous owner exchanged.
    if let Some(floor) = crate::accounts::history_floor(store, me)? {
        low = low.max(keys::successor(format!("{prefix}{floor}").as_bytes()));
    }
    let high = match &window.before {
        Some(before) => ceiling.min(format!("{prefix}{before}").into_bytes()),
        None => ceiling,
    };
    // Without `after` the page is the newest messages, read backwards from the top.
    let newest_first = window.after.is_none();
    let mut rows = store.scan(&low, &high, newest_first, window.limit.saturating_add(1))?;
    let more = rows.len() > window.limit;
    rows.truncate(window.limit);
    if newest_first {
        rows.reverse();
    }
    let mut messages = Vec::with_capacity(rows.len());
    for (key, _) in rows {
        let id = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
        if let Some(m) = load(store, &id)? {
            messages.push(m);
        }
    }
    Ok(Page { messages, more })
}

/// All conversations of `me`, newest last message first.
pub fn conversations(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
) -> Result<Conversations, StoreError> {
    let prefix = keys::summary_prefix(me);
    let rows = store.scan(
        prefix.as_bytes(),
        &keys::prefix_end(&prefix),
        false,
        usize::MAX,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (_, value) in rows {
        let summary = match Summary::decode(&value) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("skipping a conversation summary of {me}: {e}");
                continue;
            }
        };
        if summary.group {
            if let Some((last, unread, name)) = super::group_read::conversation(
                store,
                committed,
                me,
                &summary.peer,
                &summary.read_upto,
            )? {
                out.push(Conversation {
                    with: None,
                    group: Some(summary.peer),
                    name: Some(name),
                    last,
                    unread,
                });
            }
            continue;
        }
        if let Some(last) = load(store, &summary.last_id)? {
            out.push(Conversation {
                with: Some(summary.peer),
                group: None,
                name: None,
                last,
                unread: summary.unread,
            });
        }
    }
    out.sort_by(|a, b| b.last.id.cmp(&a.last.id));
    Ok(Conversations { conversations: out })
}

/// A stored message with its status; a dangling index entry is skipped, not an error.
fn load(store: &dyn KvStore, id: &str) -> Result<Option<Message>, StoreError> {
    let Some(bytes) = store.get(&keys::message(id))? else {
        tracing::warn!("index points at missing message {id}");
        return Ok(None);
    };
    let mut message = Message::decode(&bytes)?;
    // The recipient's receipt status (`s/{id}/{to}`); none yet means `sent`.
    let Some(to) = message.to.clone() else {
        return Ok(Some(message));
    };
    let status = match store.get(&keys::status(id, &to))? {
        None => Status::Sent,
        Some(bytes) => StatusRecord::decode(&bytes).map_or_else(
            |e| {
                tracing::warn!("message {id}: {e}");
                Status::Sent
            },
            |r| r.status,
        ),
    };
    message.status = Some(status.as_str().to_string());
    Ok(Some(message))
}
