//! What messaging reads back. Each read is one statement on a reader connection, outside any
//! transaction, so it sees exactly what was committed when it started.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use chatd_core::ports::log::{HistoryEntry, QueueItem, QueueItemKind};
use chatd_core::records::chat::{Status, Summary};
use chatd_core::records::group::{Group, GroupIndex, GroupRecord, MemberRecord};
use chatd_wire::ids::valid_message_id;
use tokio_postgres::Row;

use crate::connect::Session;
use crate::error::PgError;

/// A row count limit as SQL wants it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A record stored as JSON text.
pub(super) fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, PgError> {
    serde_json::from_str(text).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// A stored status number; an unknown one counts as `Sent` (and is logged), as an unreadable
/// record does in the embedded store.
fn status_of(code: i16, id: &str) -> Status {
    match code {
        1 => Status::Delivered,
        2 => Status::Read,
        0 => Status::Sent,
        other => {
            tracing::warn!("message {id}: unknown receipt status {other}");
            Status::Sent
        }
    }
}

/// The highest id ever written: the newest message id or the highest id a batch issued.
pub(super) async fn newest_id(s: &Session) -> Result<Option<String>, PgError> {
    let row = s.client.query_one(&s.st.newest, &[]).await?;
    let message: Option<String> = row.try_get(0)?;
    let last: Option<String> = row.try_get(1)?;
    let valid = |id: Option<String>| id.filter(|id| valid_message_id(id));
    Ok(valid(message).max(valid(last)))
}

/// The ack remembered for `user`'s `cid`.
pub(super) async fn remembered_ack(
    s: &Session,
    user: &str,
    cid: &str,
) -> Result<Option<Bytes>, PgError> {
    let row = s.client.query_opt(&s.st.cid_ack, &[&user, &cid]).await?;
    Ok(match row {
        Some(row) => Some(Bytes::from(row.try_get::<_, Vec<u8>>(0)?)),
        None => None,
    })
}

/// The payload of message `id`.
pub(super) async fn message(s: &Session, id: &str) -> Result<Option<Bytes>, PgError> {
    let row = s.client.query_opt(&s.st.message, &[&id]).await?;
    Ok(match row {
        Some(row) => Some(Bytes::from(row.try_get::<_, Vec<u8>>(0)?)),
        None => None,
    })
}

/// The status of `id` for `user`.
pub(super) async fn status(s: &Session, id: &str, user: &str) -> Result<Status, PgError> {
    let row = s.client.query_opt(&s.st.status, &[&id, &user]).await?;
    Ok(match row {
        Some(row) => status_of(row.try_get(0)?, id),
        None => Status::Sent,
    })
}

/// Every status of `id`, in user order.
pub(super) async fn statuses(s: &Session, id: &str) -> Result<Vec<(String, Status)>, PgError> {
    let rows = s.client.query(&s.st.statuses, &[&id]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, status_of(row.try_get(1)?, id))))
        .collect()
}

/// Up to `limit` items of `user`'s queue after `after` (`""`: from the start).
pub(super) async fn queue(
    s: &Session,
    user: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<QueueItem>, PgError> {
    let rows = s
        .client
        .query(&s.st.queue, &[&user, &after, &sql_limit(limit)])
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let qid: String = row.try_get(0)?;
        let receipt: Option<Vec<u8>> = row.try_get(1)?;
        let payload: Option<Vec<u8>> = row.try_get(2)?;
        let kind = match (receipt, payload) {
            (Some(receipt), _) => QueueItemKind::Receipt(Bytes::from(receipt)),
            (None, Some(payload)) => QueueItemKind::Message(Bytes::from(payload)),
            (None, None) => {
                let target: String = row.try_get(3)?;
                tracing::warn!("queue of {user} points at missing message {target}");
                continue;
            }
        };
        out.push(QueueItem { qid, kind });
    }
    Ok(out)
}

/// The group index of a history row (`sender`, `recipients` columns from `first`).
fn index_of(row: &Row, first: usize) -> Result<GroupIndex, PgError> {
    let sender: Option<String> = row.try_get(first)?;
    let recipients: Option<i32> = row.try_get(first + 1)?;
    Ok(GroupIndex {
        from: sender.unwrap_or_default(),
        recipients: recipients.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    })
}

/// Up to `limit` history entries of `conversation` between `low` and `high`.
pub(super) async fn history(
    s: &mut Session,
    conversation: &str,
    low: Bound<String>,
    high: Bound<String>,
    newest_first: bool,
    limit: usize,
) -> Result<Vec<HistoryEntry>, PgError> {
    let mut sql =
        String::from("SELECT id, sender, recipients FROM history WHERE conversation = $1");
    let mut bounds: Vec<String> = Vec::new();
    for (bound, included, excluded) in [(low, ">=", ">"), (high, "<=", "<")] {
        let (op, value) = match bound {
            Bound::Included(v) => (included, v),
            Bound::Excluded(v) => (excluded, v),
            Bound::Unbounded => continue,
        };
        bounds.push(value);
        sql.push_str(&format!(" AND id {op} ${}", bounds.len() + 1));
    }
    sql.push_str(if newest_first {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id"
    });
    sql.push_str(&format!(" LIMIT ${}", bounds.len() + 2));
    let statement = s.prepared(sql).await?;
    let limit = sql_limit(limit);
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&conversation];
    params.extend(
        bounds
            .iter()
            .map(|b| b as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    params.push(&limit);
    let rows = s.client.query(&statement, &params).await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                id: row.try_get(0)?,
                index: index_of(row, 1)?,
            })
        })
        .collect()
}

/// The history entry of `id` in `conversation`.
pub(super) async fn history_entry(
    s: &Session,
    conversation: &str,
    id: &str,
) -> Result<Option<HistoryEntry>, PgError> {
    let row = s
        .client
        .query_opt(&s.st.history_entry, &[&conversation, &id])
        .await?;
    Ok(match row {
        Some(row) => Some(HistoryEntry {
            id: id.to_string(),
            index: index_of(&row, 0)?,
        }),
        None => None,
    })
}

/// Every summary of `user`, by conversation.
pub(super) async fn summaries(s: &Session, user: &str) -> Result<Vec<(String, Summary)>, PgError> {
    let rows = s.client.query(&s.st.summaries, &[&user]).await?;
    rows.iter()
        .map(|row| {
            let unread: i64 = row.try_get(5)?;
            Ok((
                row.try_get(0)?,
                Summary {
                    peer: row.try_get(1)?,
                    group: row.try_get(2)?,
                    read_upto: row.try_get(3)?,
                    last_id: row.try_get(4)?,
                    unread: u64::try_from(unread).unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// A group with every membership record; an unreadable membership record is skipped (and
/// logged), as the others still make a usable group.
pub(super) async fn group(s: &Session, group: &str) -> Result<Option<Group>, PgError> {
    let rows = s.client.query(&s.st.group, &[&group]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let record: GroupRecord = decode(&first.try_get::<_, String>(0)?, "group record")?;
    let mut members = BTreeMap::new();
    for row in &rows {
        let (Some(user), Some(text)) = (
            row.try_get::<_, Option<String>>(1)?,
            row.try_get::<_, Option<String>>(2)?,
        ) else {
            continue;
        };
        match decode::<MemberRecord>(&text, "membership record") {
            Ok(m) => {
                members.insert(user, m);
            }
            Err(e) => tracing::warn!("group {group}: skipping member {user}: {e}"),
        }
    }
    Ok(Some(Group {
        id: group.to_string(),
        record,
        members,
    }))
}

/// One membership record.
pub(super) async fn membership(
    s: &Session,
    group: &str,
    user: &str,
) -> Result<Option<MemberRecord>, PgError> {
    let row = s
        .client
        .query_opt(&s.st.membership, &[&group, &user])
        .await?;
    match row {
        Some(row) => Ok(Some(decode(
            &row.try_get::<_, String>(0)?,
            "membership record",
        )?)),
        None => Ok(None),
    }
}

/// Up to `limit` groups `user` is a current member of.
pub(super) async fn groups_of(
    s: &Session,
    user: &str,
    limit: usize,
) -> Result<Vec<String>, PgError> {
    let rows = s
        .client
        .query(&s.st.groups_of, &[&user, &sql_limit(limit)])
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}
