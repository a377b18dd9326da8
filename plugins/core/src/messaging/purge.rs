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

use tokio::sync::oneshot;

use super::committer::{Job, PurgeJob};
use super::{Chat, ChatError};
use crate::keys;
use chatd_kv::{KvStore, Op, StoreError};

/// Keys read per scan while looking for a user's media rights.
const RIGHTS_PAGE: usize = 4096;

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
