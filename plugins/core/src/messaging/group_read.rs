//! Reading groups: `group.info`, group `history` clipped to the caller's membership windows,
//! per-member receipt totals, a group's entry in the conversation list, and the member list
//! typing indicators go to. Only committed messages are shown.

use serde::Serialize;

use std::ops::Bound;

use super::history::{self, Page, Window};
use super::reply_budget::{encoded_len, Room, ENVELOPE_BYTES};
use super::rpc::read_failure;
use crate::ports::accounts::RecordError;
use crate::ports::log::{HistoryEntry, MessageLog};
use crate::records::chat::{group_conversation, GroupReceipts, Message, Status};
use crate::records::group::{GroupIndex, MemberRecord};
use chatd_wire::reply::{ErrorCode, Failure};

/// History entries read per log read while skipping messages outside the caller's windows.
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
fn caller_membership(log: &dyn MessageLog, group: &str, me: &str) -> Result<MemberRecord, Failure> {
    let membership = log.membership(group, me).map_err(read_failure)?;
    if let Some(m) = membership {
        return Ok(m);
    }
    if log.group(group).map_err(read_failure)?.is_none() {
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
    log: &dyn MessageLog,
    me: &str,
    group: &str,
    message: Option<&str>,
    after: Option<&str>,
    budget: usize,
) -> Result<Info, Failure> {
    let mine = caller_membership(log, group, me)?;
    let loaded = log.group(group).map_err(read_failure)?;
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
        Some(id) => Some(message_receipts(log, group, &mine, id)?),
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
    log: &dyn MessageLog,
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
    if !mine.saw(id) {
        return Err(not_found());
    }
    let entry = log
        .history_entry(&group_conversation(group), id)
        .map_err(read_failure)?
        .ok_or_else(not_found)?;
    if entry.index.from.is_empty() {
        return Err(Failure::bad("group events have no receipts"));
    }
    receipts(log, id, entry.index.recipients).map_err(read_failure)
}

/// The per-member receipt state of group message `id` sent to `members` members.
pub fn receipts(
    log: &dyn MessageLog,
    id: &str,
    members: u32,
) -> Result<GroupReceipts, RecordError> {
    let mut out = GroupReceipts {
        members,
        ..GroupReceipts::default()
    };
    for (user, status) in log.statuses(id)? {
        if status >= Status::Delivered {
            out.delivered_by.push(user.clone());
        }
        if status == Status::Read {
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
    log: &dyn MessageLog,
    me: &str,
    group: &str,
    window: &Window,
    budget: usize,
) -> Result<Page, Failure> {
    let mine = caller_membership(log, group, me)?;
    page_for(log, group, &mine, window, budget).map_err(read_failure)
}

/// The larger of two lower bounds on ids.
fn max_low<'a>(a: Bound<&'a str>, b: Bound<&'a str>) -> Bound<&'a str> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i > e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

/// The smaller of two upper bounds on ids.
fn min_high<'a>(a: Bound<&'a str>, b: Bound<&'a str>) -> Bound<&'a str> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i < e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

/// The history entries of `group` between `low` and `high` that `mine` saw, in paging order,
/// reading on in chunks until `want` are found or the range is exhausted.
fn visible(
    log: &dyn MessageLog,
    group: &str,
    mine: &MemberRecord,
    (low, high): (Bound<&str>, Bound<&str>),
    newest_first: bool,
    want: usize,
) -> Result<Vec<HistoryEntry>, RecordError> {
    let conversation = group_conversation(group);
    let mut rows = Vec::new();
    // Where the next chunk starts: past the previous chunk's last entry.
    let mut edge: Option<String> = None;
    loop {
        let (low, high) = match (&edge, newest_first) {
            (None, _) => (low, high),
            (Some(edge), true) => (low, Bound::Excluded(edge.as_str())),
            (Some(edge), false) => (Bound::Excluded(edge.as_str()), high),
        };
        let chunk = log.history(&conversation, low, high, newest_first, SCAN_CHUNK)?;
        let n = chunk.len();
        let next = chunk.last().map(|entry| entry.id.clone());
        for entry in chunk {
            if mine.saw(&entry.id) {
                rows.push(entry);
                if rows.len() >= want {
                    return Ok(rows);
                }
            }
        }
        if n < SCAN_CHUNK || next.is_none() {
            break;
        }
        edge = next;
    }
    Ok(rows)
}

fn page_for(
    log: &dyn MessageLog,
    group: &str,
    mine: &MemberRecord,
    window: &Window,
    budget: usize,
) -> Result<Page, RecordError> {
    let empty = Page {
        messages: Vec::new(),
        more: false,
    };
    let Some((first, last)) = mine.bounds() else {
        return Ok(empty);
    };
    if window.limit == 0 {
        return Ok(empty);
    }
    let low = max_low(
        Bound::Included(first),
        window
            .after
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded),
    );
    let high = min_high(
        last.map_or(Bound::Unbounded, Bound::Included),
        window
            .before
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded),
    );
    let newest_first = window.after.is_none();
    let mut rows = visible(
        log,
        group,
        mine,
        (low, high),
        newest_first,
        window.limit + 1,
    )?;
    let more = rows.len() > window.limit;
    rows.truncate(window.limit);
    // Loaded (receipts included) only as far as the budget goes.
    let loaded = rows
        .into_iter()
        .filter_map(|entry| load(log, &entry.id, &entry.index).transpose());
    history::take_within(loaded, more, newest_first, budget)
}

/// Group message `id` with its overall status and receipts; `None` when the index points at a
/// missing message.
fn load(
    log: &dyn MessageLog,
    id: &str,
    index: &GroupIndex,
) -> Result<Option<Message>, RecordError> {
    let Some(bytes) = log.message(id)? else {
        tracing::warn!("group index points at missing message {id}");
        return Ok(None);
    };
    let mut message = Message::decode(&bytes)?;
    if !index.from.is_empty() {
        let r = receipts(log, id, index.recipients)?;
        message.status = Some(overall(&r).as_str().to_string());
        message.receipts = Some(r);
    }
    Ok(Some(message))
}

/// A group's entry in `me`'s conversation list: its newest message `me` may see and how many
/// messages from others came after what `me` has read.
pub fn conversation(
    log: &dyn MessageLog,
    me: &str,
    group: &str,
    read_upto: &str,
) -> Result<Option<(Message, u64, String)>, RecordError> {
    let Some(mine) = log.membership(group, me)? else {
        return Ok(None);
    };
    let newest = Window {
        before: None,
        after: None,
        limit: 1,
    };
    // Unbudgeted: the conversation list measures (and shortens) the entry itself.
    let Some(last) = page_for(log, group, &mine, &newest, usize::MAX)?
        .messages
        .pop()
    else {
        return Ok(None);
    };
    let name = log
        .group(group)?
        .map(|g| g.record.name.clone())
        .unwrap_or_default();
    let conversation = group_conversation(group);
    let mut unread = 0u64;
    let mut budget = MAX_UNREAD_COUNTED * 2;
    // Window by window, so the entries of a gap between memberships (someone removed and
    // added back, whose earlier unread messages still count) use up none of the read budget.
    for (from, to) in &mine.windows {
        let top = to
            .as_deref()
            .map_or(last.id.as_str(), |to| to.min(&last.id));
        let low = max_low(Bound::Excluded(read_upto), Bound::Included(from));
        let below_top = match low {
            Bound::Included(l) => l <= top,
            Bound::Excluded(l) => l < top,
            Bound::Unbounded => true,
        };
        if !below_top {
            continue;
        }
        let rows = log.history(&conversation, low, Bound::Included(top), false, budget)?;
        budget -= rows.len();
        for entry in rows {
            if !entry.index.from.is_empty() && entry.index.from != me {
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
    log: &dyn MessageLog,
    me: &str,
    group: &str,
) -> Result<Option<String>, RecordError> {
    let Some(mine) = log.membership(group, me)? else {
        return Ok(None);
    };
    let Some((first, last)) = mine.bounds() else {
        return Ok(None);
    };
    let high = last.map_or(Bound::Unbounded, Bound::Included);
    // Newest first; ids in a gap between two membership windows are skipped.
    let found = visible(log, group, &mine, (Bound::Included(first), high), true, 1)?;
    Ok(found.into_iter().next().map(|entry| entry.id))
}

/// The current members of a group; `None` for no such group or a closed one.
pub fn members(log: &dyn MessageLog, group: &str) -> Result<Option<Vec<String>>, RecordError> {
    Ok(log
        .group(group)?
        .filter(|g| !g.record.closed)
        .map(|g| g.active().map(|(u, _)| u.clone()).collect()))
}
