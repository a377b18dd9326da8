//! Reading the past: one conversation's messages page by page (`history`; the conversation
//! list is `conversation_list.rs`). Only committed messages are shown.

use serde::Serialize;

use super::records::{Message, Status, StatusRecord};
use super::reply_budget::Room;
use crate::keys;
use chatd_kv::{KvStore, StoreError};

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
    /// Whether further messages exist beyond this page in the paging direction (also when
    /// the page stopped early at the reply budget).
    pub more: bool,
}

/// A page of the 1:1 conversation between `me` and `with`, up to the `committed` watermark,
/// whose JSON stays within `budget` bytes (see [`take_within`]).
///
/// The conversation key is derived from `me`, so a caller can only ever read a conversation
/// it takes part in.
pub fn page(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    with: &str,
    window: &Window,
    budget: usize,
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
    let loaded = rows.into_iter().filter_map(|(key, _)| {
        let id = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
        load(store, &id).transpose()
    });
    take_within(loaded, more, newest_first, budget)
}

/// The page of `messages` (in paging order: newest first when `newest_first`) that fits in
/// `budget` bytes: messages are loaded one by one until the next would pass the budget, which
/// ends the page with `more` (the client reads on from its edge with `before`/`after` as
/// usual). The first message is always taken, trimmed if it alone is too big. Oldest first.
pub(super) fn take_within<E>(
    messages: impl Iterator<Item = Result<Message, E>>,
    mut more: bool,
    newest_first: bool,
    budget: usize,
) -> Result<Page, E> {
    let mut room = Room::new(budget);
    let mut out = Vec::new();
    for message in messages {
        let mut message = message?;
        if !room.take(&mut message) {
            more = true;
            break;
        }
        out.push(message);
    }
    if newest_first {
        out.reverse();
    }
    Ok(Page {
        messages: out,
        more,
    })
}

/// A stored message with its status; a dangling index entry is skipped, not an error.
pub(super) fn load(store: &dyn KvStore, id: &str) -> Result<Option<Message>, StoreError> {
    let Some(bytes) = store.get(&keys::message(id))? else {
        tracing::warn!("index points at missing message {id}");
        return Ok(None);
    };
    let mut message = Message::decode(&bytes).map_err(|e| StoreError::Other(e.to_string()))?;
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
