//! The committer's side of an account clean-up (see `purge.rs` for what goes and why): the
//! batch that takes the removed user out of groups, fan-outs and every per-user record, and the
//! clean-ups a crash interrupted, finished at start.

use serde_json::Value;
use tokio::sync::oneshot;

use super::committer::{store_failure, Batch, Committer, Job, PurgeJob};
use super::group_ops::GroupOp;
use super::purge::finish;
use super::ChatError;
use crate::accounts::AccountStatus;
use crate::keys;
use chatd_kv::Op;
use chatd_wire::reply::Failure;

impl Committer {
    /// Adds the clean-up of removed `user` to the batch (which holds nothing else). Does
    /// nothing for an id that is not removed (a retry after a reclaim, say).
    pub(super) fn stage_purge(&mut self, batch: &mut Batch, user: &str) -> Result<(), Failure> {
        let status = self.accounts.status(user).map_err(|e| {
            tracing::error!("account lookup failed: {e}");
            Failure::internal("the account could not be looked up; retry")
        })?;
        if status != AccountStatus::Removed {
            return Ok(());
        }
        // Taken before the departure events: everything of the old owner is at or below it.
        let (floor, _) = self.ids.next();
        batch
            .ops
            .push(Op::Put(keys::LAST_ID.to_vec(), floor.clone().into_bytes()));

        let summaries = keys::summary_prefix(user);
        for key in self.keys_under(&summaries)? {
            let conversation = String::from_utf8_lossy(&key[summaries.len()..]).into_owned();
            if let Some(group) = conversation.strip_prefix("g:") {
                self.leave_for_good(batch, user, group);
            }
            batch.ops.push(Op::Delete(key));
        }
        batch
            .summaries
            .retain(|key, _| !key.starts_with(summaries.as_bytes()));
        // The membership index names every current group, also one whose summary is missing;
        // a group left above is refused again here and changes nothing.
        let memberships = keys::membership_index_prefix(user);
        for key in self.keys_under(&memberships)? {
            let group = String::from_utf8_lossy(&key[memberships.len()..]).into_owned();
            self.leave_for_good(batch, user, &group);
            batch.ops.push(Op::Delete(key));
        }
        for prefix in [
            keys::queue_prefix(user),
            keys::cid_prefix(user),
            keys::push_jobs_prefix(user),
        ] {
            for key in self.keys_under(&prefix)? {
                batch.ops.push(Op::Delete(key));
            }
        }
        let tokens = keys::push_tokens_prefix(user);
        for key in self.keys_under(&tokens)? {
            let token = String::from_utf8_lossy(&key[tokens.len()..]).into_owned();
            let owner = keys::push_token_owner(&token);
            if self.store.get(&owner).map_err(store_failure)?.as_deref() == Some(user.as_bytes()) {
                batch.ops.push(Op::Delete(owner));
            }
            batch.ops.push(Op::Delete(key));
        }
        batch.ops.push(Op::Delete(keys::last_seen(user)));
        self.stop_fanouts_to(batch, user);
        match self.accounts.purged_tombstone(user, &floor) {
            Ok(Some(op)) => batch.ops.push(op),
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
        let member = keys::member(group, user);
        batch
            .ops
            .retain(|op| !matches!(op, Op::Put(key, _) if *key == member));
        batch.ops.push(Op::Delete(member));
        if let Some(cached) = self.groups.get_mut(group) {
            cached.members.remove(user);
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
            let key = keys::fanout(&fanout.id);
            if record.done >= record.recipients.len() {
                batch.ops.push(Op::Delete(key));
            } else {
                match serde_json::to_vec(&*record) {
                    Ok(value) => batch.ops.push(Op::Put(key, value)),
                    Err(e) => tracing::error!("fan-out record not encoded: {e}"),
                }
            }
        }
        for fanout in batch.new_fanouts.iter_mut() {
            fanout.record.recipients.retain(|u| u != user);
        }
    }

    /// Every key that starts with `prefix`.
    fn keys_under(&self, prefix: &str) -> Result<Vec<Vec<u8>>, Failure> {
        let rows = self
            .store
            .scan(
                prefix.as_bytes(),
                &keys::prefix_end(prefix),
                false,
                usize::MAX,
            )
            .map_err(store_failure)?;
        Ok(rows.into_iter().map(|(key, _)| key).collect())
    }
}

/// Finishes, before the committer thread starts, every clean-up a previous run left marked.
pub(super) fn resume(committer: &mut Committer) -> Result<(), ChatError> {
    let prefix = keys::PURGE_PREFIX;
    let marked = committer.store.scan(
        prefix.as_bytes(),
        &keys::prefix_end(prefix),
        false,
        usize::MAX,
    )?;
    for (key, _) in marked {
        let user = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let (reply, mut answer) = oneshot::channel();
        committer.commit(vec![Job::Purge(PurgeJob {
            user: user.clone(),
            reply,
        })]);
        // `commit` answers before it returns.
        match answer.try_recv() {
            Ok(Ok(())) => {
                let rights = finish(committer.store.as_ref(), &user)?;
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
