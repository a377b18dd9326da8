//! The 1:1 traffic beside the group fan-out: pair i's sender `pa{i}` sends to `pb{i}` at a fixed
//! total rate, and every delivery keeps its send time, so the latency can be split afterwards
//! into the baseline (sent before the fan-out started) and the fan-out phase.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Packet};
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::acks::{self, AckState, AckTally};
use crate::clock::now_ns;
use crate::control::{join_all, stop_signal, wait_for_end, Progress};
use crate::mqtt::{self, Connected};
use crate::pace::Pacer;
use crate::publisher::Publisher;
use crate::stamp::{self, Encoder, Stamp};
use crate::stats::{Arrival, DeliveryTally, Latency};

/// Un-acked 1:1 messages allowed per pair sender.
pub const INFLIGHT: usize = 50;

/// Messages one pair sender can send at `rate` msgs/s over `pairs` pairs within `secs` seconds
/// (the most a run can last), plus slack: the size of its tallies.
pub fn capacity(rate: u64, pairs: usize, secs: u64) -> u64 {
    if pairs == 0 {
        return 0;
    }
    let per_pair = rate as f64 / pairs as f64;
    (per_pair * secs as f64).ceil() as u64 + 16
}

/// Send → delivery latency of the 1:1 messages by phase.
#[derive(Default)]
pub struct Phases {
    /// Sent before the fan-out started.
    pub baseline: Latency,
    /// Sent while the fan-out ran (from its first send to its last delivery or ack).
    pub during: Latency,
    /// Sent after the fan-out was over.
    pub after: Latency,
}

/// Splits `(sent_ns, latency_ns)` samples at `fanout_start` and `fanout_end`.
pub fn split(samples: &[(u64, u64)], fanout_start: u64, fanout_end: u64) -> Phases {
    let mut p = Phases::default();
    for &(sent, latency) in samples {
        let phase = if sent < fanout_start {
            &mut p.baseline
        } else if sent <= fanout_end {
            &mut p.during
        } else {
            &mut p.after
        };
        phase.record_ns(latency);
    }
    p
}

/// A message on `user/{me}/inbox`.
#[derive(Deserialize)]
struct InboxMsg {
    from: Option<String>,
    text: Option<String>,
}

/// What one pair receiver saw.
pub struct PairInbox {
    /// Deliveries from the pair's sender.
    pub tally: DeliveryTally,
    /// `(sent_ns, latency_ns)` of every first delivery.
    pub samples: Vec<(u64, u64)>,
}

/// What the pairs did, summed.
pub struct PairOutcome {
    /// Messages handed to the clients.
    pub sent: u64,
    /// Acked with status `sent`.
    pub acked: u64,
    /// Refused.
    pub errors: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Acked but never delivered.
    pub missing: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// Benchmark messages of other runs.
    pub stale: u64,
    /// Client connections that broke.
    pub connection_errors: usize,
    /// `(sent_ns, latency_ns)` of every first delivery.
    pub samples: Vec<(u64, u64)>,
}

/// The pairs' clients: event loops running from the start, publishers started later.
pub struct Pairs {
    run: u32,
    rate: u64,
    capacity: u64,
    encoder: Arc<Encoder>,
    clients: Vec<(AsyncClient, Arc<Semaphore>, String, String)>,
    progress: Arc<Progress>,
    stop_publishing: watch::Sender<bool>,
    publishers: Vec<JoinHandle<u64>>,
    ack_tasks: Vec<JoinHandle<AckTally>>,
    inbox_tasks: Vec<JoinHandle<PairInbox>>,
}

impl Pairs {
    /// Starts driving the pairs' connections: `senders[i]` (user `names[i].0`) gets acks,
    /// `receivers[i]` (user `names[i].1`) its inbox. Every inbox payload bumps `arrivals`. The
    /// event loops end at `stop`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        run: u32,
        rate: u64,
        capacity: u64,
        encoder: Arc<Encoder>,
        names: Vec<(String, String)>,
        senders: Vec<Connected>,
        receivers: Vec<Connected>,
        stop: &watch::Receiver<bool>,
        arrivals: &Arc<AtomicU64>,
    ) -> Pairs {
        let progress = Arc::new(Progress::default());
        let (stop_publishing, _) = stop_signal();
        let mut pairs = Pairs {
            run,
            rate,
            capacity,
            encoder,
            clients: Vec::new(),
            progress,
            stop_publishing,
            publishers: Vec::new(),
            ack_tasks: Vec::new(),
            inbox_tasks: Vec::new(),
        };
        for ((conn, (from, to)), rx) in senders.into_iter().zip(names).zip(receivers) {
            let window = Arc::new(Semaphore::new(INFLIGHT));
            pairs.clients.push((
                conn.client.clone(),
                window.clone(),
                from.clone(),
                to.clone(),
            ));
            pairs
                .ack_tasks
                .push(pairs.spawn_acks(conn, window, from.clone(), stop.clone()));
            pairs
                .inbox_tasks
                .push(pairs.spawn_inbox(rx, from, to, stop.clone(), arrivals.clone()));
        }
        pairs
    }

    fn spawn_acks(
        &self,
        conn: Connected,
        window: Arc<Semaphore>,
        me: String,
        stop: watch::Receiver<bool>,
    ) -> JoinHandle<AckTally> {
        let (run, capacity, progress) = (self.run, self.capacity, self.progress.clone());
        tokio::spawn(async move {
            let mut tally = AckTally::new(run, capacity);
            let broke = mqtt::drive(conn, stop, |packet| {
                let Packet::Publish(p) = packet else { return };
                match tally.record(&p.payload, now_ns()) {
                    Some(AckState::Sent) => Progress::bump(&progress.confirmed),
                    Some(AckState::Failed) => Progress::bump(&progress.failed),
                    _ => return,
                }
                window.add_permits(1);
            })
            .await;
            if let Some(e) = broke {
                eprintln!("pair sender {me}: connection error: {e}");
                progress.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            window.close();
            tally
        })
    }

    fn spawn_inbox(
        &self,
        conn: Connected,
        peer: String,
        me: String,
        stop: watch::Receiver<bool>,
        arrivals: Arc<AtomicU64>,
    ) -> JoinHandle<PairInbox> {
        let (run, capacity, progress) = (self.run, self.capacity, self.progress.clone());
        tokio::spawn(async move {
            let mut inbox = PairInbox {
                tally: DeliveryTally::new(run, capacity),
                samples: Vec::new(),
            };
            let broke = mqtt::drive(conn, stop, |packet| {
                let Packet::Publish(p) = packet else { return };
                let now = now_ns();
                arrivals.fetch_add(1, Ordering::Relaxed);
                let st = serde_json::from_slice::<InboxMsg>(&p.payload)
                    .ok()
                    .filter(|m| m.from.as_deref() == Some(peer.as_str()))
                    .and_then(|m| m.text)
                    .and_then(|t| stamp::decode(t.as_bytes()));
                if inbox.tally.record(st, now) == Arrival::New {
                    Progress::bump(&progress.delivered);
                    if let Some(st) = st {
                        inbox
                            .samples
                            .push((st.sent_ns, now.saturating_sub(st.sent_ns)));
                    }
                }
            })
            .await;
            if let Some(e) = broke {
                eprintln!("pair receiver {me}: connection error: {e}");
                progress.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            inbox
        })
    }

    /// Starts sending, paced from `start`.
    pub fn publish(&mut self, start: Instant) {
        let senders = self.clients.len();
        for (i, (client, window, me, peer)) in self.clients.iter().enumerate() {
            let publisher = Publisher {
                client: client.clone(),
                topic: format!("chat/{me}/send"),
                window: window.clone(),
                pacer: Pacer::new(self.rate, senders, i, start),
                messages: self.capacity,
            };
            let (run, encoder, peer) = (self.run, self.encoder.clone(), peer.clone());
            let (stop, progress) = (self.stop_publishing.subscribe(), self.progress.clone());
            self.publishers.push(tokio::spawn(async move {
                publisher
                    .run(stop, progress, |seq, sent_ns| {
                        let text = encoder.encode(Stamp { sent_ns, run, seq });
                        format!(
                            r#"{{"cid":"{}","to":"{peer}","type":"text","text":"{text}"}}"#,
                            acks::cid(run, seq, sent_ns)
                        )
                        .into_bytes()
                    })
                    .await
            }));
        }
    }

    /// Stops sending and waits (up to `grace` without progress, at most until `deadline`) for
    /// the acks and deliveries of what was sent. The event loops keep running until the
    /// caller's stop signal.
    pub async fn stop_publishing(&self, grace: Duration, deadline: Instant) {
        let _ = self.stop_publishing.send(true);
        let senders = self.publishers.len();
        if senders > 0 {
            wait_for_end(&self.progress, 1, senders, senders * 2, grace, deadline).await;
        }
    }

    /// Collects the tallies once the caller's stop signal is raised.
    pub async fn collect(self) -> PairOutcome {
        let limit = Duration::from_secs(5);
        let sent: u64 = join_all(self.publishers, limit)
            .await
            .iter()
            .flatten()
            .sum();
        let acks = join_all(self.ack_tasks, limit).await;
        let inboxes = join_all(self.inbox_tasks, limit).await;
        let mut out = PairOutcome {
            sent,
            acked: 0,
            errors: 0,
            delivered: 0,
            missing: 0,
            duplicates: 0,
            stale: 0,
            connection_errors: self.progress.connection_errors.load(Ordering::Relaxed),
            samples: Vec::new(),
        };
        for (ack, inbox) in acks.iter().zip(inboxes) {
            if let Some(a) = ack {
                out.acked += a.acked;
                out.errors += a.errors;
            }
            if let Some(inbox) = &inbox {
                out.delivered += inbox.tally.delivered;
                out.duplicates += inbox.tally.duplicates;
                out.stale += inbox.tally.stale;
            }
            if let Some(a) = ack {
                out.missing += (0..a.state.len())
                    .filter(|&seq| {
                        a.is_sent(seq) && !inbox.as_ref().is_some_and(|i| i.tally.seen[seq])
                    })
                    .count() as u64;
            }
            if let Some(inbox) = inbox {
                out.samples.extend(inbox.samples);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_covers_the_longest_run() {
        assert_eq!(capacity(200, 5, 120), 40 * 120 + 16);
        assert_eq!(capacity(1, 3, 10), 4 + 16);
        assert_eq!(capacity(200, 0, 120), 0);
    }

    #[test]
    fn split_by_send_time() {
        let samples = [
            (10, 1_000_000),
            (20, 2_000_000),
            (30, 5_000_000),
            (41, 1_000),
        ];
        let p = split(&samples, 20, 40);
        assert_eq!(p.baseline.summary().count, 1);
        assert_eq!(p.during.summary().count, 2);
        assert!((p.during.summary().max - 5.0).abs() < 0.01);
        assert_eq!(p.after.summary().count, 1);
    }
}
