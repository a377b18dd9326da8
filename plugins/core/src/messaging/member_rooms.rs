//! The committer's check of `limits.max_groups_per_user`: how many groups a user is in, from
//! the groups-of-user reads of the message log plus what the batch being staged changes.

use super::batch::Batch;
use super::committer::{store_failure, Committer};
use chatd_wire::reply::{ErrorCode, Failure};

impl Committer {
    /// Refuses (`too_large`, naming them) when any of `users` already belongs to
    /// `max_groups_per_user` groups, counting what this batch has staged; `by` is the caller,
    /// addressed as "you".
    pub(super) fn require_room(
        &self,
        batch: &Batch,
        by: &str,
        users: &[String],
    ) -> Result<(), Failure> {
        let max = self.max_groups_per_user;
        let mut full = Vec::new();
        for user in users {
            let staged = batch.group_counts.get(user).copied().unwrap_or_default();
            // Groups the batch leaves are still in the log: read that many more.
            let limit = max.saturating_add(staged.left);
            let stored = self
                .log
                .groups_of(user, limit)
                .map_err(store_failure)?
                .len();
            if (stored + staged.joined).saturating_sub(staged.left) >= max {
                full.push(user.as_str());
            }
        }
        if full.is_empty() {
            return Ok(());
        }
        let who = if full == [by] {
            "you are".to_string()
        } else {
            let names: Vec<&str> = full
                .iter()
                .map(|u| if *u == by { "you" } else { u })
                .collect();
            format!(
                "{} {}",
                names.join(", "),
                if full.len() == 1 { "is" } else { "are" }
            )
        };
        Err(Failure::new(
            ErrorCode::TooLarge,
            format!(
                "{who} already in {max} groups, the most one user may belong to; \
                 leave a group first"
            ),
        ))
    }

    /// Records in the batch that `users` joined a group.
    pub(super) fn staged_joins(batch: &mut Batch, users: &[String]) {
        for user in users {
            batch.group_counts.entry(user.clone()).or_default().joined += 1;
        }
    }

    /// Records in the batch that `users` left a group.
    pub(super) fn staged_leaves(batch: &mut Batch, users: &[String]) {
        for user in users {
            batch.group_counts.entry(user.clone()).or_default().left += 1;
        }
    }
}
