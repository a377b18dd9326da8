//! `conversations`: a user's conversation list, newest last message first, one page at a time.
//!
//! Anyone can put a user into conversations (a message, a group), so the list has no natural
//! bound; one reply holding all of it once reached 1.16 MB, over the packet size limit. A page
//! holds at most `limit` conversations and stops earlier when its JSON would pass the reply
//! budget (`ChatConfig::max_reply_bytes`); `more` and `next` say how to read on.
//!
//! Paging is by sort key: each conversation sorts by the id of its newest message the user may
//! see, and `before` (a previous page's `next`) asks for those below it. Message ids are unique
//! and each belongs to one conversation, so no conversation is on two pages unless a new
//! message moved it to the top meanwhile (the first page then shows it).

use serde::Serialize;
use serde_json::Value;

use super::group_read;
use super::history;
use super::reply_budget::{Room, Trimmable};
use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
use crate::records::chat::{Message, Summary};
use chatd_wire::ids::valid_message_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::Failure;

/// Page size when the request names none (older clients send no `limit`).
pub const DEFAULT_LIMIT: usize = 50;

/// Largest page.
pub const MAX_LIMIT: usize = 200;

/// Which page to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Only conversations whose newest message id is below this one.
    pub before: Option<String>,
    /// Most conversations in the page.
    pub limit: usize,
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
    /// Set when `last` alone did not fit in a reply and was shortened (its lists emptied,
    /// then its text dropped); `history` has it whole.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub trimmed: bool,
}

/// One page of the conversation list.
#[derive(Debug, Serialize)]
pub struct Conversations {
    /// Newest last message first.
    pub conversations: Vec<Conversation>,
    /// Whether older conversations follow.
    pub more: bool,
    /// With `more`: the `before` of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Reads the arguments of `conversations`.
pub fn parse(obj: &Object) -> Result<Query, Failure> {
    json::only_fields(obj, &["rid", "op", "before", "limit"])?;
    let before = match json::optional_str(obj, "before")? {
        None => None,
        Some(id) if valid_message_id(id) => Some(id.to_string()),
        Some(id) => {
            return Err(Failure::bad(format!(
                "`before` is not a message id: {id:?}"
            )))
        }
    };
    let limit = match obj.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                return Err(Failure::bad(format!(
                    "`limit` must be an integer from 1 to {MAX_LIMIT}, not {v}"
                )))
            }
        },
    };
    Ok(Query { before, limit })
}

/// A page of `me`'s conversations whose JSON stays within `budget` bytes (a page always holds
/// at least one conversation when there is one, shortened if it must be).
pub fn page(
    log: &dyn MessageLog,
    me: &str,
    query: &Query,
    budget: usize,
) -> Result<Conversations, RecordError> {
    let mut keyed = sort_keys(log, me)?;
    if let Some(before) = &query.before {
        keyed.retain(|(key, _)| key < before);
    }
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    let mut room = Room::new(budget);
    let mut out = Vec::new();
    let mut next = None;
    let mut more = false;
    for (key, summary) in keyed {
        if out.len() == query.limit {
            more = true;
            break;
        }
        let Some(mut conversation) = entry(log, me, summary)? else {
            continue;
        };
        if !room.take(&mut conversation) {
            more = true;
            break;
        }
        out.push(conversation);
        next = Some(key);
    }
    Ok(Conversations {
        conversations: out,
        next: if more { next } else { None },
        more,
    })
}

/// Every conversation of `me` with its sort key (the newest message id `me` may see); groups
/// without any such message are left out, as before paging.
fn sort_keys(log: &dyn MessageLog, me: &str) -> Result<Vec<(String, Summary)>, RecordError> {
    let summaries = log.summaries(me)?;
    let mut out = Vec::with_capacity(summaries.len());
    for (_, summary) in summaries {
        let key = if summary.group {
            group_read::newest_visible(log, me, &summary.peer)?
        } else {
            Some(summary.last_id.clone()).filter(|id| !id.is_empty())
        };
        if let Some(key) = key {
            out.push((key, summary));
        }
    }
    Ok(out)
}

/// The list entry of one conversation; `None` when its newest message cannot be read.
fn entry(
    log: &dyn MessageLog,
    me: &str,
    summary: Summary,
) -> Result<Option<Conversation>, RecordError> {
    if summary.group {
        let found = group_read::conversation(log, me, &summary.peer, &summary.read_upto)?;
        return Ok(found.map(|(last, unread, name)| Conversation {
            with: None,
            group: Some(summary.peer),
            name: Some(name),
            last,
            unread,
            trimmed: false,
        }));
    }
    Ok(
        history::load(log, &summary.last_id)?.map(|last| Conversation {
            with: Some(summary.peer),
            group: None,
            name: None,
            last,
            unread: summary.unread,
            trimmed: false,
        }),
    )
}

impl Trimmable for Conversation {
    fn message(&mut self) -> &mut Message {
        &mut self.last
    }

    fn mark_trimmed(&mut self) {
        self.trimmed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn arguments_default_and_refusals_name_the_problem() {
        let q = parse(&obj(serde_json::json!({"rid":"r","op":"conversations"}))).expect("ok");
        assert_eq!(
            q,
            Query {
                before: None,
                limit: DEFAULT_LIMIT
            }
        );
        for (v, needle) in [
            (serde_json::json!({"limit":0}), "from 1 to 200"),
            (serde_json::json!({"limit":201}), "from 1 to 200"),
            (serde_json::json!({"limit":"5"}), "from 1 to 200"),
            (serde_json::json!({"before":"x"}), "not a message id"),
            (serde_json::json!({"after":"x"}), "unknown field `after`"),
        ] {
            let f = parse(&obj(v.clone())).expect_err("refused");
            assert!(f.message.contains(needle), "{v}: {f:?}");
        }
    }
}
