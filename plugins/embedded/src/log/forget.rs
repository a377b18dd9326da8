//! What [`Intent::ForgetUser`](chatd_core::ports::log::Intent) deletes inside a batch.
//!
//! Per-user records live under the user's own prefixes (`v/`, `i/`, `q/`, `k/`, `j/`, `t/`, `e/`)
//! plus `p/{user}`, `d/{user}` and the token owners `o/{token}`, so the batch finds them by prefix scans;
//! what earlier units of the same batch wrote there is not in the store yet, so it is taken
//! from the batch's own operations.

use std::collections::BTreeSet;

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_kv::Op;

use super::commit::Staging;
use super::purge::keys_under;
use crate::accounts::failed;

impl Staging<'_> {
    /// Stages the deletion of everything kept per user about `user`: what the store holds, and
    /// what earlier units of this batch wrote there (not in the store yet, so no scan finds it);
    /// later intents of the batch that read such records find none.
    pub(super) fn forget_user(&mut self, user: &str) -> Result<(), RecordError> {
        let store = self.store;
        let prefixes = [
            keys::summary_prefix(user),
            keys::membership_index_prefix(user),
            keys::queue_prefix(user),
            keys::cid_prefix(user),
            keys::push_jobs_prefix(user),
            keys::push_tokens_prefix(user),
            keys::sessions_prefix(user),
        ];
        // Single keys of the user's: last seen, profile.
        let singles = [keys::last_seen(user), keys::profile(user)];
        let mut doomed = BTreeSet::new();
        for prefix in &prefixes {
            doomed.extend(keys_under(store, prefix)?);
        }
        let tokens = keys::push_tokens_prefix(user);
        for token in doomed
            .iter()
            .filter_map(|key| key.strip_prefix(tokens.as_bytes()))
        {
            let owner = keys::push_token_owner(&String::from_utf8_lossy(token));
            // The token may have moved to another user since: then the owner entry is theirs.
            if store.get(&owner).map_err(failed)?.as_deref() == Some(user.as_bytes()) {
                self.ops.push(Op::Delete(owner));
            }
        }
        let mine = |key: &[u8]| {
            singles.iter().any(|s| key == s.as_slice())
                || prefixes.iter().any(|p| key.starts_with(p.as_bytes()))
        };
        let staged: Vec<Vec<u8>> = self
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Put(key, _) if mine(key) => Some(key.clone()),
                _ => None,
            })
            .collect();
        doomed.extend(staged);
        doomed.extend(singles.iter().cloned());
        self.ops.extend(doomed.into_iter().map(Op::Delete));
        self.enqueued.retain(|key, _| !mine(key));
        self.summaries.retain(|key, _| !mine(key));
        self.cids.retain(|key, _| !mine(key));
        self.forgotten.extend(prefixes);
        Ok(())
    }
}
