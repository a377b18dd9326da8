//! The message-log port (`chatd_core::ports::log`) over the key-value engine, with the key
//! layout chatd has always used (`crate::keys`), so that existing data directories keep
//! working.
//!
//! The engine's atomic batches make every [`LogBatch`] all or nothing; committed-only reads
//! come from the committed watermark (`watermark.rs`): the highest id of a flushed batch,
//! which bounds queue and history reads, while the store already shows applied writes.
//! Split by concern: `commit.rs` (intents to operations), `reads.rs`, `groups.rs` (cache,
//! membership, the groups-of-user index), `fanouts.rs` (claims), `purge.rs` (removed
//! accounts), `acked.rs` (dequeues waiting for the next commit), `held.rs` (queue entries held
//! in memory, most of which are dequeued before they would be written), `summaries.rs` (the
//! summaries written lately, so changing one needs no read), `watermark.rs`.

mod acked;
mod cid_acks;
mod commit;
mod fanouts;
mod forget;
mod groups;
mod held;
mod purge;
mod reads;
mod summaries;
mod watermark;

use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::keys;
use bytes::Bytes;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::log::{
    HistoryEntry, LogBatch, MessageLog, PendingFanout, QueueItem, UnitOutcome,
};
use chatd_core::records::chat::{Status, Summary};
use chatd_core::records::group::{Group, MemberRecord};
use chatd_kv::{KvPair, KvStore, Op};

use self::acked::AckedKeys;
use self::fanouts::Leases;
use self::groups::GroupCache;
pub use self::held::{HeldEntries, HOLD, MAX_HELD};
use self::summaries::SummaryCache;
use self::watermark::Watermark;
use crate::accounts::failed;

/// Every row whose key starts with `prefix` (which ends in `/`), in key order.
fn rows_under(store: &dyn KvStore, prefix: &str) -> Result<Vec<KvPair>, RecordError> {
    store
        .scan(
            prefix.as_bytes(),
            &keys::prefix_end(prefix),
            false,
            usize::MAX,
        )
        .map_err(failed)
}

/// The message log kept in an embedded key-value store.
pub struct EmbeddedLog {
    store: Arc<dyn KvStore>,
    /// The highest id of a durable batch: queue and history reads stop there.
    watermark: Watermark,
    /// The highest id applied to the store (durable once a flush succeeds); its lock also
    /// makes commits one at a time.
    applied: Mutex<String>,
    /// Dequeued queue keys the next commit deletes.
    acked: AckedKeys,
    /// Queue entries held in memory rather than written one by one.
    held: Arc<HeldEntries>,
    /// Groups loaded lately.
    groups: GroupCache,
    /// Claims of unfinished fan-outs.
    leases: Leases,
    /// Conversation summaries the last commits wrote.
    summaries: SummaryCache,
}

impl EmbeddedLog {
    /// The message log in `store`: builds the groups-of-user index if the store predates it,
    /// writes out the queue entries held when it was last closed, and starts the committed
    /// watermark at the newest id stored (everything in the store at open counts as
    /// committed: what a crash lost is gone already).
    pub fn open(store: Arc<dyn KvStore>) -> Result<EmbeddedLog, RecordError> {
        groups::build_index_if_missing(store.as_ref())?;
        let held = Arc::new(HeldEntries::default());
        held.write_out_stored(store.as_ref())?;
        let newest = reads::newest_id(store.as_ref())?.unwrap_or_default();
        Ok(EmbeddedLog {
            store,
            watermark: Watermark::new(newest.clone()),
            applied: Mutex::new(newest),
            acked: AckedKeys::default(),
            held,
            groups: GroupCache::default(),
            leases: Leases::default(),
            summaries: SummaryCache::default(),
        })
    }

    /// The queue entries this log holds in memory, for the push port's "still queued".
    pub fn held_entries(&self) -> Arc<HeldEntries> {
        self.held.clone()
    }
}

impl MessageLog for EmbeddedLog {
    fn commit(&self, batch: LogBatch) -> Result<Vec<UnitOutcome>, RecordError> {
        self.write(batch)
    }

    fn newest_id(&self) -> Result<Option<String>, RecordError> {
        reads::newest_id(self.store.as_ref())
    }

    fn remembered_ack(&self, user: &str, cid: &str) -> Result<Option<Bytes>, RecordError> {
        Ok(self
            .store
            .get(&keys::cid(user, cid))
            .map_err(failed)?
            .map(|value| cid_acks::decode(cid, value)))
    }

    fn message(&self, id: &str) -> Result<Option<Bytes>, RecordError> {
        Ok(self
            .store
            .get(&keys::message(id))
            .map_err(failed)?
            .map(Bytes::from))
    }

    fn status(&self, id: &str, user: &str) -> Result<Status, RecordError> {
        reads::status(self.store.as_ref(), id, user)
    }

    fn statuses(&self, id: &str) -> Result<Vec<(String, Status)>, RecordError> {
        reads::statuses(self.store.as_ref(), id)
    }

    fn queue(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, RecordError> {
        let committed = self.watermark.get();
        reads::queue(
            self.store.as_ref(),
            &self.acked,
            &self.held,
            &committed,
            user,
            after,
            limit,
        )
    }

    fn dequeue(&self, user: &str, qid: &str) -> Result<bool, RecordError> {
        let key = keys::queue_entry(user, qid);
        if self.held.dequeue(&key) {
            // Never written: nothing for a commit to delete.
            return Ok(false);
        }
        Ok(self.acked.add(key))
    }

    fn history(
        &self,
        conversation: &str,
        low: Bound<&str>,
        high: Bound<&str>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RecordError> {
        let committed = self.watermark.get();
        reads::history(
            self.store.as_ref(),
            &committed,
            conversation,
            low,
            high,
            newest_first,
            limit,
        )
    }

    fn history_entry(
        &self,
        conversation: &str,
        id: &str,
    ) -> Result<Option<HistoryEntry>, RecordError> {
        let committed = self.watermark.get();
        reads::history_entry(self.store.as_ref(), &committed, conversation, id)
    }

    fn summaries(&self, user: &str) -> Result<Vec<(String, Summary)>, RecordError> {
        reads::summaries(self.store.as_ref(), user)
    }

    fn group(&self, group: &str) -> Result<Option<Arc<Group>>, RecordError> {
        self.groups.get(self.store.as_ref(), group)
    }

    fn membership(&self, group: &str, user: &str) -> Result<Option<MemberRecord>, RecordError> {
        groups::membership(self.store.as_ref(), group, user)
    }

    fn groups_of(&self, user: &str, limit: usize) -> Result<Vec<String>, RecordError> {
        groups::groups_of(self.store.as_ref(), user, limit)
    }

    fn claim_fanouts(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<PendingFanout>, RecordError> {
        self.leases.claim(self.store.as_ref(), owner, lease)
    }

    fn pending_purges(&self) -> Result<Vec<String>, RecordError> {
        purge::pending(self.store.as_ref())
    }

    fn finish_purge(&self, user: &str) -> Result<usize, RecordError> {
        purge::finish(self.store.as_ref(), user)
    }

    fn flush(&self) -> Result<(), RecordError> {
        // At shutdown: held entries are written out, so that the next open has none to write
        // out again (which would deliver the dequeued ones twice).
        let everything = LogBatch {
            durable: true,
            ..LogBatch::default()
        };
        self.write_holding(everything, false).map(drop)
    }

    fn failing(&self) -> bool {
        self.store.failing()
    }

    fn give_way(&self) {
        self.store.give_way()
    }

    fn recover(&self) -> Result<(), RecordError> {
        // No commit runs meanwhile: they hold this lock too.
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        self.store.reopen().map_err(failed)?;
        // What was loaded or written may come from a batch that never reached the disk.
        self.groups.lock().clear();
        self.summaries.clear();
        // So may held entries: those whose list is on disk are written out, the rest went
        // with their batch.
        self.held.write_out_stored(self.store.as_ref())?;
        // Larger than a page, so that it needs fresh blocks on a disk that was full, not only
        // the slack of a page the failed writes had started.
        let probe = vec![0; PROBE_BYTES];
        self.store
            .apply(vec![Op::Put(keys::STORAGE_PROBE.to_vec(), probe)])
            .map_err(failed)?;
        self.store.flush().map_err(failed)?;
        // Everything the reopened store holds is durable now, batches whose flush reported
        // a failure but that reached the disk anyway included: readers may see all of it.
        self.watermark.advance(&applied);
        Ok(())
    }
}

/// Bytes of the write that proves a recovered store takes durable writes.
const PROBE_BYTES: usize = 16 * 1024;
