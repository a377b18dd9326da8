//! The push tokens port: `push_tokens` (each user's tokens, the record as JSON) and
//! `token_owners` (who each token belongs to). The push jobs port of the same adapter is
//! `push_jobs.rs`.

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::{DeviceToken, PushTokens, TokenChange, TokenRecord};
use tokio_postgres::types::ToSql;

use super::{encode, sql_limit, Records};
use crate::error::PgError;

const TOKENS: &str =
    "SELECT token, record FROM push_tokens WHERE user_id = $1 ORDER BY token LIMIT $2";
const TOKEN: &str = "SELECT record FROM push_tokens WHERE user_id = $1 AND token = $2";
const OWNER: &str = "SELECT user_id FROM token_owners WHERE token = $1";
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM push_tokens WHERE user_id = $1 AND token = $2) \
                     AND EXISTS (SELECT 1 FROM accounts WHERE user_id = $1)";
const PUT: &str = "INSERT INTO push_tokens (user_id, token, record) VALUES ($1, $2, $3) \
                   ON CONFLICT (user_id, token) DO UPDATE SET record = EXCLUDED.record";
const PUT_OWNER: &str = "INSERT INTO token_owners (token, user_id) VALUES ($1, $2) \
                         ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id";
const DROP: &str = "DELETE FROM push_tokens WHERE user_id = $1 AND token = $2";
const DROP_OWNER: &str = "DELETE FROM token_owners WHERE token = $1";

/// Push tokens and push jobs kept in PostgreSQL.
#[derive(Clone)]
pub struct PostgresPush {
    pub(crate) records: Records,
}

impl PostgresPush {
    /// The rows `sql` finds with the text `params` and `limit` (when given), first column
    /// text, second column text if there is one.
    fn rows(
        &self,
        sql: &'static str,
        params: Vec<String>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Option<String>)>, PgError> {
        self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(sql).await?;
            let limit = limit.map(sql_limit);
            let mut refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            if let Some(limit) = &limit {
                refs.push(limit);
            }
            let rows = s.client.query(&st, &refs).await?;
            rows.iter()
                .map(|r| {
                    let second = if r.len() > 1 { r.try_get(1)? } else { None };
                    Ok((r.try_get(0)?, second))
                })
                .collect()
        })
    }
}

impl PushTokens for PostgresPush {
    fn tokens(&self, user: &str, limit: usize) -> Result<Vec<DeviceToken>, RecordError> {
        let rows = self.rows(TOKENS, vec![user.to_string()], Some(limit))?;
        Ok(rows
            .into_iter()
            .filter_map(|(token, record)| {
                match serde_json::from_str(record.as_deref().unwrap_or_default()) {
                    Ok(record) => Some(DeviceToken { token, record }),
                    Err(_) => {
                        tracing::warn!(user, "skipping an unreadable push token record");
                        None
                    }
                }
            })
            .collect())
    }

    fn token(&self, user: &str, token: &str) -> Result<Option<TokenRecord>, RecordError> {
        let rows = self.rows(TOKEN, vec![user.to_string(), token.to_string()], None)?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|(record, _)| serde_json::from_str(&record).ok()))
    }

    fn has_token(&self, user: &str, token: &str) -> Result<bool, RecordError> {
        let rows = self.rows(TOKEN, vec![user.to_string(), token.to_string()], None)?;
        Ok(!rows.is_empty())
    }

    fn owner(&self, token: &str) -> Result<Option<String>, RecordError> {
        let rows = self.rows(OWNER, vec![token.to_string()], None)?;
        Ok(rows.into_iter().next().map(|(user, _)| user))
    }

    fn holds(&self, owner: &str, token: &str) -> Result<bool, RecordError> {
        let (owner, token) = (owner.to_string(), token.to_string());
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(HOLDS).await?;
            Ok(s.client
                .query_one(&st, &[&owner, &token])
                .await?
                .try_get(0)?)
        })?)
    }

    fn write(&self, changes: Vec<TokenChange>) -> Result<(), RecordError> {
        Ok(self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let (put, put_owner, drop, drop_owner) = (
                s.statement(PUT).await?,
                s.statement(PUT_OWNER).await?,
                s.statement(DROP).await?,
                s.statement(DROP_OWNER).await?,
            );
            let tx = s.client.transaction().await?;
            for change in changes {
                match change {
                    TokenChange::Put {
                        user,
                        token,
                        record,
                    } => {
                        let record = encode(&record, "push token record")?;
                        tx.execute(&put, &[&user, &token, &record]).await?;
                        tx.execute(&put_owner, &[&token, &user]).await?;
                    }
                    TokenChange::Drop { user, token } => {
                        tx.execute(&drop, &[&user, &token]).await?;
                    }
                    TokenChange::DropOwner { token } => {
                        tx.execute(&drop_owner, &[&token]).await?;
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, PgError>(())
        })?)
    }

    fn flush(&self) -> Result<(), RecordError> {
        // Every write committed durably before it returned.
        Ok(())
    }
}
