//! Reading groups: `group.info`, group `history` clipped to the caller's membership windows,
//! per-member receipt totals, a group's entry in the conversation list, and the member list
//! typing indicators go to. Only committed messages are shown.

use serde::Serialize;

use super::group_records::{self, GroupIndex, MemberRecord};
use super::history::{self, Page, Window};
use super::records::{GroupReceipts, Message, Status, StatusRecord};
use super::reply_budget::{encoded_len, Room, ENVELOPE_BYTES};
use super::rpc::read_failure;
use crate::keys;
use chatd_kv::{KvStore, StoreError};
use chatd_wire::reply::{ErrorCode, Failure};

/// Rows read per store scan while skipping messages outside the caller's windows.
const SCAN_CHUNK: usize = 256;

/// Most messages counted for an unread count; more shows as this number.
pub const MAX_UNREAD_COUNTED: usize = 1000;

/// The reply of `group.info`.
#[derive(Debug, Serialize)]
pub struct Info {
    /// The group id.
    pub group: String,
    /// The display name.
    pub name: String,
    /// Who created it.
    pub creator: String,
    /// When, ms since the epoch.
    pub created: u64,
    /// Current members, user id order (those after the request's `after`, as many as fit).
    pub members: Vec<MemberInfo>,
    /// Whether more members follow (the reply reached its byte budget): ask again with
    /// `after` set to `next`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// With `more`: the last member listed, the `after` of the next request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The message named in the request, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// That message's overall status, as in its history entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// That message's per-member receipts, as in its history entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<GroupReceipts>,
    /// Set when the receipts' name lists were emptied (counts kept) to fit the reply budget.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub trimmed: bool,
}

/// One member in `group.info`.
#[derive(Debug, Serialize)]
pub struct MemberInfo {
    /// The user.
    pub user: String,
    /// `admin` or `member`.
    pub role: &'static str,
    /// The id of the event that (last) added them.
    pub since: String,
}

/// The caller's membership record, or the refusal: `not_found` for no such group,
/// `forbidden` for a group the caller never belonged to.
fn caller_membership(store: &dyn KvStore, group: &str, me: &str) -> Result<MemberRecord, Failure> {
    let membership = group_records::membership(store, group, me).map_err(read_failure)?;
    if let Some(m) = membership {
        return Ok(m);
    }
    if store
        .get(&keys::group(group))
        .map_err(read_failure)?
        .is_none()
    {
        return Err(Failure::new(
            ErrorCode::NotFound,
            format!("no such group `{group}`"),
        ));
    }
    Err(Failure::new(
        ErrorCode::Forbidden,
        format!("you are not a member of group `{group}`"),
    ))
}

/// `group.info`: name and current members with roles (those after `after`), for current
/// members only; with `message`, that message's per-member receipt state. The reply stays
/// within `budget` bytes: past it the receipts' name lists are emptied first (`trimmed`), then
/// the member list is cut (`more`, `next`). At the defaults (1024 members, a 512 KiB budget)
/// neither happens.
pub fn info(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    group: &str,
    message: Option<&str>,
    after: Option<&str>,
    budget: usize,
) -> Result<Info, Failure> {
    let mine = caller_membership(store, group, me)?;
    let loaded = group_records::load(store, group).map_err(read_failure)?;
    let Some(g) = loaded.filter(|g| !g.record.closed) else {
        return Err(Failure::new(
            ErrorCode::NotFound,
            format!("no such group `{group}`"),
        ));
    };
    if !mine.active() {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!("you are no longer a member of group `{group}`"),
        ));
    }
    let members: Vec<MemberInfo> = g
        .active()
        .filter(|(user, _)| after.is_none_or(|after| user.as_str() > after))
        .map(|(user, m)| MemberInfo {
            user: user.clone(),
            role: m.role.as_str(),
            since: m.since().unwrap_or_default().to_string(),
        })
        .collect();
    let receipts = match message {
        None => None,
        Some(id) => Some(message_receipts(store, committed, group, &mine, id)?),
    };
    let mut info = Info {
        group: g.id.clone(),
        name: g.record.name.clone(),
        creator: g.record.creator.clone(),
        created: g.record.created,
        members: Vec::new(),
        more: false,
        next: None,
        message: message.map(str::to_string),
        status: receipts.as_ref().map(|r| overall(r).as_str()),
        receipts,
        trimmed: false,
    };
    fit_members(&mut info, members, budget);
    Ok(info)
}

/// Puts `members` into `info` as far as `budget` allows (see [`info`]); at least one member
/// when there is one, so that paging always moves on.
fn fit_members(info: &mut Info, members: Vec<MemberInfo>, budget: usize) {
    let sizes: Vec<usize> = members.iter().map(|m| encoded_len(m) + 1).collect();
    let whole = encoded_len(info) + sizes.iter().sum::<usize>();
    if whole > budget.saturating_sub(ENVELOPE_BYTES) {
        if let Some(receipts) = info.receipts.as_mut() {
            receipts.empty_names();
            info.trimmed = true;
        }
    }
    let mut room = Room::new(budget);
    // What surrounds the list (`more` and `next` included: the envelope's room covers them).
    room.fits(encoded_len(info));
    let total = members.len();
    for (member, size) in members.into_iter().zip(sizes) {
        if !room.fits(size) && !info.members.is_empty() {
            break;
        }
        info.members.push(member);
    }
    if info.members.len() < total {
        info.more = true;
        info.next = info.members.last().map(|m| m.user.clone());
    }
}

fn message_receipts(
    store: &dyn KvStore,
    committed: &str,
    group: &str,
    mine: &MemberRecord,
    id: &str,
) -> Result<GroupReceipts, Failure> {
    let not_found = || {
        Failure::new(
            ErrorCode::NotFound,
            format!("no message `{id}` in this group"),
        )
    };
    if id > committed || !mine.saw(id) {
        return Err(not_found());
    }
    let key = format!(
        "{}{id}",
        keys::history_prefix(&keys::group_conversation(group))
    );
    let index = store
        .get(key.as_bytes())
        .map_err(read_failure)?
        .ok_or_else(not_found)?;
    let index = GroupIndex::decode(&index);
    if index.from.is_empty() {
        return Err(Failure::bad("group events have no receipts"));
    }
    receipts(store, id, index.recipients).map_err(read_failure)
}

/// The per-member receipt state of group message `id` sent to `members` members.
pub fn receipts(store: &dyn KvStore, id: &str, members: u32) -> Result<GroupReceipts, StoreError> {
    let prefix = format!("s/{id}/");
    let rows = store.scan(
        prefix.as_bytes(),
        &keys::prefix_end(&prefix),
        false,
        usize::MAX,
    )?;
    let mut out = GroupReceipts {
        members,
        ..GroupReceipts::default()
    };
    for (key, value) in rows {
        let user =
            String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
        let Ok(record) = StatusRecord::decode(&value) else {
            continue;
        };
        if record.status >= Status::Delivered {
            out.delivered_by.push(user.clone());
        }
        if record.status == Status::Read {
            out.read_by.push(user);
        }
    }
    out.delivered = out.delivered_by.len() as u32;
    out.read = out.read_by.len() as u32;
    Ok(out)
}

/// The overall status of a group message: `read` once every recipient read it, `delivered`
/// once every recipient has it, else `sent`.
fn overall(r: &GroupReceipts) -> Status {
    if r.members > 0 && r.read >= r.members {
        Status::Read
    } else if r.members > 0 && r.delivered >= r.members {
        Status::Delivered
    } else {
        Status::Sent
    }
}

/// A page of a group's history as `me` may see it: only messages inside their membership
/// windows (a late joiner sees nothing from before, a removed member nothing after); its JSON
/// stays within `budget` bytes (see [`history::take_within`]).
pub fn page(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    group: &str,
    window: &Window,
    budget: usize,
) -> Result<Page, Failure> {
    let mine = caller_membership(store, group, me)?;
    page_for(store, committed, group, &mine, window, budget).map_err(read_failure)
}

fn page_for(
    store: &dyn KvStore,
    committed: &str,
    group: &str,
    mine: &MemberRecord,
    window: &Window,
    budget: usize,
) -> Result<Page, StoreError> {
    let empty = Page {
        messages: Vec::new(),
        more: false,
    };
    let Some((first, last)) = mine.bounds() else {
        return Ok(empty);
    };
    if committed.is_empty() || window.limit == 0 {
        return Ok(empty);
    }
    let prefix = keys::history_prefix(&keys::group_conversation(group));
    let at = |id: &str| format!("{prefix}{id}").into_bytes();
    let top = last.map_or(committed, |last| last.min(committed));
    let mut low = at(first);
    if let Some(after) = &window.after {
        low = low.max(keys::successor(&at(after)));
    }
    let mut high = keys::successor(&at(top));
    if let Some(before) = &window.before {
        high = high.min(at(before));
    }
    let newest_first = window.after.is_none();
    let mut rows = Vec::new();
    while rows.len() <= window.limit && low < high {
        let chunk = store.scan(&low, &high, newest_first, SCAN_CHUNK)?;
        let n = chunk.len();
        for (key, value) in chunk {
            if newest_first {
                high = key.clone();
            } else {
                low = keys::successor(&key);
            }
            let id =
                String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
            if mine.saw(&id) {
                rows.push((id, GroupIndex::decode(&value)));
                if rows.len() > window.limit {
                    break;
                }
            }
        }
        if n < SCAN_CHUNK {
            break;
        }
    }
    let more = rows.len() > window.limit;
    rows.truncate(window.limit);
    // Loaded (receipts included) only as far as the budget goes.
    let loaded = rows
        .into_iter()
        .filter_map(|(id, index)| load(store, &id, &index).transpose());
    history::take_within(loaded, more, newest_first, budget)
}

/// Group message `id` with its overall status and receipts; `None` when the index points at a
/// missing message.
fn load(store: &dyn KvStore, id: &str, index: &GroupIndex) -> Result<Option<Message>, StoreError> {
    let Some(bytes) = store.get(&keys::message(id))? else {
        tracing::warn!("group index points at missing message {id}");
        return Ok(None);
    };
    let mut message = Message::decode(&bytes).map_err(|e| StoreError::Other(e.to_string()))?;
    if !index.from.is_empty() {
        let r = receipts(store, id, index.recipients)?;
        message.status = Some(overall(&r).as_str().to_string());
        message.receipts = Some(r);
    }
    Ok(Some(message))
}

/// A group's entry in `me`'s conversation list: its newest message `me` may see and how many
/// messages from others came after what `me` has read.
pub fn conversation(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    group: &str,
    read_upto: &str,
) -> Result<Option<(Message, u64, String)>, StoreError> {
    let Some(mine) = group_records::membership(store, group, me)? else {
        return Ok(None);
    };
    let newest = Window {
        before: None,
        after: None,
        limit: 1,
    };
    // Unbudgeted: the conversation list measures (and shortens) the entry itself.
    let Some(last) = page_for(store, committed, group, &mine, &newest, usize::MAX)?
        .messages
        .pop()
    else {
        return Ok(None);
    };
    let name = store
        .get(&keys::group(group))?
        .and_then(|b| serde_json::from_slice::<group_records::GroupRecord>(&b).ok())
        .map(|r| r.name)
        .unwrap_or_default();
    let prefix = keys::history_prefix(&keys::group_conversation(group));
    let at = |id: &str| format!("{prefix}{id}").into_bytes();
    let read = keys::successor(&at(read_upto));
    let mut unread = 0u64;
    let mut budget = MAX_UNREAD_COUNTED * 2;
    // Window by window, so the rows of a gap between memberships (someone removed and added
    // back, whose earlier unread messages still count) use up none of the scan budget.
    for (from, to) in &mine.windows {
        let start = read.clone().max(at(from));
        let top = to
            .as_deref()
            .map_or(last.id.as_str(), |to| to.min(&last.id));
        let end = keys::successor(&at(top));
        if start >= end {
            continue;
        }
        let rows = store.scan(&start, &end, false, budget)?;
        budget -= rows.len();
        for (_, value) in rows {
            let index = GroupIndex::decode(&value);
            if !index.from.is_empty() && index.from != me {
                unread += 1;
            }
        }
        if budget == 0 || unread >= MAX_UNREAD_COUNTED as u64 {
            break;
        }
    }
    let unread = unread.min(MAX_UNREAD_COUNTED as u64);
    Ok(Some((last, unread, name)))
}

/// The id of the newest message of `group` that `me` may see (the sort key of the group in
/// `me`'s conversation list), without loading it; `None` when there is none.
pub fn newest_visible(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    group: &str,
) -> Result<Option<String>, StoreError> {
    let Some(mine) = group_records::membership(store, group, me)? else {
        return Ok(None);
    };
    let Some((first, last)) = mine.bounds() else {
        return Ok(None);
    };
    if committed.is_empty() {
        return Ok(None);
    }
    let prefix = keys::history_prefix(&keys::group_conversation(group));
    let at = |id: &str| format!("{prefix}{id}").into_bytes();
    let top = last.map_or(committed, |last| last.min(committed));
    let low = at(first);
    let mut high = keys::successor(&at(top));
    // Newest first; ids in a gap between two membership windows are skipped.
    while low < high {
        let chunk = store.scan(&low, &high, true, SCAN_CHUNK)?;
        let n = chunk.len();
        for (key, _) in chunk {
            let id = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
            if mine.saw(&id) {
                return Ok(Some(id.into_owned()));
            }
            high = key;
        }
        if n < SCAN_CHUNK {
            break;
        }
    }
    Ok(None)
}

/// The current members of a group; `None` for no such group or a closed one.
pub fn members(store: &dyn KvStore, group: &str) -> Result<Option<Vec<String>>, StoreError> {
    Ok(group_records::load(store, group)?
        .filter(|g| !g.record.closed)
        .map(|g| g.active().map(|(u, _)| u.clone()).collect()))
}
