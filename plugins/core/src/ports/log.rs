//! The message-log port: everything messaging stores — messages, history, per-user queues,
//! receipt statuses, conversation summaries, remembered client message ids, group records,
//! pending fan-outs — written as one [`LogBatch`] of intents per group commit and read back at
//! the level of the domain.
//!
//! Writes are intents, never read-modify-write: "unread + 1", "status = max(old, new)",
//! "remember this cid unless it is remembered already", so that an SQL engine can carry a whole
//! batch out in one transaction and several writers sharing one store never lose an update.
//! A batch is made of [`Unit`]s (one per send, receipt publish or group change); a unit whose
//! client message id is remembered already is skipped whole, and its outcome says so.
//!
//! Reads return committed data only: nothing of a batch is visible to the queue and history
//! reads before [`MessageLog::commit`] has returned with the batch durable. How an adapter
//! ensures that (a transaction's commit, or the embedded store's committed watermark) is its
//! own business. Unfinished group fan-outs are claimed with a lease, so that two processes
//! sharing a store never queue the same slice.
//!
//! Groups live in the log too: a membership change and the event that announces it commit in
//! one unit, so the group reads (`group`, `membership`, `groups_of`) are part of this port.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::accounts::{AccountRecord, RecordError};
use crate::records::chat::{Status, StatusRecord, Summary};
use crate::records::fanout::FanoutRecord;
use crate::records::group::{Group, GroupIndex, GroupRecord, MemberRecord};

/// What a queue entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    /// The message whose id is the entry's queue id (a 1:1 message).
    Message,
    /// The message with this id (a group message or event, queued under a slice's id).
    Pointer(String),
    /// A receipt event for the queue's owner: the `user/{me}/receipt` payload itself.
    Receipt(Bytes),
}

/// One change a unit makes. Every intent is carried out exactly as written, whatever else
/// the batch holds; intents on the same record apply in batch order.
#[derive(Clone, Debug, PartialEq)]
pub enum Intent {
    /// Store message `id`, exactly as delivered.
    Message {
        /// The message id.
        id: String,
        /// The JSON payload as delivered.
        payload: Bytes,
    },
    /// Add `id` to the history of `conversation` (`d:{a}:{b}` or `g:{group}`); group
    /// messages carry who sent them to how many.
    History {
        /// The conversation.
        conversation: String,
        /// The message id.
        id: String,
        /// For group conversations: the sender and the recipient count.
        index: Option<GroupIndex>,
    },
    /// Put an entry in `user`'s queue under `qid`.
    Enqueue {
        /// The queue's owner.
        user: String,
        /// The queue id (queues are read in queue id order).
        qid: String,
        /// What waits there.
        entry: Queued,
    },
    /// The receipt status of message `id` for recipient `user` becomes the greater of the
    /// stored one and `record.status` (with `record.ts` when it moves).
    Status {
        /// The message.
        id: String,
        /// The recipient.
        user: String,
        /// The new status and when it was stored.
        record: StatusRecord,
    },
    /// A change to `user`'s summary of `conversation`; a missing summary starts empty, with
    /// `peer` and `group` as given.
    Summary {
        /// Whose summary.
        user: String,
        /// Which conversation.
        conversation: String,
        /// The other participant, or the group id.
        peer: String,
        /// True for a group conversation.
        group: bool,
        /// What changes.
        change: SummaryChange,
    },
    /// `user` may download `media`.
    MediaRight {
        /// The media id.
        media: String,
        /// The user.
        user: String,
    },
    /// A push job for message `id` queued for `user` (see `ports::push`).
    PushJob {
        /// The recipient.
        user: String,
        /// The conversation.
        conversation: String,
        /// The message id.
        id: String,
        /// Where it waits in the queue when that is not `id` (a fan-out slice's id).
        queued: Option<String>,
    },
    /// A group's record, written whole.
    Group {
        /// The group id.
        group: String,
        /// The record.
        record: GroupRecord,
    },
    /// One user's membership record of a group, written whole; the groups-of-user index
    /// follows it (the user counts as a member exactly while the record is active).
    Member {
        /// The group id.
        group: String,
        /// The user.
        user: String,
        /// The record.
        record: MemberRecord,
    },
    /// One user's membership record of a group is forgotten (account removal).
    ForgetMember {
        /// The group id.
        group: String,
        /// The user.
        user: String,
    },
    /// The progress of fan-out `id`: its record, or `None` once it is finished.
    Fanout {
        /// The message id.
        id: String,
        /// What is left, or `None` when nothing is.
        record: Option<FanoutRecord>,
    },
    /// Everything kept per user about removed `user` goes: queue, summaries, remembered cids,
    /// push jobs and tokens, last-seen time, groups-of-user index (membership records are
    /// forgotten one by one with [`Intent::ForgetMember`]).
    ForgetUser {
        /// The removed user.
        user: String,
    },
    /// The account record of `user` is replaced (the tombstone of a finished removal).
    Account {
        /// The user.
        user: String,
        /// The new record.
        record: AccountRecord,
    },
}

/// A change to one conversation summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SummaryChange {
    /// A message was sent or received: it is the newest (`last_id = id`).
    Last(String),
    /// A message was received: the newest, and one more unread (`unread + 1`).
    Received(String),
    /// One received message was read (`unread - 1`, never below 0).
    ReadOne,
    /// Group conversations: read up to `id` (`read_upto = max(read_upto, id)`).
    ReadUpto(String),
    /// Group conversations: joined at event `id`; everything before counts as read
    /// (`read_upto = id` unless already set, which keeps an earlier membership's unread).
    Joined(String),
}

/// The client message id a send unit remembers, with the ack it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidClaim {
    /// The sender.
    pub user: String,
    /// The client's message id.
    pub cid: String,
    /// The ack to give again for a retry.
    pub ack: Bytes,
}

/// The writes of one send, receipt publish or group change: all applied, or (a duplicate)
/// none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unit {
    /// For a send: remember this cid unless it is remembered already; when it is, the whole
    /// unit is skipped and reported [`UnitOutcome::Duplicate`].
    pub cid: Option<CidClaim>,
    /// The changes, in order.
    pub intents: Vec<Intent>,
    /// The stored fan-outs this unit continues (their next slice): it is written only while
    /// the batch's [`LogBatch::claimant`] still holds the claim of every one of them, else it
    /// is skipped and reported [`UnitOutcome::Taken`]. This is what keeps a writer whose claim
    /// ran out (a node that was paused, say) from repeating a slice that the owner who took
    /// the fan-out over wrote meanwhile. A batch with such a unit also renews every claim its
    /// claimant holds.
    pub fence: Vec<String>,
}

/// What became of one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Written.
    Applied,
    /// Skipped: its cid was remembered already, with this ack.
    Duplicate(Bytes),
    /// Skipped: a fan-out it continues ([`Unit::fence`]) is no longer claimed by the batch's
    /// claimant (another owner took it over, or finished it).
    Taken,
}

/// Who writes a batch, so that the fan-outs it starts are claimed by it from the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// The owner, as in [`MessageLog::claim_fanouts`].
    pub owner: String,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
}

/// One group commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogBatch {
    /// The units, in order.
    pub units: Vec<Unit>,
    /// The highest id (message, event or queue id) the batch issued, if any: ids continue
    /// after it at the next start.
    pub newest: Option<String>,
    /// Whether the batch must be durable before [`MessageLog::commit`] returns (anything
    /// that answers someone). A batch that is not (fan-out slices, dequeues) may be lost in
    /// a crash, and is not visible to reads until a later durable batch.
    pub durable: bool,
    /// Who writes it: every unfinished fan-out the batch writes ([`Intent::Fanout`] with a
    /// record) is claimed by it, or has its claim renewed. `None`: claims are left as they are.
    pub claimant: Option<Claimant>,
}

/// One item of a user's queue, as a device gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueItem {
    /// The queue id.
    pub qid: String,
    /// A message (its stored payload) or a receipt event.
    pub kind: QueueItemKind,
}

/// What a queue item is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueItemKind {
    /// A message or group event, with its payload.
    Message(Bytes),
    /// A receipt event payload.
    Receipt(Bytes),
}

/// One entry of a conversation's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The message id.
    pub id: String,
    /// For group conversations: sender and recipient count (default for events and 1:1).
    pub index: GroupIndex,
}

/// A fan-out claimed by one process: the message and what is left of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingFanout {
    /// The message id.
    pub id: String,
    /// The message as delivered.
    pub payload: Bytes,
    /// What is left.
    pub record: FanoutRecord,
}

/// Where messaging keeps its data. See the module comment for the guarantees.
pub trait MessageLog: Send + Sync + 'static {
    /// Carries out `batch`: every unit all or nothing (a remembered cid skips it), the whole
    /// batch atomically, and durably before returning when `batch.durable`. One outcome per
    /// unit, in order.
    fn commit(&self, batch: LogBatch) -> Result<Vec<UnitOutcome>, RecordError>;

    /// The highest id ever written (message, event or queue id), for ids to continue after.
    fn newest_id(&self) -> Result<Option<String>, RecordError>;

    /// The ack remembered for `user`'s client message id `cid`.
    fn remembered_ack(&self, user: &str, cid: &str) -> Result<Option<Bytes>, RecordError>;

    /// The stored payload of message `id`.
    fn message(&self, id: &str) -> Result<Option<Bytes>, RecordError>;

    /// The receipt status of message `id` for recipient `user` (`Sent` when none).
    fn status(&self, id: &str, user: &str) -> Result<Status, RecordError>;

    /// Every recipient's receipt status of message `id`, in user id order.
    fn statuses(&self, id: &str) -> Result<Vec<(String, Status)>, RecordError>;

    /// Up to `limit` committed items of `user`'s queue with a queue id above `after`, in
    /// queue id order, without those dequeued.
    fn queue(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, RecordError>;

    /// Takes item `qid` out of `user`'s queue: [`MessageLog::queue`] no longer shows it.
    /// Need not be durable (a lost dequeue is a redelivery, which clients de-duplicate by
    /// id). An adapter may carry it out with its next [`MessageLog::commit`]; it then returns
    /// true when nothing else was waiting so, and the caller should make a commit soon (an
    /// empty batch will do). False: nothing more to do.
    fn dequeue(&self, user: &str, qid: &str) -> Result<bool, RecordError>;

    /// Up to `limit` committed history entries of `conversation` with ids between `low` and
    /// `high`, oldest first, or newest first when `newest_first`.
    fn history(
        &self,
        conversation: &str,
        low: Bound<&str>,
        high: Bound<&str>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RecordError>;

    /// The history entry of message `id` in `conversation`, if committed.
    fn history_entry(
        &self,
        conversation: &str,
        id: &str,
    ) -> Result<Option<HistoryEntry>, RecordError>;

    /// Every conversation summary of `user`, by conversation, in conversation order.
    fn summaries(&self, user: &str) -> Result<Vec<(String, Summary)>, RecordError>;

    /// A group with every membership record, current and past; `None` when no such group.
    fn group(&self, group: &str) -> Result<Option<Arc<Group>>, RecordError>;

    /// One user's membership record of a group.
    fn membership(&self, group: &str, user: &str) -> Result<Option<MemberRecord>, RecordError>;

    /// Up to `limit` groups `user` is a current member of, in group id order.
    fn groups_of(&self, user: &str, limit: usize) -> Result<Vec<String>, RecordError>;

    /// Claims for `owner`, for `lease`, every unfinished fan-out that no unexpired claim of
    /// another owner holds, in acceptance order. A batch's [`LogBatch::claimant`] claims (or
    /// renews) the fan-outs the batch writes.
    fn claim_fanouts(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<PendingFanout>, RecordError>;

    /// Users whose removal's clean-up is still pending.
    fn pending_purges(&self) -> Result<Vec<String>, RecordError>;

    /// The last step of a removal's clean-up, after [`Intent::ForgetUser`] is durable: the
    /// user's media rights and de-duplication entries go (found by scanning, off the
    /// committer), then the pending mark; durable when it returns. How many records went.
    fn finish_purge(&self, user: &str) -> Result<usize, RecordError>;

    /// Makes everything committed so far durable (at shutdown).
    fn flush(&self) -> Result<(), RecordError>;

    /// True while the storage under the log is failing (a write or flush failed, of a commit
    /// or of anyone else sharing the store, and it has not recovered): commits cannot succeed
    /// until [`MessageLog::recover`] does. Logs that do not watch their storage say false.
    fn failing(&self) -> bool {
        false
    }

    /// After a failure: makes the log take durable commits again if it can, proving it with a
    /// durable write. Only what was durable before the failure is there afterwards (plus,
    /// possibly, batches whose flush reported a failure but that reached the disk anyway).
    /// The default flushes.
    fn recover(&self) -> Result<(), RecordError> {
        self.flush()
    }

    /// Called by the committer after it has answered a batch: waits a little while the
    /// storage's background work (an LSM engine's flushes and compactions) is behind, so that
    /// it catches up before the engine stops every write. Only the committer is slowed so,
    /// never a session. The default returns at once.
    fn give_way(&self) {}
}
