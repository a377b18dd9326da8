//! Reading the past: one conversation's messages page by page (`history`; the conversation
//! list is `conversation_list.rs`). Only committed messages are shown.

use serde::Serialize;

use std::ops::Bound;

use super::reply_budget::Room;
use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
use crate::records::chat::{direct_conversation, Message};

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

/// A page of the 1:1 conversation between `me` and `with`, only above `floor` (`me`'s
/// history floor), whose JSON stays within `budget` bytes (see [`take_within`]).
///
/// The conversation key is derived from `me`, so a caller can only ever read a conversation
/// it takes part in.
pub fn page(
    log: &dyn MessageLog,
    floor: Option<&str>,
    me: &str,
    with: &str,
    window: &Window,
    budget: usize,
) -> Result<Page, RecordError> {
    if window.limit == 0 {
        return Ok(Page {
            messages: Vec::new(),
            more: false,
        });
    }
    // A reclaimed id sees nothing its previous owner exchanged.
    let low = match (window.after.as_deref(), floor) {
        (Some(after), Some(floor)) => Bound::Excluded(after.max(floor)),
        (Some(id), None) | (None, Some(id)) => Bound::Excluded(id),
        (None, None) => Bound::Unbounded,
    };
    let high = match &window.before {
        Some(before) => Bound::Excluded(before.as_str()),
        None => Bound::Unbounded,
    };
    // Without `after` the page is the newest messages, read backwards from the top.
    let newest_first = window.after.is_none();
    let conversation = direct_conversation(me, with);
    let mut rows = log.history(
        &conversation,
        low,
        high,
        newest_first,
        window.limit.saturating_add(1),
    )?;
    let more = rows.len() > window.limit;
    rows.truncate(window.limit);
    let loaded = rows
        .into_iter()
        .filter_map(|entry| load(log, &entry.id).transpose());
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
pub(super) fn load(log: &dyn MessageLog, id: &str) -> Result<Option<Message>, RecordError> {
    let Some(bytes) = log.message(id)? else {
        tracing::warn!("index points at missing message {id}");
        return Ok(None);
    };
    let mut message = Message::decode(&bytes)?;
    // The recipient's receipt status; none yet means `sent`.
    let Some(to) = message.to.clone() else {
        return Ok(Some(message));
    };
    let status = log.status(id, &to)?;
    message.status = Some(status.as_str().to_string());
    Ok(Some(message))
}
