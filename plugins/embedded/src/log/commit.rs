//! Turning one [`LogBatch`] into one atomic write: the intents become key-value operations
//! under the embedded layout (the keys and values chatd has always written, so existing data
//! directories keep working), and the read-modify-write ones (remembered cids, receipt
//! statuses, summaries) read the store plus what earlier units of the same batch staged.
//!
//! Values: `m/{id}` = the payload; `h/{conversation}/{id}` = empty (1:1) or the group index;
//! `q/{user}/{qid}` = empty (the 1:1 message `qid`), `@{id}` (a pointer to message `id`) or a
//! receipt event payload; `s/{id}/{user}` = the status record; `v/{user}/{conversation}` = the
//! summary; `a/{media}/{user}` = empty; `j/{user}/{conversation}/{id}` = the queue id when it
//! is not `id`, else empty; `k/{user}/{cid}` = the ack, short when it can be (`cid_acks.rs`); `x/last_id` = the newest id issued.
//! Queue entries (`q/…`) are not written here: the batch's are held in memory under one list
//! record (`held.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::keys;
use bytes::Bytes;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::log::{Intent, LogBatch, Queued, SummaryChange, Unit, UnitOutcome};
use chatd_core::records::chat::{Status, StatusRecord, Summary};
use chatd_kv::{KvStore, Op};

use super::cid_acks;
use super::groups::index_op;
use super::summaries::SummaryCache;
use super::EmbeddedLog;
use crate::accounts::{encode, failed};

/// The first byte of a queue entry that points at a stored message (`@{message id}`).
pub(super) const POINTER: u8 = b'@';

/// Everything one batch writes, accumulated unit by unit.
pub(super) struct Staging<'a> {
    /// Where the batch goes; read for the current values of what it changes.
    pub(super) store: &'a dyn KvStore,
    /// Summaries as earlier commits left them, read before the store.
    cached: &'a SummaryCache,
    /// The operations so far, in intent order (summaries are added by [`Staging::finish`]).
    pub(super) ops: Vec<Op>,
    /// The queue entries the batch queues, by key: held in memory, not written one by one
    /// (see `held.rs`).
    pub(super) enqueued: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Acks by `k/…` key for cids remembered by this batch or looked up by it.
    pub(super) cids: HashMap<Vec<u8>, Bytes>,
    /// Receipt statuses (`s/…` keys) as this batch leaves them.
    statuses: HashMap<Vec<u8>, Status>,
    /// Summaries (`v/…` keys) with every change of the batch folded in.
    pub(super) summaries: BTreeMap<Vec<u8>, Summary>,
    /// Groups whose record or membership the batch changes (their cached copies go).
    pub(super) groups: HashSet<String>,
    /// Fan-outs the batch writes: `true` while unfinished (the claim is renewed), `false`
    /// once finished (the claim goes).
    pub(super) fanouts: Vec<(String, bool)>,
    /// Key prefixes of users forgotten earlier in the batch: the store still holds their
    /// records until the batch is applied, but later intents must find none.
    pub(super) forgotten: Vec<String>,
}

impl<'a> Staging<'a> {
    /// An empty batch for `store`, whose recently written summaries `cached` holds.
    pub(super) fn new(store: &'a dyn KvStore, cached: &'a SummaryCache) -> Staging<'a> {
        Staging {
            store,
            cached,
            ops: Vec::new(),
            enqueued: BTreeMap::new(),
            cids: HashMap::new(),
            statuses: HashMap::new(),
            summaries: BTreeMap::new(),
            groups: HashSet::new(),
            fanouts: Vec::new(),
            forgotten: Vec::new(),
        }
    }

    /// The stored value under `key`, as earlier intents of this batch leave it for a
    /// read-modify-write: none when its user was forgotten.
    fn stored(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RecordError> {
        if self.forgotten.iter().any(|p| key.starts_with(p.as_bytes())) {
            return Ok(None);
        }
        self.store.get(key).map_err(failed)
    }

    /// Stages one unit: skipped whole when its cid is remembered already (by the store or by
    /// an earlier unit of this batch).
    pub(super) fn unit(&mut self, unit: Unit) -> Result<UnitOutcome, RecordError> {
        if let Some(claim) = &unit.cid {
            let key = keys::cid(&claim.user, &claim.cid);
            if let Some(ack) = self.cids.get(&key) {
                return Ok(UnitOutcome::Duplicate(ack.clone()));
            }
            if let Some(stored) = self.stored(&key)? {
                let ack = cid_acks::decode(&claim.cid, stored);
                self.cids.insert(key, ack.clone());
                return Ok(UnitOutcome::Duplicate(ack));
            }
            self.ops.push(Op::Put(
                key.clone(),
                cid_acks::encode(&claim.cid, &claim.ack),
            ));
            self.cids.insert(key, claim.ack.clone());
        }
        for intent in unit.intents {
            self.intent(intent)?;
        }
        Ok(UnitOutcome::Applied)
    }

    /// Stages one intent.
    fn intent(&mut self, intent: Intent) -> Result<(), RecordError> {
        match intent {
            Intent::Message { id, payload } => {
                self.ops.push(Op::Put(keys::message(&id), payload.to_vec()));
            }
            Intent::History {
                conversation,
                id,
                index,
            } => {
                let value = match index {
                    None => Vec::new(),
                    Some(index) => encode(&index)?,
                };
                self.ops
                    .push(Op::Put(keys::history_entry(&conversation, &id), value));
            }
            Intent::Enqueue { user, qid, entry } => {
                let value = match entry {
                    Queued::Message => Vec::new(),
                    Queued::Pointer(id) => [&[POINTER], id.as_bytes()].concat(),
                    Queued::Receipt(payload) => payload.to_vec(),
                };
                self.enqueued.insert(keys::queue_entry(&user, &qid), value);
            }
            Intent::Status { id, user, record } => self.status(&id, &user, record)?,
            Intent::Summary {
                user,
                conversation,
                peer,
                group,
                change,
            } => self.summary(&user, &conversation, &peer, group, change)?,
            Intent::MediaRight { media, user } => {
                self.ops
                    .push(Op::Put(keys::media_access(&media, &user), Vec::new()));
            }
            Intent::PushJob {
                user,
                conversation,
                id,
                queued,
            } => {
                let value = queued.map(String::into_bytes).unwrap_or_default();
                self.ops
                    .push(Op::Put(keys::push_job(&user, &conversation, &id), value));
            }
            Intent::Group { group, record } => {
                self.ops
                    .push(Op::Put(keys::group(&group), encode(&record)?));
                self.groups.insert(group);
            }
            Intent::Member {
                group,
                user,
                record,
            } => {
                self.ops
                    .push(Op::Put(keys::member(&group, &user), encode(&record)?));
                self.ops.push(index_op(&group, &user, &record));
                self.groups.insert(group);
            }
            Intent::ForgetMember { group, user } => {
                self.ops.push(Op::Delete(keys::member(&group, &user)));
                self.ops
                    .push(Op::Delete(keys::membership_index(&user, &group)));
                self.groups.insert(group);
            }
            Intent::Fanout { id, record } => {
                let key = keys::fanout(&id);
                match record {
                    Some(record) => {
                        self.ops.push(Op::Put(key, encode(&record)?));
                        self.fanouts.push((id, true));
                    }
                    None => {
                        self.ops.push(Op::Delete(key));
                        self.fanouts.push((id, false));
                    }
                }
            }
            Intent::ForgetUser { user } => self.forget_user(&user)?,
            Intent::Account { user, record } => {
                self.ops
                    .push(Op::Put(keys::account(&user), encode(&record)?));
            }
        }
        Ok(())
    }

    /// The status of `id` for `user` becomes `record.status` if that is further than now.
    fn status(&mut self, id: &str, user: &str, record: StatusRecord) -> Result<(), RecordError> {
        let key = keys::status(id, user);
        let current = match self.statuses.get(&key) {
            Some(s) => *s,
            None => match self.store.get(&key).map_err(failed)? {
                None => Status::Sent,
                Some(bytes) => StatusRecord::decode(&bytes).map_or_else(
                    |e| {
                        // Replaced by the new status: refusing would block it for good.
                        tracing::warn!("replacing unreadable receipt status of {id}: {e}");
                        Status::Sent
                    },
                    |r| r.status,
                ),
            },
        };
        if record.status <= current {
            return Ok(());
        }
        self.ops.push(Op::Put(key.clone(), encode(&record)?));
        self.statuses.insert(key, record.status);
        Ok(())
    }

    /// Folds one change into `user`'s summary of `conversation`.
    fn summary(
        &mut self,
        user: &str,
        conversation: &str,
        peer: &str,
        group: bool,
        change: SummaryChange,
    ) -> Result<(), RecordError> {
        let key = keys::summary(user, conversation);
        let mut summary = match self.summaries.remove(&key) {
            Some(summary) => summary,
            None => self.stored_summary(&key, peer, group)?,
        };
        if group {
            summary.group = true;
        }
        match change {
            SummaryChange::Last(id) => summary.last_id = id,
            SummaryChange::Received(id) => {
                summary.last_id = id;
                summary.unread += 1;
            }
            SummaryChange::ReadOne => summary.unread = summary.unread.saturating_sub(1),
            SummaryChange::ReadUpto(id) => {
                if summary.read_upto < id {
                    summary.read_upto = id;
                }
            }
            SummaryChange::Joined(id) => {
                summary.group = true;
                if summary.read_upto.is_empty() {
                    summary.read_upto = id;
                }
            }
        }
        self.summaries.insert(key, summary);
        Ok(())
    }

    /// The stored summary under `key`, or a new one for `peer` when there is none.
    fn stored_summary(&self, key: &[u8], peer: &str, group: bool) -> Result<Summary, RecordError> {
        let fresh = || Summary {
            peer: peer.to_string(),
            group,
            ..Summary::default()
        };
        if !self.forgotten.iter().any(|p| key.starts_with(p.as_bytes())) {
            if let Some(summary) = self.cached.get(key) {
                return Ok(summary);
            }
        }
        Ok(match self.stored(key)? {
            None => fresh(),
            Some(bytes) => Summary::decode(&bytes).unwrap_or_else(|e| {
                // Starting again loses only the unread count; refusing would block the
                // conversation for good.
                tracing::warn!("replacing unreadable conversation summary: {e}");
                fresh()
            }),
        })
    }

    /// The batch's operations, the folded summaries last.
    pub(super) fn finish(&mut self) -> Result<Vec<Op>, RecordError> {
        let mut ops = std::mem::take(&mut self.ops);
        for (key, summary) in &self.summaries {
            ops.push(Op::Put(key.clone(), encode(summary)?));
        }
        Ok(ops)
    }
}

impl EmbeddedLog {
    /// Carries out `batch` (see [`MessageLog::commit`](chatd_core::ports::log::MessageLog)):
    /// one atomic apply, a flush when durable, and only then the in-memory consequences.
    pub(super) fn write(&self, batch: LogBatch) -> Result<Vec<UnitOutcome>, RecordError> {
        self.write_holding(batch, true)
    }

    /// [`EmbeddedLog::write`], which writes out every held queue entry unless `hold` (at
    /// shutdown, so that a restart finds no list to write out and delivers nothing twice).
    pub(super) fn write_holding(
        &self,
        batch: LogBatch,
        hold: bool,
    ) -> Result<Vec<UnitOutcome>, RecordError> {
        // Held for the whole commit: every read-modify-write of the batch must see the
        // batches before it, and `applied` only moves under it.
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.store.as_ref();
        let mut staging = Staging::new(store, &self.summaries);
        let mut outcomes = Vec::with_capacity(batch.units.len());
        let held = self.leases.held(&batch.units, batch.claimant.as_ref());
        for unit in batch.units {
            if let Some(held) = &held {
                if !unit.fence.iter().all(|id| held.contains(id)) {
                    outcomes.push(UnitOutcome::Taken);
                    continue;
                }
            }
            outcomes.push(staging.unit(unit)?);
        }
        let mut ops = staging.finish()?;
        if let Some(id) = &batch.newest {
            ops.push(Op::Put(keys::LAST_ID.to_vec(), id.clone().into_bytes()));
        }
        let now = Instant::now();
        let enqueued = std::mem::take(&mut staging.enqueued);
        let mut holding = self.held.stage(now, !hold, enqueued, &staging.forgotten);
        ops.append(&mut holding.ops);
        let acked = self.acked.take();
        // Each queue key is put once (queue ids are never issued twice).
        ops.extend(acked.iter().cloned().map(Op::DeleteOnce));
        if !ops.is_empty() {
            // A group load that starts before the apply must not cache what it read: the lock
            // spans the apply and the invalidation (see `groups.rs`). The store holds the
            // batch once the apply returns, flushed or not, so its groups go even when the
            // flush below fails.
            let mut cached = self.groups.lock();
            if let Err(e) = store.apply(ops) {
                self.summaries.clear();
                self.held.unstage(&holding);
                return Err(failed(e));
            }
            cached.invalidate(&staging.groups);
            drop(cached);
            self.held.applied(holding, now);
            self.summaries
                .written(&staging.summaries, &staging.forgotten);
            if let Some(id) = &batch.newest {
                if *id > *applied {
                    *applied = id.clone();
                }
            }
        }
        if batch.durable {
            // Even for a batch of duplicates only: their acks may come from a batch whose
            // flush failed, and must not be given again before they are durable.
            store.flush().map_err(failed)?;
            self.watermark.advance(&applied);
        }
        self.acked.done(&acked);
        self.leases
            .written(&staging.fanouts, batch.claimant.as_ref());
        Ok(outcomes)
    }
}
