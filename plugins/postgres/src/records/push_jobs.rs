//! The push jobs port: the jobs are the `push_jobs` rows the log's commits write; claims are
//! `push_claims` rows, one per claimed (user, conversation) pair.
//!
//! Claims are shared by every process on the database, so they live in it: a claim runs in one
//! transaction that first takes a transaction-level advisory lock, which makes the claims of
//! all processes one after another. Inside it, expired claims go, the jobs are read grouped by
//! pair together with any claim that still holds the pair, and the due, unheld pairs get a
//! claim row; both happen under the lock, so no other claim can slip in between the read and
//! the write. `finish` deletes exactly the claimed jobs and the caller's own claim row in one
//! transaction, so a claim's read sees either both or neither.

use std::time::Duration;

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::{Claim, JobGroup, MessageNotice, PushJobs};
use chatd_wire::ids::now_ms;

use super::push::PostgresPush;
use crate::error::PgError;

/// Serialises push claims across processes (released at commit); the migrations use 7361726.
const LOCK: &str = "SELECT pg_advisory_xact_lock(7361727)";
/// `statement_timestamp()`, not `now()`: the transaction may have waited for the lock.
const EXPIRE: &str = "DELETE FROM push_claims WHERE lease_until <= statement_timestamp()";
/// Every pair with its jobs, oldest first, and what an unexpired claim of it took.
const GROUPS: &str = "SELECT j.user_id, j.conversation, array_agg(j.id ORDER BY j.id), \
                      array_agg(coalesce(j.queued, j.id) ORDER BY j.id), c.taken \
                      FROM push_jobs j LEFT JOIN push_claims c \
                      ON c.user_id = j.user_id AND c.conversation = j.conversation \
                      GROUP BY j.user_id, j.conversation, c.taken \
                      ORDER BY j.user_id, j.conversation";
const TAKE: &str = "INSERT INTO push_claims (user_id, conversation, claimed_by, lease_until, taken) \
                    VALUES ($1, $2, $3, statement_timestamp() + $4::bigint::float8 * interval '1 millisecond', $5) \
                    ON CONFLICT (user_id, conversation) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, \
                    lease_until = EXCLUDED.lease_until, taken = EXCLUDED.taken";
const DONE: &str =
    "DELETE FROM push_jobs WHERE user_id = $1 AND conversation = $2 AND id = ANY($3)";
const RELEASE: &str =
    "DELETE FROM push_claims WHERE user_id = $1 AND conversation = $2 AND claimed_by = $3";
const QUEUED: &str = "SELECT 1 FROM queue WHERE user_id = $1 AND qid = $2";
const MESSAGE: &str = "SELECT payload FROM messages WHERE id = $1";
const UNREAD: &str = "SELECT unread FROM summaries WHERE user_id = $1 AND conversation = $2";

/// One pair as read by a claim, with what a claim that holds it took.
struct Pending {
    group: JobGroup,
    held: Option<i32>,
}

impl PostgresPush {
    /// Ends `owner`'s claim of `group`'s pair, if it holds it.
    fn end_claim(&self, owner: &str, group: &JobGroup) -> Result<(), PgError> {
        let (user, conversation, owner) = (
            group.user.clone(),
            group.conversation.clone(),
            owner.to_string(),
        );
        self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let st = s.statement(RELEASE).await?;
            s.client
                .execute(&st, &[&user, &conversation, &owner])
                .await?;
            Ok(())
        })
    }
}

impl PushJobs for PostgresPush {
    fn claim(
        &self,
        owner: &str,
        lease: Duration,
        window: Duration,
        limit: usize,
    ) -> Result<Claim, RecordError> {
        let owner = owner.to_string();
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Ok(self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let (lock, expire, groups, take) = (
                s.statement(LOCK).await?,
                s.statement(EXPIRE).await?,
                s.statement(GROUPS).await?,
                s.statement(TAKE).await?,
            );
            let tx = s.client.transaction().await?;
            tx.execute(&lock, &[]).await?;
            tx.execute(&expire, &[]).await?;
            let pending = tx
                .query(&groups, &[])
                .await?
                .iter()
                .map(|row| {
                    Ok(Pending {
                        group: JobGroup {
                            user: row.try_get(0)?,
                            conversation: row.try_get(1)?,
                            ids: row.try_get(2)?,
                            queued: row.try_get(3)?,
                        },
                        held: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, PgError>>()?;
            let now = now_ms();
            let mut claim = Claim::default();
            for Pending { group, held } in pending {
                if let Some(taken) = held {
                    claim.deferred |= group.ids.len() > usize::try_from(taken).unwrap_or(0);
                    continue;
                }
                let due = group.oldest_ms().saturating_add(window);
                if due > now {
                    claim.next_due = Some(claim.next_due.map_or(due, |d| d.min(due)));
                    continue;
                }
                if claim.groups.len() >= limit {
                    claim.deferred = true;
                    continue;
                }
                let taken = i32::try_from(group.ids.len()).unwrap_or(i32::MAX);
                tx.execute(
                    &take,
                    &[&group.user, &group.conversation, &owner, &lease, &taken],
                )
                .await?;
                claim.groups.push(group);
            }
            tx.commit().await?;
            Ok(claim)
        })?)
    }

    fn finish(&self, owner: &str, group: &JobGroup) -> Result<(), RecordError> {
        let (user, conversation, ids, who) = (
            group.user.clone(),
            group.conversation.clone(),
            group.ids.clone(),
            owner.to_string(),
        );
        let done = self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let (done, release) = (s.statement(DONE).await?, s.statement(RELEASE).await?);
            let tx = s.client.transaction().await?;
            tx.execute(&done, &[&user, &conversation, &ids]).await?;
            tx.execute(&release, &[&user, &conversation, &who]).await?;
            tx.commit().await?;
            Ok(())
        });
        if done.is_err() {
            // The claim ends even when the delete failed: the next claim finds the jobs again.
            if let Err(e) = self.end_claim(owner, group) {
                tracing::warn!("cannot end a push claim: {e}");
            }
        }
        Ok(done?)
    }

    fn release(&self, owner: &str, group: &JobGroup) {
        // Not ended, the claim still ends with its lease.
        if let Err(e) = self.end_claim(owner, group) {
            tracing::warn!("cannot release a push claim: {e}");
        }
    }

    fn still_queued(&self, user: &str, queued: &str) -> Result<bool, RecordError> {
        let (user, queued) = (user.to_string(), queued.to_string());
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(QUEUED).await?;
            Ok(s.client.query_opt(&st, &[&user, &queued]).await?.is_some())
        })?)
    }

    fn notice(&self, id: &str) -> Result<MessageNotice, RecordError> {
        let id = id.to_string();
        let payload = self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(MESSAGE).await?;
            let row = s.client.query_opt(&st, &[&id]).await?;
            Ok(row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?)
        })?;
        Ok(MessageNotice::from_stored(payload.as_deref()))
    }

    fn unread(&self, user: &str, conversation: &str) -> Result<u64, RecordError> {
        let (user, conversation) = (user.to_string(), conversation.to_string());
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(UNREAD).await?;
            let row = s.client.query_opt(&st, &[&user, &conversation]).await?;
            let unread = row.map(|r| r.try_get::<_, i64>(0)).transpose()?;
            Ok(unread.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
        })?)
    }
}
