//! One [`LogBatch`] as one transaction.
//!
//! Every intent is one statement that needs no read first (see `statements.rs`), so the
//! statements of a batch are pipelined: sent together and answered together, instead of one
//! network round trip each. Cid claims are the one thing whose answer decides what follows (a
//! remembered cid skips its whole unit, before anything of the unit is written), so a batch
//! takes three round trips after `BEGIN`: all cid claims (`INSERT … ON CONFLICT DO NOTHING
//! RETURNING`, in unit order, so a cid claimed twice in one batch is a duplicate the second
//! time), the intents of the units that were applied, and the acks of the duplicates. A batch
//! that forgets a user is carried out unit by unit instead, so that a cid the forgetting
//! deletes can be claimed again later in the same batch. The transaction's `COMMIT` returns
//! only once it is durable (`synchronous_commit = on`); only then are the outcomes given.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chatd_core::ports::log::{
    Claimant, Intent, LogBatch, Queued, SummaryChange, Unit, UnitOutcome,
};
use chatd_core::records::chat::Status;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::connect::Session;
use crate::error::PgError;
use crate::statements::Statements;

/// One parameter of a staged statement.
type Param = Box<dyn ToSql + Sync + Send>;

/// One statement with its parameters, staged for a pipeline.
struct Sql {
    statement: Statement,
    params: Vec<Param>,
}

/// Boxes parameters.
macro_rules! params {
    ($($p:expr),* $(,)?) => { vec![$(Box::new($p) as Param),*] };
}

/// The stored number of a status (no row is `Sent`).
pub(super) fn status_code(status: Status) -> i16 {
    match status {
        Status::Sent => 0,
        Status::Delivered => 1,
        Status::Read => 2,
    }
}

/// JSON text of a record.
fn json<T: serde::Serialize>(record: &T, what: &str) -> Result<String, PgError> {
    serde_json::to_string(record).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// Runs `staged` on `tx` pipelined, in order; the rows of each.
async fn pipeline(
    tx: &Transaction<'_>,
    staged: &[Sql],
) -> Result<Vec<Vec<tokio_postgres::Row>>, PgError> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = staged
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    let futures = staged
        .iter()
        .zip(&params)
        .map(|(s, p)| tx.query(&s.statement, p));
    Ok(try_join_all(futures).await?)
}

/// Carries out `batch` in one durable transaction, with the `dequeues` (users, queue ids)
/// waiting; one outcome per unit.
pub(super) async fn commit(
    session: &mut Session,
    batch: LogBatch,
    dequeues: (Vec<String>, Vec<String>),
) -> Result<Vec<UnitOutcome>, PgError> {
    let Session { client, st, .. } = session;
    let tx = client.transaction().await?;
    let LogBatch {
        units,
        newest,
        claimant,
        ..
    } = batch;
    let forgets = units.iter().any(|u| {
        u.intents
            .iter()
            .any(|i| matches!(i, Intent::ForgetUser { .. }))
    });
    // The newest id and the dequeues go with the (last) pipeline of writes: no round trip
    // of their own.
    let mut last_id: Vec<Sql> = newest
        .map(|id| Sql {
            statement: st.put_last_id.clone(),
            params: params![id],
        })
        .into_iter()
        .collect();
    if !dequeues.0.is_empty() {
        last_id.push(Sql {
            statement: st.dequeue.clone(),
            params: params![dequeues.0, dequeues.1],
        });
    }
    let outcomes = if forgets {
        let mut outcomes = Vec::with_capacity(units.len());
        let count = units.len();
        let mut last_id = last_id;
        for (n, unit) in units.into_iter().enumerate() {
            let extra = if n + 1 == count {
                std::mem::take(&mut last_id)
            } else {
                Vec::new()
            };
            let mut one = apply(&tx, st, vec![unit], claimant.as_ref(), extra).await?;
            outcomes.append(&mut one);
        }
        outcomes
    } else {
        apply(&tx, st, units, claimant.as_ref(), last_id).await?
    };
    tx.commit().await?;
    Ok(outcomes)
}

/// Claims the cids of `units`, then writes the intents of those applied (and `extra` after
/// them), then finds the acks of the duplicates.
async fn apply(
    tx: &Transaction<'_>,
    st: &Statements,
    units: Vec<Unit>,
    claimant: Option<&Claimant>,
    extra: Vec<Sql>,
) -> Result<Vec<UnitOutcome>, PgError> {
    let held = held_claims(tx, st, &units, claimant).await?;
    let claims: Vec<Sql> = units
        .iter()
        .filter(|u| continues(u, held.as_ref()))
        .filter_map(|u| u.cid.as_ref())
        .map(|c| Sql {
            statement: st.claim_cid.clone(),
            params: params![c.user.clone(), c.cid.clone(), c.ack.to_vec()],
        })
        .collect();
    let mut claimed = pipeline(tx, &claims).await?.into_iter();
    let total = units.len();
    let mut writes = Vec::new();
    // Units skipped, by index, with the (user, cid) whose ack they give.
    let mut duplicates: Vec<(usize, String, String)> = Vec::new();
    // Units skipped because another owner holds a fan-out they continue.
    let mut taken = Vec::new();
    for (n, unit) in units.into_iter().enumerate() {
        if !continues(&unit, held.as_ref()) {
            taken.push(n);
            continue;
        }
        if let Some(claim) = unit.cid {
            // An empty answer: the cid was remembered already (by an earlier unit too).
            if claimed.next().is_some_and(|rows| rows.is_empty()) {
                duplicates.push((n, claim.user, claim.cid));
                continue;
            }
        }
        for intent in unit.intents {
            stage(st, intent, claimant, &mut writes)?;
        }
    }
    writes.extend(extra);
    pipeline(tx, &writes).await?;
    let lookups: Vec<Sql> = duplicates
        .iter()
        .map(|(_, user, cid)| Sql {
            statement: st.cid_ack.clone(),
            params: params![user.clone(), cid.clone()],
        })
        .collect();
    let acks: HashMap<usize, Bytes> = duplicates
        .iter()
        .zip(pipeline(tx, &lookups).await?)
        .map(|((n, _, _), rows)| {
            let ack = rows
                .first()
                .and_then(|r| r.try_get::<_, Vec<u8>>(0).ok())
                .unwrap_or_default();
            (*n, Bytes::from(ack))
        })
        .collect();
    Ok((0..total)
        .map(|n| match acks.get(&n) {
            Some(ack) => UnitOutcome::Duplicate(ack.clone()),
            None if taken.contains(&n) => UnitOutcome::Taken,
            None => UnitOutcome::Applied,
        })
        .collect())
}

/// When some unit continues a stored fan-out ([`Unit::fence`]): renews every claim the
/// claimant holds and returns which fan-outs those are (none without a claimant).
async fn held_claims(
    tx: &Transaction<'_>,
    st: &Statements,
    units: &[Unit],
    claimant: Option<&Claimant>,
) -> Result<Option<HashSet<String>>, PgError> {
    if units.iter().all(|u| u.fence.is_empty()) {
        return Ok(None);
    }
    let Some(c) = claimant else {
        return Ok(Some(HashSet::new()));
    };
    let lease = i64::try_from(c.lease.as_millis()).unwrap_or(i64::MAX);
    let rows = tx.query(&st.renew_claims, &[&c.owner, &lease]).await?;
    let held = rows
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;
    Ok(Some(held))
}

/// Whether `unit` may be written: every fan-out it continues is held by the claimant.
fn continues(unit: &Unit, held: Option<&HashSet<String>>) -> bool {
    match held {
        None => true,
        Some(held) => unit.fence.iter().all(|id| held.contains(id)),
    }
}

/// Stages the statements of one intent.
fn stage(
    st: &Statements,
    intent: Intent,
    claimant: Option<&Claimant>,
    out: &mut Vec<Sql>,
) -> Result<(), PgError> {
    let mut push = |statement: &Statement, params: Vec<Param>| {
        out.push(Sql {
            statement: statement.clone(),
            params,
        })
    };
    match intent {
        Intent::Message { id, payload } => push(&st.put_message, params![id, payload.to_vec()]),
        Intent::History {
            conversation,
            id,
            index,
        } => {
            let (sender, recipients) = match index {
                Some(index) => (
                    Some(index.from),
                    Some(i32::try_from(index.recipients).unwrap_or(i32::MAX)),
                ),
                None => (None, None),
            };
            push(
                &st.put_history,
                params![conversation, id, sender, recipients],
            );
        }
        Intent::Enqueue { user, qid, entry } => {
            let (pointer, receipt) = match entry {
                Queued::Message => (None, None),
                Queued::Pointer(id) => (Some(id), None),
                Queued::Receipt(payload) => (None, Some(payload.to_vec())),
            };
            push(&st.enqueue, params![user, qid, pointer, receipt]);
        }
        // `Sent` is the absence of a status: never further than what is stored.
        Intent::Status { record, .. } if record.status == Status::Sent => {}
        Intent::Status { id, user, record } => {
            let ts = i64::try_from(record.ts).unwrap_or(i64::MAX);
            push(
                &st.put_status,
                params![id, user, status_code(record.status), ts],
            );
        }
        Intent::Summary {
            user,
            conversation,
            peer,
            group,
            change,
        } => match change {
            SummaryChange::Last(id) => push(
                &st.summary_last,
                params![user, conversation, peer, group, id],
            ),
            SummaryChange::Received(id) => push(
                &st.summary_received,
                params![user, conversation, peer, group, id],
            ),
            SummaryChange::ReadOne => push(
                &st.summary_read_one,
                params![user, conversation, peer, group],
            ),
            SummaryChange::ReadUpto(id) => push(
                &st.summary_read_upto,
                params![user, conversation, peer, group, id],
            ),
            SummaryChange::Joined(id) => {
                push(&st.summary_joined, params![user, conversation, peer, id])
            }
        },
        Intent::MediaRight { media, user } => push(&st.put_media_right, params![user, media]),
        Intent::PushJob {
            user,
            conversation,
            id,
            queued,
        } => push(&st.put_push_job, params![user, conversation, id, queued]),
        Intent::Group { group, record } => {
            let record = json(&record, "group record")?;
            push(&st.put_group, params![group, record]);
        }
        Intent::Member {
            group,
            user,
            record,
        } => {
            let active = record.active();
            let record = json(&record, "membership record")?;
            push(&st.put_member, params![group.clone(), user.clone(), record]);
            let index = if active {
                &st.index_member
            } else {
                &st.unindex_member
            };
            push(index, params![user, group]);
        }
        Intent::ForgetMember { group, user } => {
            push(&st.delete_member, params![group.clone(), user.clone()]);
            push(&st.unindex_member, params![user, group]);
        }
        Intent::Fanout { id, record } => match (record, claimant) {
            (None, _) => push(&st.delete_fanout, params![id]),
            (Some(record), Some(c)) => {
                let record = json(&record, "fan-out record")?;
                let lease = i64::try_from(c.lease.as_millis()).unwrap_or(i64::MAX);
                push(
                    &st.put_fanout_claimed,
                    params![id, record, c.owner.clone(), lease],
                );
            }
            (Some(record), None) => {
                let record = json(&record, "fan-out record")?;
                push(&st.put_fanout, params![id, record]);
            }
        },
        Intent::ForgetUser { user } => {
            for statement in [
                &st.forget_queue,
                &st.forget_summaries,
                &st.forget_cids,
                &st.forget_push_jobs,
                &st.forget_memberships,
                &st.forget_token_owners,
                &st.forget_push_tokens,
                &st.forget_last_seen,
                &st.forget_mqtt_sessions,
                &st.forget_profile,
            ] {
                push(statement, params![user.clone()]);
            }
        }
        Intent::Account { user, record } => {
            let record = json(&record, "account record")?;
            push(&st.put_account, params![user, record]);
        }
    }
    Ok(())
}
