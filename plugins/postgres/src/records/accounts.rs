//! The accounts port: `accounts` (the record as JSON, shared with the log, which writes a
//! finished removal's tombstone), `skeletons` (the look-alike index), `purges` (removals
//! whose clean-up is pending) and `meta` key `skeletons` (the index is complete).

use std::collections::HashMap;

use chatd_core::ports::accounts::{AccountChange, AccountRecord, AccountStore, RecordError};

use super::{decode, encode, sql_limit, Records};
use crate::error::PgError;

const GET: &str = "SELECT record FROM accounts WHERE user_id = $1";
const GET_MANY: &str = "SELECT user_id, record FROM accounts WHERE user_id = ANY($1)";
const LIST: &str =
    "SELECT user_id, record FROM accounts WHERE user_id > $1 ORDER BY user_id LIMIT $2";
const HOLDER: &str = "SELECT user_id FROM skeletons WHERE skeleton = $1";
const INDEXED: &str = "SELECT 1 FROM meta WHERE key = 'skeletons'";
const PENDING: &str = "SELECT 1 FROM purges WHERE user_id = $1";
const PUT: &str = "INSERT INTO accounts (user_id, record) VALUES ($1, $2) \
                   ON CONFLICT (user_id) DO UPDATE SET record = EXCLUDED.record";
/// Held by the user unless someone already holds it.
const HOLD: &str =
    "INSERT INTO skeletons (skeleton, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const MARK_PURGE: &str = "INSERT INTO purges (user_id) VALUES ($1) ON CONFLICT DO NOTHING";
const MARK_INDEXED: &str = "INSERT INTO meta (key, value) VALUES ('skeletons', '1') \
                            ON CONFLICT (key) DO NOTHING";

/// Accounts kept in PostgreSQL.
#[derive(Clone)]
pub struct PostgresAccounts {
    pub(crate) records: Records,
}

impl AccountStore for PostgresAccounts {
    fn get(&self, user: &str) -> Result<Option<AccountRecord>, RecordError> {
        let user = user.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(GET).await?;
            match s.client.query_opt(&st, &[&user]).await? {
                None => Ok(None),
                Some(row) => {
                    let what = format!("account record of {user}");
                    decode(&row.try_get::<_, String>(0)?, &what).map(Some)
                }
            }
        })?)
    }

    fn get_many(&self, users: &[String]) -> Result<HashMap<String, AccountRecord>, RecordError> {
        let users = users.to_vec();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(GET_MANY).await?;
            let mut found = HashMap::with_capacity(users.len());
            for row in s.client.query(&st, &[&users]).await? {
                let user: String = row.try_get(0)?;
                let what = format!("account record of {user}");
                let record = decode(&row.try_get::<_, String>(1)?, &what)?;
                found.insert(user, record);
            }
            Ok(found)
        })?)
    }

    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<AccountRecord>)>, RecordError> {
        // User ids are never empty: "" is before all of them.
        let after = after.unwrap_or_default().to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(LIST).await?;
            let rows = s.client.query(&st, &[&after, &sql_limit(limit)]).await?;
            rows.iter()
                .map(|row| {
                    let record = serde_json::from_str(&row.try_get::<_, String>(1)?).ok();
                    Ok((row.try_get(0)?, record))
                })
                .collect()
        })?)
    }

    fn skeleton_holder(&self, skeleton: &str) -> Result<Option<String>, RecordError> {
        let skeleton = skeleton.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(HOLDER).await?;
            let row = s.client.query_opt(&st, &[&skeleton]).await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })?)
    }

    fn skeletons_indexed(&self) -> Result<bool, RecordError> {
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(INDEXED).await?;
            Ok(s.client.query_opt(&st, &[]).await?.is_some())
        })?)
    }

    fn purge_pending(&self, user: &str) -> Result<bool, RecordError> {
        let user = user.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(PENDING).await?;
            Ok(s.client.query_opt(&st, &[&user]).await?.is_some())
        })?)
    }

    fn write(&self, change: AccountChange) -> Result<(), RecordError> {
        Ok(self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let (put, hold, mark_purge, mark_indexed) = (
                s.statement(PUT).await?,
                s.statement(HOLD).await?,
                s.statement(MARK_PURGE).await?,
                s.statement(MARK_INDEXED).await?,
            );
            // One transaction: the record and what goes with it, or nothing.
            let tx = s.client.transaction().await?;
            match change {
                AccountChange::Create {
                    user,
                    record,
                    skeleton,
                } => {
                    let record = encode(&record, "account record")?;
                    tx.execute(&put, &[&user, &record]).await?;
                    tx.execute(&hold, &[&skeleton, &user]).await?;
                }
                AccountChange::Update { user, record } => {
                    let record = encode(&record, "account record")?;
                    tx.execute(&put, &[&user, &record]).await?;
                }
                AccountChange::Remove { user, tombstone } => {
                    let record = encode(&tombstone, "account record")?;
                    tx.execute(&put, &[&user, &record]).await?;
                    tx.execute(&mark_purge, &[&user]).await?;
                }
                AccountChange::IndexSkeletons(entries) => {
                    for (skeleton, user) in &entries {
                        tx.execute(&hold, &[skeleton, user]).await?;
                    }
                    tx.execute(&mark_indexed, &[]).await?;
                }
            }
            tx.commit().await?;
            Ok::<_, PgError>(())
        })?)
    }
}
