//! Work that is claimed: unfinished fan-outs, taken with a lease in one `UPDATE … RETURNING`
//! (the row lock makes a concurrent claimant re-check each row, so two processes never hold
//! the same fan-out), and the last step of a removed user's clean-up.

use std::time::Duration;

use bytes::Bytes;
use chatd_core::ports::log::PendingFanout;
use chatd_core::records::fanout::FanoutRecord;

use super::reads::decode;
use crate::connect::Session;
use crate::error::PgError;

/// Claims for `owner`, for `lease`, every unfinished fan-out nobody else holds, in acceptance
/// (id) order. A record that does not decode is left out and logged: it can never be carried
/// out.
pub(super) async fn claim_fanouts(
    s: &Session,
    owner: &str,
    lease: Duration,
) -> Result<Vec<PendingFanout>, PgError> {
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows = s.client.query(&s.st.claim_fanouts, &[&owner, &ms]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0)?;
        let record: FanoutRecord = match decode(&row.try_get::<_, String>(1)?, "fan-out record") {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("pending fan-out of {id} unreadable, skipped: {e}");
                continue;
            }
        };
        out.push(PendingFanout {
            id,
            payload: Bytes::from(row.try_get::<_, Vec<u8>>(2)?),
            record,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Removed users whose clean-up is pending.
pub(super) async fn pending_purges(s: &Session) -> Result<Vec<String>, PgError> {
    let rows = s.client.query(&s.st.pending_purges, &[]).await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// The media rights and de-duplication entries of removed `user` go, then the pending mark,
/// in one durable transaction; how many rights and entries went.
pub(super) async fn finish_purge(s: &mut Session, user: &str) -> Result<usize, PgError> {
    let Session { client, st, .. } = s;
    let tx = client.transaction().await?;
    let rights = tx.execute(&st.purge_rights, &[&user]).await?;
    let owners = tx.execute(&st.purge_media_owners, &[&user]).await?;
    let removed = rights.saturating_add(owners);
    tx.execute(&st.purge_done, &[&user]).await?;
    tx.commit().await?;
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}
