//! The clean-up after an account removal: the removed user leaves every group (members get the
//! usual `member_left` event, a group left without an admin gets one, an empty group closes),
//! and their queue, conversation summaries, remembered acks, push jobs, push tokens, last-seen
//! time, membership records and media rights are deleted. Messages and history indexes stay:
//! the peers keep their history.
//!
//! `Accounts::remove` writes the tombstone and the marker `x/purge/{user}`; the committer then
//! does the store-side part in a batch of its own (so it is ordered with every send and group
//! change, and pending group fan-outs stop queueing for the user), recording in the tombstone
//! the id below which a later owner of the id sees no 1:1 history. Media rights, which have no
//! per-user index, are found by a paged scan of `a/` (and the per-uploader `c/{sha256}/{user}`
//! entries of `c/`) off the committer thread; then the marker goes. A start finishes any
//! clean-up a crash interrupted; `add` with reclaim waits for the marker to be gone.

use serde_json::Value;
use tokio::sync::oneshot;

use super::committer::{store_failure, Batch, Committer, Job};
use super::group_ops::GroupOp;
use super::{Chat, ChatError};
use crate::accounts::AccountStatus;
use crate::keys;
use chatd_kv::{KvStore, Op, StoreError};
use chatd_wire::reply::Failure;

/// Keys read per scan while looking for a user's media rights.
const RIGHTS_PAGE: usize = 4096;

/// A removed account whose data the committer must clean up.
pub struct PurgeJob {
    /// The removed user.
    pub user: String,
    /// Told once the batch is durable.
    pub reply: oneshot::Sender<Result<(), Failure>>,
}

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

/// The part of a clean-up that runs off the committer: the user's media rights
/// (`a/{media}/{user}`) and de-duplication entries (`c/{sha256}/{user}`), found by a paged
/// scan; then the marker goes and everything is flushed. Returns how many keys went.
pub(super) fn finish(store: &dyn KvStore, user: &str) -> Result<usize, StoreError> {
    let mut removed = 0;
    for prefix in [keys::MEDIA_ACCESS_PREFIX, "c/"] {
        removed += delete_user_entries(store, prefix, user)?;
    }
    store.apply(vec![Op::Delete(keys::purge_marker(user))])?;
    store.flush()?;
    Ok(removed)
}

/// Deletes every `{prefix}{x}/{user}` key (one `/` inside `x` is not allowed: ids have none).
fn delete_user_entries(store: &dyn KvStore, prefix: &str, user: &str) -> Result<usize, StoreError> {
    let suffix = format!("/{user}");
    let end = keys::prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut removed = 0;
    loop {
        let page = store.scan(&from, &end, false, RIGHTS_PAGE)?;
        let full = page.len() == RIGHTS_PAGE;
        let Some((last, _)) = page.last() else {
            break;
        };
        from = keys::successor(last);
        let ops: Vec<Op> = page
            .into_iter()
            .filter(|(key, _)| {
                key.ends_with(suffix.as_bytes())
                    && !key[prefix.len()..key.len() - suffix.len()].contains(&b'/')
            })
            .map(|(key, _)| Op::Delete(key))
            .collect();
        removed += ops.len();
        if !ops.is_empty() {
            store.apply(ops)?;
        }
        if !full {
            break;
        }
    }
    Ok(removed)
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

impl Chat {
    /// Cleans up after the removal of `user` (see the module comment); blocking: run it on a
    /// blocking thread. Does nothing unless the removal is pending. The caller must make sure
    /// the user's sessions have ended first, so that nothing they sent is stored after it.
    pub fn purge_account(&self, user: &str) -> Result<usize, ChatError> {
        if chatd_auth::validate_user_id(user).is_err()
            || self.store.get(&keys::purge_marker(user))?.is_none()
        {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Purge(PurgeJob {
            user: user.to_string(),
            reply,
        });
        self.enqueue(job).map_err(|f| ChatError::Purge(f.message))?;
        match answer.blocking_recv() {
            Ok(Ok(())) => Ok(finish(self.store.as_ref(), user)?),
            Ok(Err(failure)) => Err(ChatError::Purge(failure.message)),
            Err(_) => Err(ChatError::Purge("the clean-up was not stored".into())),
        }
    }
}
