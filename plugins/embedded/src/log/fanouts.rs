//! Unfinished group fan-outs: `n/{id}` = what is left of fan-out `id` (JSON), next to the
//! message `m/{id}` itself; in acceptance order since ids sort that way.
//!
//! Claims are leases kept in memory: one process opens the store at a time (the engine's lock
//! sees to it), so this process's claims are all the claims there are. A claim only keeps
//! other owners away; the `n/` record, written by the same batches as the slices, is what
//! says how far a fan-out got.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::keys;
use bytes::Bytes;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::log::{Claimant, PendingFanout, Unit};
use chatd_core::records::fanout::FanoutRecord;
use chatd_kv::KvStore;

use super::rows_under;
use crate::accounts::failed;

/// One held claim of a fan-out.
struct Lease {
    /// Who holds it.
    owner: String,
    /// When it ends.
    until: Instant,
    /// How long it was taken for; a renewal runs this long again.
    length: Duration,
}

/// The held claims, by message id.
#[derive(Default)]
pub(super) struct Leases(Mutex<HashMap<String, Lease>>);

impl Leases {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        // Leases are plain data: a poisoned lock holds nothing broken.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims for `owner`, for `length`, every fan-out in `store` that no unexpired claim of
    /// another owner holds, in acceptance order. A record that does not decode or whose
    /// message is missing is left out (and logged): it can never be carried out.
    pub(super) fn claim(
        &self,
        store: &dyn KvStore,
        owner: &str,
        length: Duration,
    ) -> Result<Vec<PendingFanout>, RecordError> {
        let prefix = keys::FANOUT_PREFIX;
        let rows = rows_under(store, prefix)?;
        let now = Instant::now();
        let mut leases = self.lock();
        let mut out = Vec::new();
        for (key, value) in rows {
            let id =
                String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
            if leases
                .get(&id)
                .is_some_and(|l| l.owner != owner && l.until > now)
            {
                continue;
            }
            let record: FanoutRecord = match serde_json::from_slice(&value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("pending fan-out of {id} unreadable, dropped: {e}");
                    continue;
                }
            };
            let Some(payload) = store.get(&keys::message(&id)).map_err(failed)? else {
                tracing::error!("pending fan-out of {id} has no message, dropped");
                continue;
            };
            leases.insert(
                id.clone(),
                Lease {
                    owner: owner.to_string(),
                    until: now + length,
                    length,
                },
            );
            out.push(PendingFanout {
                id,
                payload: Bytes::from(payload),
                record,
            });
        }
        Ok(out)
    }

    /// When some unit continues a stored fan-out ([`Unit::fence`]): renews every claim
    /// `claimant` holds and returns which fan-outs those are (none without a claimant).
    pub(super) fn held(
        &self,
        units: &[Unit],
        claimant: Option<&Claimant>,
    ) -> Option<HashSet<String>> {
        if units.iter().all(|u| u.fence.is_empty()) {
            return None;
        }
        let Some(c) = claimant else {
            return Some(HashSet::new());
        };
        let until = Instant::now() + c.lease;
        let mut leases = self.lock();
        let mut held = HashSet::new();
        for (id, lease) in leases.iter_mut() {
            if lease.owner == c.owner {
                lease.until = until;
                lease.length = c.lease;
                held.insert(id.clone());
            }
        }
        Some(held)
    }

    /// After a successful commit by `claimant`: fan-outs still unfinished (`true`) are
    /// claimed by it, or have their claim renewed; finished ones (`false`) lose it. Without a
    /// claimant, existing claims are renewed and none is taken.
    pub(super) fn written(&self, fanouts: &[(String, bool)], claimant: Option<&Claimant>) {
        if fanouts.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut leases = self.lock();
        for (id, unfinished) in fanouts {
            if !*unfinished {
                leases.remove(id);
                continue;
            }
            match (leases.get_mut(id), claimant) {
                (Some(lease), _) => lease.until = now + lease.length,
                (None, Some(c)) => {
                    leases.insert(
                        id.clone(),
                        Lease {
                            owner: c.owner.clone(),
                            until: now + c.lease,
                            length: c.lease,
                        },
                    );
                }
                (None, None) => {}
            }
        }
    }
}
