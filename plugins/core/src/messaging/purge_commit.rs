//! The committer's side of an account clean-up (see `purge.rs` for what goes and why): the
//! batch that takes the removed user out of groups, fan-outs and every per-user record, and the
//! clean-ups a crash interrupted, finished at start.

use serde_json::Value;
use tokio::sync::oneshot;

use super::batch::Batch;
use super::committer::{store_failure, Committer, Job, PurgeJob};
use super::group_ops::GroupOp;
use super::rpc::account_failure;
use super::ChatError;
use crate::accounts::AccountStatus;
use crate::ports::log::Intent;
use chatd_wire::reply::Failure;

impl Committer {
    /// Adds the clean-up of removed `user` to the batch (which holds nothing else). Does
    /// nothing for an id that is not removed (a retry after a reclaim, say).
    pub(super) fn stage_purge(&mut self, batch: &mut Batch, user: &str) -> Result<(), Failure> {
        let status = self
            .accounts
            .status(user)
            .map_err(|e| account_failure("the account", e))?;
        if status != AccountStatus::Removed {
            return Ok(());
        }
        // Taken before the departure events: everything of the old owner is at or below it
        // (and, as an issued id, it is where ids continue after a restart).
        let (floor, _) = self.ids.next();

        let summaries = self.log.summaries(user).map_err(store_failure)?;
        for (conversation, _) in &summaries {
            if let Some(group) = conversation.strip_prefix("g:") {
                self.leave_for_good(batch, user, group);
            }
        }
        // The groups-of-user reads name every current group, also one whose summary is
        // missing; a group left above is refused again here and changes nothing.
        let groups = self
            .log
            .groups_of(user, usize::MAX)
            .map_err(store_failure)?;
        for group in &groups {
            self.leave_for_good(batch, user, group);
        }
        batch.push(Intent::ForgetUser {
            user: user.to_string(),
        });
        self.stop_fanouts_to(batch, user);
        match self.accounts.purged_record(user, &floor) {
            Ok(Some(record)) => batch.push(Intent::Account {
                user: user.to_string(),
                record,
            }),
            Ok(None) => {}
            Err(e) => {
                tracing::error!("tombstone of {user} not read: {e}");
                return Err(Failure::internal("the account could not be read; retry"));
            }
        }
        Ok(())
    }

    /// `user` leaves `group` as with `group.leave` (if still a member), and the membership
    /// record goes too: a later owner of the id must not read the group's history.
    fn leave_for_good(&mut self, batch: &mut Batch, user: &str, group: &str) {
        let leave = GroupOp::Leave {
            group: group.to_string(),
        };
        // Refused when the user had left already or the group is closed: nothing to announce.
        let _: Result<Value, Failure> = self.stage_group(batch, user, leave);
        batch.intents.retain(
            |i| !matches!(i, Intent::Member { group: g, user: u, .. } if g == group && u == user),
        );
        batch.push(Intent::ForgetMember {
            group: group.to_string(),
            user: user.to_string(),
        });
        if let Some(staged) = batch.groups.get_mut(group) {
            std::sync::Arc::make_mut(staged).members.remove(user);
        }
    }

    /// Takes `user` out of the recipients still to be reached by pending fan-outs (and by those
    /// this batch started: the departure events), rewriting their stored records.
    fn stop_fanouts_to(&mut self, batch: &mut Batch, user: &str) {
        for fanout in self.fanouts.iter_mut() {
            let record = &mut fanout.record;
            let done = record.done.min(record.recipients.len());
            let before = record.recipients.len();
            let mut tail = record.recipients.split_off(done);
            tail.retain(|u| u != user);
            record.recipients.extend(tail);
            if record.recipients.len() == before || !fanout.stored {
                continue;
            }
            let left = (record.done < record.recipients.len()).then(|| record.clone());
            batch.push(Intent::Fanout {
                id: fanout.id.clone(),
                record: left,
            });
        }
        for (_, fanout) in batch.new_fanouts.iter_mut() {
            fanout.record.recipients.retain(|u| u != user);
        }
    }
}

/// Finishes, before the committer thread starts, every clean-up a previous run left marked.
pub(super) fn resume(committer: &mut Committer) -> Result<(), ChatError> {
    for user in committer.log.pending_purges()? {
        let (reply, mut answer) = oneshot::channel();
        committer.commit(vec![Job::Purge(PurgeJob {
            user: user.clone(),
            reply,
        })]);
        // `commit` answers before it returns.
        match answer.try_recv() {
            Ok(Ok(())) => {
                let rights = committer.log.finish_purge(&user)?;
                tracing::info!(
                    "finished the clean-up of removed user {user} ({rights} media keys)"
                );
            }
            Ok(Err(failure)) => tracing::error!(
                "clean-up of removed user {user} failed, retried at the next start: {}",
                failure.message
            ),
            Err(_) => tracing::error!("clean-up of removed user {user} was not answered"),
        }
    }
    Ok(())
}
