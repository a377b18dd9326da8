//! What one group commit accumulates before it goes to the message log: the units (one per
//! send, receipt publish or group change, plus one for the slices of pending fan-outs), the
//! deliveries each unit makes once durable, and what later jobs of the same batch must see of
//! earlier ones (acks of new cids, changed statuses and groups, group counts).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::fanout::{Fanout, Progress};
use super::member_index::StagedCounts;
use crate::outbox::Outgoing;
use crate::ports::log::{CidClaim, Claimant, Intent, LogBatch, Unit, UnitOutcome};
use crate::records::chat::Status;
use crate::records::group::{Group, GroupIndex};

/// How one send of a batch came out before the batch is written.
pub(super) enum Staged {
    /// A new message, written by unit `unit`; the ack to give once durable.
    New {
        /// Its unit.
        unit: usize,
        /// The ack.
        ack: Bytes,
    },
    /// The cid of a send staged earlier in this batch as unit `unit`: answered as that one
    /// is (with the first ack when the log finds the cid remembered already).
    Again {
        /// The earlier send's unit.
        unit: usize,
        /// The earlier send's ack.
        ack: Bytes,
    },
    /// A cid remembered before; the first ack, given unchanged.
    Duplicate(Bytes),
}

/// Everything one batch writes, accumulated across its jobs.
#[derive(Default)]
pub(super) struct Batch {
    /// Sealed units.
    units: Vec<Unit>,
    /// The intents of the unit being staged.
    pub(super) intents: Vec<Intent>,
    /// The stored fan-outs the unit being staged continues (see [`Unit::fence`]).
    pub(super) fence: Vec<String>,
    /// Deliveries, in id order, each with the unit that makes it.
    fresh: Vec<(usize, Outgoing)>,
    /// How each (user, cid) used in this batch was staged: [`Staged::New`] or
    /// [`Staged::Duplicate`].
    pub(super) acks: HashMap<(String, String), Staged>,
    /// Receipt statuses (message id, recipient) changed by this batch.
    pub(super) statuses: HashMap<(String, String), Status>,
    /// Groups read or changed by this batch, as they are after its changes.
    pub(super) groups: HashMap<String, Arc<Group>>,
    /// How many messages (group events included) this batch stores.
    pub(super) messages: u64,
    /// How many of `fresh` are receipt events.
    pub(super) receipts: u64,
    /// Fan-outs started by this batch, each with the unit that started it.
    pub(super) new_fanouts: Vec<(usize, Fanout)>,
    /// How far this batch takes each fan-out it writes a slice of.
    pub(super) progress: Vec<Progress>,
    /// Groups joined and left per user by this batch (not yet visible in the store).
    pub(super) group_counts: StagedCounts,
}

impl Batch {
    /// The index the unit being staged will have once sealed.
    pub(super) fn unit(&self) -> usize {
        self.units.len()
    }

    /// Adds an intent to the unit being staged.
    pub(super) fn push(&mut self, intent: Intent) {
        self.intents.push(intent);
    }

    /// Stores message `id` and adds it to the history of `conversation` (group messages and
    /// events with their `index`).
    pub(super) fn store_message(
        &mut self,
        id: &str,
        payload: &Bytes,
        conversation: &str,
        index: Option<GroupIndex>,
    ) {
        self.push(Intent::Message {
            id: id.to_string(),
            payload: payload.clone(),
        });
        self.push(Intent::History {
            conversation: conversation.to_string(),
            id: id.to_string(),
            index,
        });
    }

    /// Adds an intent to an earlier unit (a new fan-out's first slice goes with its message).
    pub(super) fn push_to(&mut self, unit: usize, intent: Intent) {
        match self.units.get_mut(unit) {
            Some(sealed) => sealed.intents.push(intent),
            None => self.intents.push(intent),
        }
    }

    /// A delivery made by the unit being staged.
    pub(super) fn deliver(&mut self, item: Outgoing) {
        let unit = self.unit();
        self.fresh.push((unit, item));
    }

    /// A delivery made by `unit`.
    pub(super) fn deliver_for(&mut self, unit: usize, item: Outgoing) {
        self.fresh.push((unit, item));
    }

    /// Ends the unit being staged (remembering `cid` with it, for a send). A unit with no
    /// intents is dropped unless it claims a cid.
    pub(super) fn seal(&mut self, cid: Option<CidClaim>) {
        let intents = std::mem::take(&mut self.intents);
        let fence = std::mem::take(&mut self.fence);
        if intents.is_empty() && cid.is_none() {
            // Nothing to write, and no delivery can belong to it.
            self.fresh.retain(|(unit, _)| *unit != self.units.len());
            return;
        }
        self.units.push(Unit {
            cid,
            intents,
            fence,
        });
    }

    /// Drops what the unit being staged wrote so far (a refused change writes nothing).
    pub(super) fn discard(&mut self) {
        self.intents.clear();
        self.fence.clear();
        let unit = self.units.len();
        self.fresh.retain(|(u, _)| *u != unit);
        self.new_fanouts.retain(|(u, _)| *u != unit);
    }

    /// The log batch to commit (the units move out; the rest stays for the answers).
    pub(super) fn take_log(
        &mut self,
        newest: Option<String>,
        durable: bool,
        claimant: Claimant,
    ) -> LogBatch {
        self.seal(None);
        LogBatch {
            units: std::mem::take(&mut self.units),
            newest,
            durable,
            claimant: Some(claimant),
        }
    }

    /// The deliveries of the units that were written, in id order.
    pub(super) fn delivered(&mut self, outcomes: &[UnitOutcome]) -> Vec<Outgoing> {
        std::mem::take(&mut self.fresh)
            .into_iter()
            .filter(|(unit, _)| applied(outcomes, *unit))
            .map(|(_, item)| item)
            .collect()
    }
}

/// Whether `unit` was written (a unit with no outcome is one that was never sealed).
pub(super) fn applied(outcomes: &[UnitOutcome], unit: usize) -> bool {
    !matches!(
        outcomes.get(unit),
        Some(UnitOutcome::Duplicate(_) | UnitOutcome::Taken)
    )
}

/// Whether any unit was skipped because a fan-out it continued was taken over.
pub(super) fn taken(outcomes: &[UnitOutcome]) -> bool {
    outcomes.contains(&UnitOutcome::Taken)
}
