//! The MQTT sessions port: `mqtt_sessions`, one row per kept session.

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::sessions::{SessionStore, StoredSession};
use tokio_postgres::Row;

use super::Records;

/// Every column but the state, which `list` leaves out.
const HEADERS: &str = "client_id, user_id, expiry_secs, ended_ms, ''::bytea";
const GET: &str =
    "SELECT client_id, user_id, expiry_secs, ended_ms, state FROM mqtt_sessions WHERE client_id = $1";
const PUT: &str = "INSERT INTO mqtt_sessions (client_id, user_id, expiry_secs, ended_ms, state) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE SET \
                   user_id = EXCLUDED.user_id, expiry_secs = EXCLUDED.expiry_secs, \
                   ended_ms = EXCLUDED.ended_ms, state = EXCLUDED.state";
const REMOVE: &str = "DELETE FROM mqtt_sessions WHERE client_id = $1";

/// Kept MQTT sessions in PostgreSQL.
#[derive(Clone)]
pub struct PostgresSessions {
    pub(crate) records: Records,
}

fn session(row: &Row) -> Result<StoredSession, tokio_postgres::Error> {
    let expiry: i64 = row.try_get(2)?;
    let ended: Option<i64> = row.try_get(3)?;
    Ok(StoredSession {
        client_id: row.try_get(0)?,
        user: row.try_get(1)?,
        expiry_secs: u32::try_from(expiry.max(0)).unwrap_or(u32::MAX),
        ended_ms: ended.map(|ms| u64::try_from(ms).unwrap_or(0)),
        state: row.try_get(4)?,
    })
}

impl SessionStore for PostgresSessions {
    fn get(&self, client_id: &str) -> Result<Option<StoredSession>, RecordError> {
        let client_id = client_id.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(GET).await?;
            let row = s.client.query_opt(&st, &[&client_id]).await?;
            Ok(row.as_ref().map(session).transpose()?)
        })?)
    }

    fn put(&self, kept: &StoredSession) -> Result<(), RecordError> {
        let kept = kept.clone();
        Ok(self.records.call(|c| async move {
            // The durable connection: a session announced as present keeps what it had.
            let mut s = c.writer().await?;
            let st = s.statement(PUT).await?;
            let expiry = i64::from(kept.expiry_secs);
            let ended = kept
                .ended_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
            s.client
                .execute(
                    &st,
                    &[&kept.client_id, &kept.user, &expiry, &ended, &kept.state],
                )
                .await?;
            Ok(())
        })?)
    }

    fn remove(&self, client_id: &str) -> Result<(), RecordError> {
        let client_id = client_id.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let st = s.statement(REMOVE).await?;
            s.client.execute(&st, &[&client_id]).await?;
            Ok(())
        })?)
    }

    fn list(&self) -> Result<Vec<StoredSession>, RecordError> {
        Ok(self.records.call(|c| async move {
            let s = c.reader().await?;
            let rows = s
                .client
                .query(
                    &format!("SELECT {HEADERS} FROM mqtt_sessions ORDER BY client_id"),
                    &[],
                )
                .await?;
            Ok(rows.iter().map(session).collect::<Result<Vec<_>, _>>()?)
        })?)
    }
}
