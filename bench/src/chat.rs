//! `chatbench chat`: 1:1 chat load against chatd.
//!
//! Users `{prefix}0 … {prefix}{P-1}` send, `{prefix}{P} … {prefix}{2P-1}` receive (P = users/2);
//! sender i sends to receiver i. Each sender publishes `{"cid","to","type":"text","text"}` to
//! `chat/{me}/send` and keeps at most `inflight` messages without an ack on `user/{me}/ack`.
//! The text starts with the send time (see [`crate::stamp`]); receivers read it from
//! `user/{me}/inbox` to measure send→delivery latency. The cid is
//! `{run:08x}-{seq}-{sent_ns}`, so the ack alone gives send→ack latency.
//!
//! With `--receipts`, receivers also send receipts for what they get and senders count the
//! receipts reaching them; see [`crate::receipts`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rumqttc::Packet;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::acks::{self, AckState, AckTally};
use crate::admin::{resolve, Admin};
use crate::cli::{ChatArgs, ReceiptMode};
use crate::clock::now_ns;
use crate::control::{
    self, join_all, stop_signal, wait_for_end, wait_for_receipts, EndReason, Progress,
};
use crate::cpu;
use crate::mqtt::{self, ClientSpec};
use crate::pace::Pacer;
use crate::publisher::Publisher;
use crate::receipts::{self, Batcher, BatcherTally, Ledger, ReceiptTally, RefusalTally};
use crate::report::{per_second, Load, ReceiptReport, Report};
use crate::stamp::{self, Encoder, Stamp};
use crate::stats::{Arrival, DeliveryTally, Latency};
use crate::windows::{self, Windows};

/// A message on `user/{me}/inbox`.
#[derive(Deserialize)]
struct InboxMsg {
    id: Option<String>,
    from: Option<String>,
    text: Option<String>,
}

/// Runs the chat benchmark; `deadline` is the hard stop.
pub async fn run(args: &ChatArgs, deadline: Instant) -> Result<Report> {
    let load = &args.load;
    let (endpoint, http, token) = resolve(&args.chatd)?;
    let pairs = (args.users / 2) as usize;
    if pairs == 0 {
        bail!("--users must be at least 2");
    }
    let inflight = load.inflight as usize;
    let messages = args.messages_per_sender();
    let payload = (load.payload as usize).max(stamp::HEADER_LEN);
    let senders: Vec<String> = (0..pairs).map(|i| format!("{}{i}", args.prefix)).collect();
    let receivers: Vec<String> = (pairs..2 * pairs)
        .map(|i| format!("{}{i}", args.prefix))
        .collect();
    let run = control::run_id();
    let with_receipts = args.receipts != ReceiptMode::None;
    let statuses = receipts::statuses(args.receipts);
    // Receivers also watch their ack topic for refused receipts; senders get the receipts.
    let (rx_topics, tx_topics): (&[&str], &[&str]) = if with_receipts {
        (&["inbox", "ack"], &["ack", "receipt"])
    } else {
        (&["inbox"], &["ack"])
    };
    let rx_endpoint = match &args.receivers_mqtt {
        Some(addr) => mqtt::Endpoint::parse(addr)?,
        None => endpoint.clone(),
    };
    let spec = |user: &String, topics: &[&str], endpoint: &mqtt::Endpoint| ClientSpec {
        endpoint: endpoint.clone(),
        client_id: format!("{user}:bench"),
        credentials: Some((user.clone(), args.chatd.password.clone())),
        subscribe: topics
            .iter()
            .map(|topic| format!("user/{user}/{topic}"))
            .collect(),
        inflight,
        max_payload: payload + 1024,
        nodelay: !load.nagle,
        persistent: load.persistent,
    };

    let setup = async {
        let admin = Admin::new(&http, &token)?;
        let all: Vec<String> = senders.iter().chain(&receivers).cloned().collect();
        eprintln!(
            "ensuring {} users exist via http://{http}/admin/users",
            all.len()
        );
        let (created, existing) = admin.ensure_users(&all, &args.chatd.password).await?;
        eprintln!("  {created} created, {existing} already existed");
        eprintln!(
            "connecting {} senders to {endpoint}, {} receivers to {rx_endpoint}",
            senders.len(),
            receivers.len()
        );
        let rx = mqtt::connect_all(
            receivers
                .iter()
                .map(|u| spec(u, rx_topics, &rx_endpoint))
                .collect(),
        )
        .await?;
        let tx = mqtt::connect_all(
            senders
                .iter()
                .map(|u| spec(u, tx_topics, &endpoint))
                .collect(),
        )
        .await?;
        anyhow::Ok((rx, tx))
    };
    let (rx_conns, tx_conns) = tokio::time::timeout_at(deadline, setup)
        .await
        .map_err(|_| anyhow!("duration limit reached during setup"))??;

    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = stop_signal();
    eprintln!(
        "running: {pairs} senders x {messages} messages, receipts {}",
        args.receipts.as_str()
    );
    let ledgers: Vec<Arc<Ledger>> = (0..pairs).map(|_| Arc::default()).collect();
    // A server that cannot be read (wrong pid) is an error now, not a figure missing later.
    let meter = cpu::Meter::start(args.pid)?;
    let start_ns = now_ns();
    let start = Instant::now();
    let windows = Arc::new(Windows::default());
    let sampler = (args.window > 0).then(|| {
        tokio::spawn(windows::sample(
            windows.clone(),
            Duration::from_secs(args.window),
            args.pid,
            start,
            stop_rx.clone(),
        ))
    });

    let mut rx_tasks = Vec::new();
    let mut batch_tasks = Vec::new();
    for (i, conn) in rx_conns.into_iter().enumerate() {
        let (stop, progress) = (stop_rx.clone(), progress.clone());
        let (me, peer) = (receivers[i].clone(), senders[i].clone());
        let ledger = ledgers[i].clone();
        let windows = windows.clone();
        let ids_tx = if with_receipts {
            let (ids_tx, ids_rx) = mpsc::unbounded_channel();
            let batcher = Batcher {
                client: conn.client.clone(),
                topic: format!("chat/{me}/receipt"),
                ledger: ledger.clone(),
                statuses,
                batch: args.receipt_batch as usize,
            };
            let (stop, progress) = (stop_rx.clone(), progress.clone());
            batch_tasks.push(tokio::spawn(batcher.run(ids_rx, stop, progress)));
            Some(ids_tx)
        } else {
            None
        };
        let inbox = format!("user/{me}/inbox");
        rx_tasks.push(tokio::spawn(async move {
            let mut tally = DeliveryTally::new(run, messages);
            let mut refusals = RefusalTally::default();
            let broke = mqtt::drive(conn, stop, |packet| {
                let Packet::Publish(p) = packet else { return };
                let now = now_ns();
                if p.topic != inbox {
                    let n = refusals.record(&p.payload, &ledger);
                    progress.receipts_refused.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                let (id, st) = match serde_json::from_slice::<InboxMsg>(&p.payload)
                    .ok()
                    .filter(|m| m.from.as_deref() == Some(peer.as_str()))
                {
                    Some(m) => (m.id, m.text.and_then(|t| stamp::decode(t.as_bytes()))),
                    None => (None, None),
                };
                if tally.record(st, now) == Arrival::New {
                    Progress::bump(&progress.delivered);
                    if let Some(st) = st {
                        windows.delivery(now.saturating_sub(st.sent_ns));
                    }
                    if let (Some(tx), Some(id)) = (&ids_tx, id) {
                        let _ = tx.send(id);
                    }
                }
            })
            .await;
            if let Some(e) = broke {
                eprintln!("receiver {me}: connection error: {e}");
                progress.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            (tally, refusals)
        }));
    }

    let encoder = Arc::new(Encoder::new(payload));
    let mut ack_tasks = Vec::new();
    let mut tx_tasks = Vec::new();
    for (i, conn) in tx_conns.into_iter().enumerate() {
        let (me, peer) = (senders[i].clone(), receivers[i].clone());
        let window = Arc::new(Semaphore::new(inflight));
        let publisher = Publisher {
            client: conn.client.clone(),
            topic: format!("chat/{me}/send"),
            window: window.clone(),
            pacer: Pacer::new(load.rate, pairs, i, start),
            messages,
        };
        let (stop, progress2) = (stop_rx.clone(), progress.clone());
        let windows = windows.clone();
        let me2 = me.clone();
        let ledger = ledgers[i].clone();
        let receipt_topic = format!("user/{me}/receipt");
        ack_tasks.push(tokio::spawn(async move {
            let mut tally = AckTally::new(run, messages);
            let mut rcpts = ReceiptTally::default();
            let broke = mqtt::drive(conn, stop, |packet| {
                let Packet::Publish(p) = packet else { return };
                if p.topic == receipt_topic {
                    if rcpts.record(&p.payload, &ledger, now_ns()) {
                        Progress::bump(&progress2.receipts_received);
                    }
                    return;
                }
                match tally.record(&p.payload, now_ns()) {
                    Some(AckState::Sent) => {
                        Progress::bump(&progress2.confirmed);
                        windows.ack(tally.last_latency_ns);
                        window.add_permits(1);
                    }
                    Some(AckState::Failed) => {
                        Progress::bump(&progress2.failed);
                        window.add_permits(1);
                    }
                    _ => {}
                }
            })
            .await;
            if let Some(e) = broke {
                eprintln!("sender {me2}: connection error: {e}");
                progress2.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            window.close();
            (tally, rcpts)
        }));
        let (stop, progress3, encoder) = (stop_rx.clone(), progress.clone(), encoder.clone());
        tx_tasks.push(tokio::spawn(async move {
            publisher
                .run(stop, progress3, |seq, sent_ns| {
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

    let end = wait_for_end(
        &progress,
        1,
        pairs,
        pairs * 2,
        Duration::from_secs(load.grace),
        deadline,
    )
    .await;
    let mut end = end;
    if with_receipts && matches!(end, EndReason::Complete | EndReason::GraceExpired) {
        let all = wait_for_receipts(
            &progress,
            statuses.len() as u64,
            pairs * 2,
            Duration::from_secs(load.grace),
            deadline,
        )
        .await;
        if !all {
            end = if Instant::now() >= deadline {
                EndReason::DurationLimit
            } else {
                EndReason::GraceExpired
            };
        }
    }
    let end_ns = now_ns();
    let cpu = meter.finish(progress.published.load(Ordering::Relaxed));
    let _ = stop_tx.send(true);
    let limit = Duration::from_secs(5);
    let sent = join_all(tx_tasks, limit).await;
    let batches = join_all(batch_tasks, limit).await;
    let acks = join_all(ack_tasks, limit).await;
    let deliveries = join_all(rx_tasks, limit).await;
    let windows = match sampler {
        Some(task) => join_all(vec![task], limit).await.pop().flatten(),
        None => None,
    };
    let (acks, rcpts): (Vec<_>, Vec<_>) = acks
        .into_iter()
        .map(|a| match a {
            Some((a, r)) => (Some(a), Some(r)),
            None => (None, None),
        })
        .unzip();
    let (deliveries, refusals): (Vec<_>, Vec<_>) = deliveries
        .into_iter()
        .map(|d| match d {
            Some((d, r)) => (Some(d), Some(r)),
            None => (None, None),
        })
        .unzip();

    let mut latency = Latency::new();
    let mut ack_latency = Latency::new();
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    let (mut acked, mut errors, mut last_ack) = (0u64, 0u64, 0u64);
    let mut reordered = 0u64;
    let (mut delivered, mut duplicates, mut stale, mut missing, mut last_delivery) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut other_acks = 0u64;
    let mut foreign = 0u64;
    for i in 0..pairs {
        let ack = acks[i].as_ref();
        let rx = deliveries[i].as_ref();
        if let Some(t) = ack {
            acked += t.acked;
            errors += t.errors;
            other_acks += t.other;
            last_ack = last_ack.max(t.last_ns);
            ack_latency.merge(&t.latency);
            for (code, n) in &t.by_code {
                *by_code.entry(code.clone()).or_default() += n;
            }
        }
        if let Some(t) = rx {
            delivered += t.delivered;
            duplicates += t.duplicates;
            reordered += t.reordered;
            stale += t.stale;
            foreign += t.foreign;
            last_delivery = last_delivery.max(t.last_ns);
            latency.merge(&t.latency);
        }
        if let Some(a) = ack {
            missing += a
                .state
                .iter()
                .enumerate()
                .filter(|(seq, s)| **s == AckState::Sent && !rx.is_some_and(|r| r.seen[*seq]))
                .count() as u64;
        }
    }
    if other_acks > 0 {
        eprintln!("note: {other_acks} ack payloads matched no message of this run");
    }
    if foreign > 0 {
        eprintln!("note: {foreign} inbox messages were not benchmark messages from the peer");
    }
    let sent: u64 = sent.iter().flatten().sum();
    let receipt_report = with_receipts.then(|| {
        receipt_report(
            args,
            start_ns,
            &batches,
            &rcpts,
            &refusals,
            &ledgers,
            statuses.len() as u64,
        )
    });
    Ok(Report {
        mode: "chat",
        load: Load {
            mqtt: endpoint.to_string(),
            http: Some(http),
            senders: pairs,
            receivers: pairs,
            messages_per_sender: messages,
            rate: load.rate,
            payload_bytes: payload,
            inflight,
            nagle: load.nagle,
            persistent: load.persistent,
        },
        elapsed_s: end_ns.saturating_sub(start_ns) as f64 / 1e9,
        end: end.as_str(),
        sent,
        acked: Some(acked),
        acked_per_s: Some(per_second(acked, last_ack.saturating_sub(start_ns))),
        errors: Some(errors),
        errors_by_code: Some(by_code),
        published: None,
        published_per_s: None,
        unconfirmed: sent.saturating_sub(acked + errors),
        delivered,
        delivered_per_s: per_second(delivered, last_delivery.saturating_sub(start_ns)),
        missing,
        duplicates,
        reordered,
        stale,
        connection_errors: progress.connection_errors.load(Ordering::Relaxed),
        latency_ms: latency.summary(),
        ack_latency_ms: Some(ack_latency.summary()),
        receipts: receipt_report,
        windows,
        cpu,
    })
}

/// Sums up the receipt side of a run.
fn receipt_report(
    args: &ChatArgs,
    start_ns: u64,
    batches: &[Option<BatcherTally>],
    rcpts: &[Option<ReceiptTally>],
    refusals: &[Option<RefusalTally>],
    ledgers: &[Arc<Ledger>],
    per_message: u64,
) -> ReceiptReport {
    let mut latency = Latency::new();
    let (mut received, mut duplicates, mut unknown, mut last) = (0u64, 0u64, 0u64, 0u64);
    for r in rcpts.iter().flatten() {
        received += r.received;
        duplicates += r.duplicates;
        unknown += r.unknown;
        last = last.max(r.last_ns);
        latency.merge(&r.latency);
    }
    let (mut errors, mut by_code, mut other) = (0u64, BTreeMap::<String, u64>::new(), 0u64);
    for r in refusals.iter().flatten() {
        errors += r.ids;
        other += r.other;
        for (code, n) in &r.by_code {
            *by_code.entry(code.clone()).or_default() += n;
        }
    }
    if other > 0 {
        eprintln!("note: {other} payloads on receivers' ack topics were not receipt refusals");
    }
    if unknown > 0 {
        eprintln!("note: {unknown} receipts matched nothing this run published");
    }
    let (mut publishes, mut ids, mut unsent) = (0u64, 0u64, 0u64);
    for b in batches.iter().flatten() {
        publishes += b.publishes;
        ids += b.ids;
        unsent += b.unsent;
    }
    debug_assert!(per_message > 0);
    ReceiptReport {
        mode: args.receipts.as_str(),
        batch: args.receipt_batch as usize,
        publishes,
        sent: ids,
        unsent,
        received,
        received_per_s: per_second(received, last.saturating_sub(start_ns)),
        errors,
        errors_by_code: by_code,
        missing: ledgers.iter().map(|l| l.missing()).sum(),
        duplicates,
        unknown,
        latency_ms: latency.summary(),
    }
}
