//! How many groups each user joins and leaves in the batch being staged, for
//! `limits.max_groups_per_user`: the message log counts what is committed, these count what
//! is not yet (see `member_rooms.rs`).

use std::collections::HashMap;

/// What one batch changes in one user's group count before it is written.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Staged {
    /// Groups the user joined in this batch.
    pub(super) joined: usize,
    /// Groups the user left (or was removed from) in this batch.
    pub(super) left: usize,
}

/// Per user, what the batch changes (see [`Staged`]).
pub(super) type StagedCounts = HashMap<String, Staged>;
