//! What messaging reads back: queues and history bounded by the committed watermark (see
//! `watermark.rs`), and everything else as applied, because the caller that reads it (the
//! committer deciding its next batch) must see its own writes.

use std::ops::Bound;

use crate::keys;
use bytes::Bytes;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::log::{HistoryEntry, QueueItem, QueueItemKind};
use chatd_core::records::chat::{Status, StatusRecord, Summary};
use chatd_core::records::group::GroupIndex;
use chatd_kv::KvStore;
use chatd_wire::ids::valid_message_id;

use super::acked::AckedKeys;
use super::commit::POINTER;
use super::held::HeldEntries;
use super::rows_under;
use crate::accounts::failed;

/// Up to `limit` items of `user`'s queue with a queue id above `after` and at most
/// `committed`, skipping those dequeued but not yet deleted, held entries included.
pub(super) fn queue(
    store: &dyn KvStore,
    acked: &AckedKeys,
    held: &HeldEntries,
    committed: &str,
    user: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<QueueItem>, RecordError> {
    if committed.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let prefix = keys::queue_prefix(user);
    let mut from = match after {
        Some(after) => keys::successor(&keys::queue_entry(user, after)),
        None => prefix.as_bytes().to_vec(),
    };
    let end = keys::successor(&keys::queue_entry(user, committed));
    // Taken before the store is read: an entry written out meanwhile is held until its
    // record is in the store, so it is found in one or the other (or both).
    let mut held_rows = held.range(&from, &end, limit);
    let mut rows = Vec::with_capacity(limit.min(1024));
    // Held across the scans, so that a commit deleting dequeued keys meanwhile cannot make
    // one both gone from the set and still found in the store. A page is short only when the
    // queue has no more.
    let acked_now = acked.hold();
    while rows.len() < limit {
        let want = limit - rows.len();
        let page = store.scan(&from, &end, false, want).map_err(failed)?;
        let full = page.len() == want;
        let Some((last, _)) = page.last() else { break };
        from = keys::successor(last);
        rows.extend(page.into_iter().filter(|(key, _)| !acked_now.contains(key)));
        if !full {
            break;
        }
    }
    held_rows.retain(|(key, _)| !acked_now.contains(key));
    drop(acked_now);
    if !held_rows.is_empty() {
        rows.append(&mut held_rows);
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.dedup_by(|a, b| a.0 == b.0);
        rows.truncate(limit);
    }
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let qid = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
        let message = match value.split_first() {
            None => qid.clone(),
            Some((&POINTER, target)) => String::from_utf8_lossy(target).into_owned(),
            Some(_) => {
                // A receipt event: the value is the payload itself.
                out.push(QueueItem {
                    qid,
                    kind: QueueItemKind::Receipt(Bytes::from(value)),
                });
                continue;
            }
        };
        match store.get(&keys::message(&message)).map_err(failed)? {
            Some(payload) => out.push(QueueItem {
                qid,
                kind: QueueItemKind::Message(Bytes::from(payload)),
            }),
            None => tracing::warn!("queue of {user} points at missing message {message}"),
        }
    }
    Ok(out)
}

/// Up to `limit` history entries of `conversation` between `low` and `high` and at most
/// `committed`, oldest first or newest first.
pub(super) fn history(
    store: &dyn KvStore,
    committed: &str,
    conversation: &str,
    low: Bound<&str>,
    high: Bound<&str>,
    newest_first: bool,
    limit: usize,
) -> Result<Vec<HistoryEntry>, RecordError> {
    if committed.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let prefix = keys::history_prefix(conversation);
    let entry = |id: &str| keys::history_entry(conversation, id);
    let start = match low {
        Bound::Included(id) => entry(id),
        Bound::Excluded(id) => keys::successor(&entry(id)),
        Bound::Unbounded => prefix.as_bytes().to_vec(),
    };
    let end = match high {
        Bound::Included(id) => keys::successor(&entry(id)),
        Bound::Excluded(id) => entry(id),
        Bound::Unbounded => keys::prefix_end(&prefix),
    };
    let end = end.min(keys::successor(&entry(committed)));
    let rows = store
        .scan(&start, &end, newest_first, limit)
        .map_err(failed)?;
    Ok(rows
        .into_iter()
        .map(|(key, value)| HistoryEntry {
            id: String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned(),
            index: group_index(&value),
        })
        .collect())
}

/// The history entry of `id` in `conversation`, if committed.
pub(super) fn history_entry(
    store: &dyn KvStore,
    committed: &str,
    conversation: &str,
    id: &str,
) -> Result<Option<HistoryEntry>, RecordError> {
    if committed.is_empty() || id > committed {
        return Ok(None);
    }
    Ok(store
        .get(&keys::history_entry(conversation, id))
        .map_err(failed)?
        .map(|value| HistoryEntry {
            id: id.to_string(),
            index: group_index(&value),
        }))
}

/// The group index of a history entry; 1:1 entries are empty and count as the default.
fn group_index(value: &[u8]) -> GroupIndex {
    if value.is_empty() {
        GroupIndex::default()
    } else {
        GroupIndex::decode(value)
    }
}

/// Every readable conversation summary of `user`, by conversation.
pub(super) fn summaries(
    store: &dyn KvStore,
    user: &str,
) -> Result<Vec<(String, Summary)>, RecordError> {
    let prefix = keys::summary_prefix(user);
    let rows = rows_under(store, &prefix)?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let conversation =
            String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
        match Summary::decode(&value) {
            Ok(summary) => out.push((conversation, summary)),
            // The next change to it writes a fresh one; the list goes on without it.
            Err(e) => tracing::warn!("{user}: skipping summary of {conversation}: {e}"),
        }
    }
    Ok(out)
}

/// The receipt status of `id` for `user`; none, or an unreadable one, is `Sent`.
pub(super) fn status(store: &dyn KvStore, id: &str, user: &str) -> Result<Status, RecordError> {
    Ok(match store.get(&keys::status(id, user)).map_err(failed)? {
        None => Status::Sent,
        Some(bytes) => StatusRecord::decode(&bytes).map_or_else(
            |e| {
                tracing::warn!("message {id}: {e}");
                Status::Sent
            },
            |r| r.status,
        ),
    })
}

/// Every readable receipt status of `id`, in user id order.
pub(super) fn statuses(
    store: &dyn KvStore,
    id: &str,
) -> Result<Vec<(String, Status)>, RecordError> {
    let prefix = keys::status_prefix(id);
    let rows = rows_under(store, &prefix)?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, value)| {
            let user = std::str::from_utf8(key.get(prefix.len()..)?).ok()?;
            let record = StatusRecord::decode(&value).ok()?;
            Some((user.to_string(), record.status))
        })
        .collect())
}

/// The highest id ever written: the newest stored message id or the highest id recorded
/// under `x/last_id` (receipt queue ids live only in queues), whichever is higher.
pub(super) fn newest_id(store: &dyn KvStore) -> Result<Option<String>, RecordError> {
    let prefix = keys::MESSAGES_PREFIX;
    let rows = store
        .scan(prefix.as_bytes(), &keys::prefix_end(prefix), true, 1)
        .map_err(failed)?;
    let message = rows.into_iter().next().and_then(|(key, _)| {
        let id = String::from_utf8(key.get(prefix.len()..)?.to_vec()).ok()?;
        valid_message_id(&id).then_some(id)
    });
    let last = store
        .get(keys::LAST_ID)
        .map_err(failed)?
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|id| valid_message_id(id));
    Ok(message.max(last))
}
