//! `chatbench raw`: plain MQTT QoS 1 publish/subscribe against any broker.
//!
//! Publisher i publishes to `bench/{i}`, subscriber i subscribes to `bench/{i}` at QoS 1. A
//! message is confirmed by its PUBACK; the publisher keeps at most `inflight` un-PUBACKed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rumqttc::Packet;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::RawArgs;
use crate::clock::now_ns;
use crate::control::{self, join_all, stop_signal, wait_for_end, Progress};
use crate::cpu;
use crate::mqtt::{self, ClientSpec, Endpoint};
use crate::pace::Pacer;
use crate::publisher::Publisher;
use crate::report::{per_second, Load, Report};
use crate::stamp::{self, Encoder, Stamp};
use crate::stats::{Arrival, DeliveryTally, Latency};

/// What one publisher's event loop saw.
struct PubAckTally {
    pubacks: u64,
    last_ns: u64,
}

/// Runs the raw benchmark; `deadline` is the hard stop.
pub async fn run(args: &RawArgs, deadline: Instant) -> Result<Report> {
    let load = &args.load;
    let endpoint = Endpoint::parse(&args.mqtt)?;
    let pairs = args.pairs as usize;
    let inflight = load.inflight as usize;
    let payload = load.payload as usize;
    let run = control::run_id();
    let spec = |client_id: String, subscribe: Vec<String>| ClientSpec {
        endpoint: endpoint.clone(),
        client_id,
        credentials: None,
        subscribe,
        inflight,
        max_payload: payload.max(stamp::HEADER_LEN),
        nodelay: !load.nagle,
        persistent: load.persistent,
    };

    eprintln!("connecting {} clients to {endpoint}", pairs * 2);
    let subs = (0..pairs)
        .map(|i| {
            spec(
                format!("chatbench-sub-{run:08x}-{i}"),
                vec![format!("bench/{i}")],
            )
        })
        .collect();
    let pubs = (0..pairs)
        .map(|i| spec(format!("chatbench-pub-{run:08x}-{i}"), vec![]))
        .collect();
    let setup = async {
        let subs = mqtt::connect_all(subs).await?;
        let pubs = mqtt::connect_all(pubs).await?;
        anyhow::Ok((subs, pubs))
    };
    let (subs, pubs) = tokio::time::timeout_at(deadline, setup)
        .await
        .map_err(|_| anyhow::anyhow!("duration limit reached while connecting"))??;

    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = stop_signal();
    eprintln!("running: {pairs} publishers x {} messages", load.messages);
    // A server that cannot be read (wrong pid) is an error now, not a figure missing later.
    let meter = cpu::Meter::start(args.pid)?;
    let start_ns = now_ns();
    let start = Instant::now();

    let mut sub_tasks = Vec::new();
    for (i, conn) in subs.into_iter().enumerate() {
        let (stop, progress) = (stop_rx.clone(), progress.clone());
        let topic = format!("bench/{i}");
        let messages = load.messages;
        sub_tasks.push(tokio::spawn(async move {
            let mut tally = DeliveryTally::new(run, messages);
            let broke = mqtt::drive(conn, stop, |packet| {
                if let Packet::Publish(p) = packet {
                    let st = if p.topic == topic {
                        stamp::decode(&p.payload)
                    } else {
                        None
                    };
                    if tally.record(st, now_ns()) == Arrival::New {
                        Progress::bump(&progress.delivered);
                    }
                }
            })
            .await;
            if let Some(e) = &broke {
                eprintln!("subscriber {i}: connection error: {e}");
                progress.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            tally
        }));
    }

    let mut ack_tasks = Vec::new();
    let mut pub_tasks = Vec::new();
    let encoder = Arc::new(Encoder::new(payload));
    for (i, conn) in pubs.into_iter().enumerate() {
        let window = Arc::new(Semaphore::new(inflight));
        let publisher = Publisher {
            client: conn.client.clone(),
            topic: format!("bench/{i}"),
            window: window.clone(),
            pacer: Pacer::new(load.rate, pairs, i, start),
            messages: load.messages,
        };
        let (stop, progress2) = (stop_rx.clone(), progress.clone());
        ack_tasks.push(tokio::spawn(async move {
            let mut tally = PubAckTally {
                pubacks: 0,
                last_ns: 0,
            };
            let broke = mqtt::drive(conn, stop, |packet| {
                if let Packet::PubAck(_) = packet {
                    tally.pubacks += 1;
                    tally.last_ns = now_ns();
                    Progress::bump(&progress2.confirmed);
                    window.add_permits(1);
                }
            })
            .await;
            if let Some(e) = &broke {
                eprintln!("publisher {i}: connection error: {e}");
                progress2.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
            window.close();
            tally
        }));
        let (stop, progress3, encoder) = (stop_rx.clone(), progress.clone(), encoder.clone());
        pub_tasks.push(tokio::spawn(async move {
            publisher
                .run(stop, progress3, |seq, sent_ns| {
                    encoder.encode(Stamp { sent_ns, run, seq }).into_bytes()
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
    let end_ns = now_ns();
    let cpu = meter.finish(progress.published.load(Ordering::Relaxed));
    let _ = stop_tx.send(true);
    let limit = Duration::from_secs(5);
    let sent = join_all(pub_tasks, limit).await;
    let acks = join_all(ack_tasks, limit).await;
    let tallies = join_all(sub_tasks, limit).await;

    let mut latency = Latency::new();
    let mut last_delivery = 0u64;
    let mut reordered = 0u64;
    let (mut delivered, mut duplicates, mut stale, mut missing) = (0, 0, 0, 0);
    let (mut published, mut last_puback) = (0u64, 0u64);
    for i in 0..pairs {
        let pubacks = acks[i].as_ref().map_or(0, |t| t.pubacks);
        published += pubacks;
        last_puback = last_puback.max(acks[i].as_ref().map_or(0, |t| t.last_ns));
        let got = match &tallies[i] {
            Some(t) => {
                latency.merge(&t.latency);
                duplicates += t.duplicates;
                reordered += t.reordered;
                stale += t.stale;
                last_delivery = last_delivery.max(t.last_ns);
                t.delivered
            }
            None => 0,
        };
        delivered += got;
        missing += pubacks.saturating_sub(got);
    }
    let sent: u64 = sent.iter().flatten().sum();
    Ok(Report {
        mode: "raw",
        load: Load {
            mqtt: endpoint.to_string(),
            http: None,
            senders: pairs,
            receivers: pairs,
            messages_per_sender: load.messages,
            rate: load.rate,
            payload_bytes: payload.max(stamp::HEADER_LEN),
            inflight,
            nagle: load.nagle,
            persistent: load.persistent,
        },
        elapsed_s: end_ns.saturating_sub(start_ns) as f64 / 1e9,
        end: end.as_str(),
        sent,
        acked: None,
        acked_per_s: None,
        errors: None,
        errors_by_code: None,
        published: Some(published),
        published_per_s: Some(per_second(published, last_puback.saturating_sub(start_ns))),
        unconfirmed: sent.saturating_sub(published),
        delivered,
        delivered_per_s: per_second(delivered, last_delivery.saturating_sub(start_ns)),
        missing,
        duplicates,
        reordered,
        stale,
        connection_errors: progress.connection_errors.load(Ordering::Relaxed),
        latency_ms: latency.summary(),
        ack_latency_ms: None,
        receipts: None,
        windows: None,
        cpu,
    })
}
