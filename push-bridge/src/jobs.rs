//! Push jobs: one per message and recipient with no device online, written by the messaging
//! committer in the same batch as the message (or, for a group message, as the fan-out slice
//! that queued it for the recipient). The bridge claims them a (user, conversation) group at a
//! time through the [`PushJobs`] port, with a lease, and finishes exactly the groups it
//! handled; a job that arrives while its group is being sent stays and forms the next group.
//!
//! Ownership is split so that nothing needs a read-modify-write: the committer only inserts
//! jobs, the bridge only deletes jobs a claim handed it.

pub use chatd_core::ports::push::{id_ms, Claim, JobGroup, PushJobs};
