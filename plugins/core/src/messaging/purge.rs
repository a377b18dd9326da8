//! The clean-up after an account removal: the removed user leaves every group (members get the
//! usual `member_left` event, a group left without an admin gets one, an empty group closes),
//! and their queue, conversation summaries, remembered acks, push jobs, push tokens, last-seen
//! time, membership records and media rights are deleted. Messages and history indexes stay:
//! the peers keep their history.
//!
//! `Accounts::remove` writes the tombstone and marks the clean-up pending; the committer then
//! does its part in a batch of its own (so it is ordered with every send and group change, and
//! pending group fan-outs stop queueing for the user), recording in the tombstone the id below
//! which a later owner of the id sees no 1:1 history. Media rights, which the store may have to
//! search for, go off the committer thread (`MessageLog::finish_purge`), which also ends the
//! pending mark. A start finishes any clean-up a crash interrupted; `add` with reclaim waits
//! until it is done.

use tokio::sync::oneshot;

use super::committer::{Job, PurgeJob};
use super::{Chat, ChatError};

impl Chat {
    /// Cleans up after the removal of `user` (see the module comment); blocking: run it on a
    /// blocking thread. Does nothing unless the removal is pending. The caller must make sure
    /// the user's sessions have ended first, so that nothing they sent is stored after it.
    pub fn purge_account(&self, user: &str) -> Result<usize, ChatError> {
        if chatd_auth::validate_user_id(user).is_err() {
            return Ok(0);
        }
        let pending = self
            .accounts
            .purge_pending(user)
            .map_err(|e| ChatError::Purge(e.to_string()))?;
        if !pending {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Purge(PurgeJob {
            user: user.to_string(),
            reply,
        });
        self.enqueue(job).map_err(|f| ChatError::Purge(f.message))?;
        match answer.blocking_recv() {
            Ok(Ok(())) => Ok(self.log.finish_purge(user)?),
            Ok(Err(failure)) => Err(ChatError::Purge(failure.message)),
            Err(_) => Err(ChatError::Purge("the clean-up was not stored".into())),
        }
    }
}
