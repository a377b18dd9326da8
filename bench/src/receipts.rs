//! Receipt load for `chatbench chat --receipts …`.
//!
//! Receiver i hands the id of every message of this run it gets (first copy only) to its
//! [`Batcher`], which publishes `{"ids":[…],"status":…}` on `chat/{me}/receipt` once
//! `--receipt-batch` ids are pending, or every [`FLUSH_EVERY`] whatever is pending. In
//! `delivered-read` mode each flush publishes a `delivered` receipt and then a `read` receipt for
//! the same ids. Just before each publish the batcher writes its time into the pair's [`Ledger`];
//! sender i, subscribed to `user/{me}/receipt`, looks each receipt up there to measure
//! receipt publish → author latency ([`ReceiptTally`]). Refusals reach the receiver on
//! `user/{me}/ack` ([`RefusalTally`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::cli::ReceiptMode;
use crate::clock::now_ns;
use crate::control::{stopped, Progress};
use crate::stats::Latency;

/// Pending ids are published at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// A receipt status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `delivered`.
    Delivered,
    /// `read`.
    Read,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Read => "read",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "delivered" => Some(Status::Delivered),
            "read" => Some(Status::Read),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Status::Delivered => 0,
            Status::Read => 1,
        }
    }
}

/// The statuses sent for every message in `mode`, in publish order.
pub fn statuses(mode: ReceiptMode) -> &'static [Status] {
    match mode {
        ReceiptMode::None => &[],
        ReceiptMode::Read => &[Status::Read],
        ReceiptMode::DeliveredRead => &[Status::Delivered, Status::Read],
    }
}

/// What is known of one message's receipts.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// Publish time per status ([`now_ns`]), 0 = not published.
    sent_ns: [u64; 2],
    /// The author got that status.
    got: [bool; 2],
    /// The receiver's receipt for that status was refused.
    refused: [bool; 2],
}

/// Outcome of [`Ledger::received`].
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// First arrival of a receipt that was published; carries publish → arrival in ns.
    New(u64),
    /// A second copy.
    Duplicate,
    /// A receipt for an id / status this run never published (e.g. left over from an earlier run).
    Unknown,
}

/// Receipts of one sender/receiver pair: written by the receiver's batcher, read by the sender.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<HashMap<String, Entry>>);

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `status` for `ids` is being published at `now_ns`.
    pub fn published(&self, ids: &[String], status: Status, now_ns: u64) {
        let mut map = self.lock();
        for id in ids {
            map.entry(id.clone()).or_default().sent_ns[status.index()] = now_ns;
        }
    }

    /// Matches a receipt the author got at `now_ns`.
    pub fn received(&self, id: &str, status: Status, now_ns: u64) -> Match {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(id) else {
            return Match::Unknown;
        };
        let i = status.index();
        if entry.sent_ns[i] == 0 {
            Match::Unknown
        } else if entry.got[i] {
            Match::Duplicate
        } else {
            entry.got[i] = true;
            Match::New(now_ns.saturating_sub(entry.sent_ns[i]))
        }
    }

    /// Marks the earliest published, unanswered, not yet refused status of `id` as refused
    /// (refusals name ids only). Returns whether `id` was one of ours.
    pub fn refused(&self, id: &str) -> bool {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(id) else {
            return false;
        };
        for i in 0..2 {
            if entry.sent_ns[i] != 0 && !entry.got[i] && !entry.refused[i] {
                entry.refused[i] = true;
                return true;
            }
        }
        false
    }

    /// Published receipts that neither reached the author nor were refused.
    pub fn missing(&self) -> u64 {
        self.lock()
            .values()
            .map(|e| {
                (0..2)
                    .filter(|&i| e.sent_ns[i] != 0 && !e.got[i] && !e.refused[i])
                    .count() as u64
            })
            .sum()
    }
}

/// Publishes one receiver's receipts in batches.
pub struct Batcher {
    /// The receiver's client.
    pub client: AsyncClient,
    /// `chat/{me}/receipt`.
    pub topic: String,
    /// The pair's ledger.
    pub ledger: Arc<Ledger>,
    /// Statuses published per flush, in order.
    pub statuses: &'static [Status],
    /// Ids per publish.
    pub batch: usize,
}

/// What one [`Batcher`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatcherTally {
    /// Receipt publishes handed to the client.
    pub publishes: u64,
    /// Ids in those publishes (one per id and status).
    pub ids: u64,
    /// Ids still pending (never published) when the run stopped.
    pub unsent: u64,
}

/// The payload of a receipt publish.
pub fn payload(ids: &[String], status: Status) -> Vec<u8> {
    serde_json::json!({ "ids": ids, "status": status.as_str() })
        .to_string()
        .into_bytes()
}

impl Batcher {
    /// Runs until `stop` is raised, the id channel closes or the client is gone.
    pub async fn run(
        self,
        mut ids: mpsc::UnboundedReceiver<String>,
        mut stop: watch::Receiver<bool>,
        progress: Arc<Progress>,
    ) -> BatcherTally {
        let mut tally = BatcherTally::default();
        let mut pending: Vec<String> = Vec::with_capacity(self.batch);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stop_fut = stopped(&mut stop);
        tokio::pin!(stop_fut);
        loop {
            let flush = tokio::select! {
                biased;
                _ = &mut stop_fut => break,
                id = ids.recv() => match id {
                    Some(id) => {
                        pending.push(id);
                        pending.len() >= self.batch
                    }
                    None => break,
                },
                _ = tick.tick() => !pending.is_empty(),
            };
            if !flush {
                continue;
            }
            if !self.flush(&pending, &mut tally, &progress).await {
                break;
            }
            pending.clear();
        }
        // What was never published, including ids still in the channel.
        ids.close();
        let mut unsent = pending.len() as u64;
        while ids.try_recv().is_ok() {
            unsent += 1;
        }
        tally.unsent = unsent * self.statuses.len() as u64;
        tally
    }

    /// Publishes every status for `ids`; false when the client is gone.
    async fn flush(&self, ids: &[String], tally: &mut BatcherTally, progress: &Progress) -> bool {
        for &status in self.statuses {
            let body = payload(ids, status);
            self.ledger.published(ids, status, now_ns());
            if self
                .client
                .publish(self.topic.as_str(), QoS::AtLeastOnce, false, body)
                .await
                .is_err()
            {
                return false;
            }
            tally.publishes += 1;
            tally.ids += ids.len() as u64;
            progress
                .receipts_sent
                .fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }
}

/// A receipt on `user/{me}/receipt`.
#[derive(Deserialize)]
struct ReceiptMsg {
    id: Option<String>,
    status: Option<String>,
}

/// What one sender saw on its receipt topic.
#[derive(Default)]
pub struct ReceiptTally {
    /// Receipt publish → author latency of first arrivals.
    pub latency: Latency,
    /// Distinct receipts of this run received.
    pub received: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// Receipts that match nothing this run published, or that cannot be parsed.
    pub unknown: u64,
    /// Arrival time of the last distinct receipt, 0 if none.
    pub last_ns: u64,
}

impl ReceiptTally {
    /// Records one receipt payload arriving at `now_ns`; true if it was a new one of this run.
    pub fn record(&mut self, payload: &[u8], ledger: &Ledger, now_ns: u64) -> bool {
        let parsed = serde_json::from_slice::<ReceiptMsg>(payload)
            .ok()
            .and_then(|m| Some((m.id?, Status::parse(m.status.as_deref()?)?)));
        let Some((id, status)) = parsed else {
            self.unknown += 1;
            return false;
        };
        match ledger.received(&id, status, now_ns) {
            Match::New(ns) => {
                self.latency.record_ns(ns);
                self.received += 1;
                self.last_ns = now_ns;
                true
            }
            Match::Duplicate => {
                self.duplicates += 1;
                false
            }
            Match::Unknown => {
                self.unknown += 1;
                false
            }
        }
    }
}

/// A refusal on `user/{me}/ack`.
#[derive(Deserialize)]
struct RefusalMsg {
    receipt: Option<Vec<String>>,
    error: Option<RefusalError>,
}

#[derive(Deserialize)]
struct RefusalError {
    code: Option<String>,
}

/// Receipt refusals one receiver got.
#[derive(Default)]
pub struct RefusalTally {
    /// Refused ids (all of them, ours or not).
    pub ids: u64,
    /// Refused ids by error code.
    pub by_code: BTreeMap<String, u64>,
    /// Ack payloads that are not receipt refusals.
    pub other: u64,
}

impl RefusalTally {
    /// Records one payload of the receiver's ack topic; returns the number of ids refused.
    pub fn record(&mut self, payload: &[u8], ledger: &Ledger) -> u64 {
        let parsed = serde_json::from_slice::<RefusalMsg>(payload).ok();
        let Some((ids, err)) = parsed.and_then(|m| Some((m.receipt?, m.error?))) else {
            self.other += 1;
            return 0;
        };
        let n = ids.len() as u64;
        for id in &ids {
            ledger.refused(id);
        }
        self.ids += n;
        let code = err.code.unwrap_or_else(|| "unknown".into());
        *self.by_code.entry(code).or_default() += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_matches_receipts_once() {
        let ledger = Ledger::default();
        let ids = vec!["a".to_string(), "b".to_string()];
        ledger.published(&ids, Status::Delivered, 1_000);
        ledger.published(&ids, Status::Read, 2_000);
        assert_eq!(ledger.missing(), 4);
        assert_eq!(ledger.received("a", Status::Read, 5_000), Match::New(3_000));
        assert_eq!(ledger.received("a", Status::Read, 6_000), Match::Duplicate);
        assert_eq!(ledger.received("z", Status::Read, 6_000), Match::Unknown);
        assert!(ledger.refused("b"));
        assert_eq!(ledger.missing(), 2);
    }

    #[test]
    fn tallies_parse_payloads() {
        let ledger = Ledger::default();
        ledger.published(&["m1".to_string()], Status::Read, 1_000_000);
        let mut r = ReceiptTally::default();
        let ok = br#"{"id":"m1","by":"bob","status":"read","ts":1}"#;
        assert!(r.record(ok, &ledger, 3_000_000));
        assert!(!r.record(ok, &ledger, 3_000_000));
        assert!(!r.record(b"nonsense", &ledger, 3_000_000));
        assert_eq!((r.received, r.duplicates, r.unknown), (1, 1, 1));
        assert!((r.latency.summary().p50 - 2.0).abs() < 0.01);

        let mut f = RefusalTally::default();
        let refusal = br#"{"receipt":["x","y"],"error":{"code":"not_found","message":"m"}}"#;
        assert_eq!(f.record(refusal, &ledger), 2);
        assert_eq!(
            f.record(br#"{"typing":true,"error":{"code":"x"}}"#, &ledger),
            0
        );
        assert_eq!((f.ids, f.other), (2, 1));
        assert_eq!(f.by_code.get("not_found"), Some(&2));
        assert_eq!(
            String::from_utf8(payload(&["x".into()], Status::Read)).unwrap(),
            r#"{"ids":["x"],"status":"read"}"#
        );
    }
}
