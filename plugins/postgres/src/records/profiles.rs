//! The profiles port: `profiles`, one row per user who set a profile (both columns NULL once
//! cleared).

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::profiles::{FieldChange, Profile, ProfileChange, ProfileStore};

use super::Records;

const GET: &str = "SELECT name, avatar FROM profiles WHERE user_id = $1";
/// One statement whatever the row holds: `$2` / `$4` say whether the name / the avatar
/// change (to `$3` / `$5`, NULL clears), so two devices changing different fields at once
/// lose neither change.
const CHANGE: &str = "INSERT INTO profiles (user_id, name, avatar) VALUES ($1, $3, $5) \
                      ON CONFLICT (user_id) DO UPDATE SET \
                      name = CASE WHEN $2 THEN EXCLUDED.name ELSE profiles.name END, \
                      avatar = CASE WHEN $4 THEN EXCLUDED.avatar ELSE profiles.avatar END";

/// Profiles kept in PostgreSQL.
#[derive(Clone)]
pub struct PostgresProfiles {
    pub(crate) records: Records,
}

/// Whether a field changes, and its new value.
fn field(change: &FieldChange) -> (bool, Option<String>) {
    match change {
        FieldChange::Keep => (false, None),
        FieldChange::Set(value) => (true, Some(value.clone())),
        FieldChange::Clear => (true, None),
    }
}

impl ProfileStore for PostgresProfiles {
    fn profile(&self, user: &str) -> Result<Profile, RecordError> {
        let user = user.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(GET).await?;
            let row = s.client.query_opt(&st, &[&user]).await?;
            Ok(match row {
                Some(row) => Profile {
                    name: row.try_get(0)?,
                    avatar: row.try_get(1)?,
                },
                None => Profile::default(),
            })
        })?)
    }

    fn change(&self, user: &str, change: &ProfileChange) -> Result<(), RecordError> {
        let user = user.to_string();
        let (set_name, name) = field(&change.name);
        let (set_avatar, avatar) = field(&change.avatar);
        Ok(self.records.call(|c| async move {
            // The durable connection: the caller is told the profile is stored.
            let mut s = c.writer().await?;
            let st = s.statement(CHANGE).await?;
            s.client
                .execute(&st, &[&user, &set_name, &name, &set_avatar, &avatar])
                .await?;
            Ok(())
        })?)
    }
}
