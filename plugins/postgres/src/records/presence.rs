//! The last-seen port: `last_seen`, one row per user.

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::presence::LastSeenStore;

use super::Records;

const GET: &str = "SELECT ms FROM last_seen WHERE user_id = $1";
const PUT: &str = "INSERT INTO last_seen (user_id, ms) VALUES ($1, $2) \
                   ON CONFLICT (user_id) DO UPDATE SET ms = EXCLUDED.ms";

/// Last-seen times kept in PostgreSQL.
#[derive(Clone)]
pub struct PostgresLastSeen {
    pub(crate) records: Records,
}

impl LastSeenStore for PostgresLastSeen {
    fn last_seen(&self, user: &str) -> Result<Option<u64>, RecordError> {
        let user = user.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(GET).await?;
            let row = s.client.query_opt(&st, &[&user]).await?;
            // A negative time was never written by chatd: as unknown as no row.
            Ok(row
                .map(|r| r.try_get::<_, i64>(0))
                .transpose()?
                .and_then(|ms| u64::try_from(ms).ok()))
        })?)
    }

    fn set_last_seen(&self, user: &str, ms: u64) -> Result<(), RecordError> {
        let user = user.to_string();
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        Ok(self.records.call(|c| async move {
            // The lazy connection: the port allows the last moment to be lost in a crash.
            let mut s = c.lazy().await?;
            let st = s.statement(PUT).await?;
            s.client.execute(&st, &[&user, &ms]).await?;
            Ok(())
        })?)
    }
}
