//! `chatbench connect`: how many idle connections a broker holds, what each costs in resident
//! memory, how fast it accepts them, and how fast they all come back after a restart.
//!
//! One task per client: it waits for one of `--concurrency` permits, opens its connection (see
//! [`crate::rawconn`]), reports, then holds the socket. With `--storm`, a client whose connection
//! the server closed waits for the go signal (every held connection closed), then reconnects,
//! retrying transient failures, and holds the new connection until the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::admin::mqtt_text;
use crate::cli::{AuthMode, ConnectArgs, SubscribeMode};
use crate::connect_report::{ConnectLoad, ConnectReport, Memory, Storm};
use crate::control;
use crate::mqtt::Endpoint;
use crate::procmem;
use crate::rawconn::{self, Failure, HoldEnd, Plan};
use crate::report::per_second;
use crate::sources::Sources;
use crate::stats::Latency;
use crate::token::Minter;
use crate::wire::{self, ConnectPacket};

/// File descriptors kept free for everything but the client sockets.
const SPARE_FDS: u64 = 64;
/// Interval of the progress lines on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a client task reports.
enum Event {
    /// First connection accepted.
    Connected {
        start: Instant,
        tcp_up: Instant,
        connack: Instant,
        ready: Instant,
    },
    /// First connection failed; the client gives up.
    Failed(Failure),
    /// The server closed a held connection.
    Closed(Instant),
    /// Storm: an attempt failed and will be retried.
    Retry(Failure),
    /// Storm: back again.
    Reconnected {
        tcp_up: Instant,
        connack: Instant,
        ready: Instant,
    },
    /// Storm: a failure that retrying cannot fix.
    GaveUp(Failure),
}

/// Shared by every client task.
struct Shared {
    limit: Semaphore,
    events: mpsc::UnboundedSender<Event>,
    storm: bool,
    retry: Duration,
}

/// Runs the connection benchmark; `deadline` is the hard stop.
pub async fn run(args: &ConnectArgs, deadline: Instant) -> Result<ConnectReport> {
    let server = server_address(args).await?;
    let clients = args.clients as usize;
    let fds = procmem::open_files_limit()?;
    if clients as u64 + SPARE_FDS > fds {
        bail!(
            "{clients} connections need more open files than this process may have ({fds}); \
             raise `ulimit -n` or run several chatbench processes with distinct --prefix"
        );
    }
    let sources = Sources::new(args.sources)?;
    let plans = plans(args, server, &sources)?;
    let memory_before = match args.pid {
        Some(pid) => Some((pid, procmem::rss_bytes(pid)?)),
        None => None,
    };

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        limit: Semaphore::new(args.concurrency as usize),
        events: events_tx,
        storm: args.storm,
        retry: Duration::from_millis(args.retry_ms),
    });
    let (stop_tx, stop_rx) = control::stop_signal();
    let (go_tx, go_rx) = watch::channel(false);
    eprintln!(
        "connecting {clients} clients to {server} from {} source addresses, {} at a time",
        sources.count(),
        args.concurrency
    );
    let started = Instant::now();
    for plan in plans {
        tokio::spawn(client(plan, shared.clone(), stop_rx.clone(), go_rx.clone()));
    }
    // The tasks hold the only senders from here on.
    drop(shared);

    // Phase 1: every client connects once.
    let mut connected = 0usize;
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut closed_while_held = 0usize;
    let mut connack_latency = Latency::new();
    let mut total_latency = Latency::new();
    let mut last_ready = started;
    let mut next_progress = started + PROGRESS_EVERY;
    while connected + (failed.values().sum::<u64>() as usize) < clients {
        let wait_until = next_progress.min(deadline);
        match tokio::time::timeout_at(wait_until, events.recv()).await {
            Ok(Some(Event::Connected {
                start,
                tcp_up,
                connack,
                ready,
            })) => {
                connected += 1;
                connack_latency.record_ns(nanos(connack - tcp_up));
                total_latency.record_ns(nanos(ready - start));
                last_ready = last_ready.max(ready);
            }
            Ok(Some(Event::Failed(f))) => *failed.entry(f.label()).or_default() += 1,
            Ok(Some(Event::Closed(_))) => closed_while_held += 1,
            Ok(Some(_)) => {}
            Ok(None) => bail!("every client task ended early"),
            Err(_) if Instant::now() >= deadline => {
                bail!("duration limit reached with {connected} of {clients} connected")
            }
            Err(_) => {
                eprintln!(
                    "  {connected} connected, {} failed, {:.1} s",
                    failed.values().sum::<u64>(),
                    started.elapsed().as_secs_f64()
                );
                next_progress += PROGRESS_EVERY;
            }
        }
    }
    let connect_ns = nanos(last_ready - started);
    eprintln!(
        "{connected} connected ({} failed) in {:.3} s; settling {} s",
        failed.values().sum::<u64>(),
        connect_ns as f64 / 1e9,
        args.settle
    );

    // Settle, read the memory, optionally hold longer.
    closed_while_held += drain_closed(&mut events, Instant::now() + secs(args.settle)).await;
    let after = match memory_before {
        Some((pid, _)) => Some(procmem::rss_bytes(pid)?),
        None => None,
    };
    let mut after_hold = None;
    if args.hold > 0 {
        eprintln!("holding {} s", args.hold);
        closed_while_held += drain_closed(&mut events, Instant::now() + secs(args.hold)).await;
        if let Some((pid, _)) = memory_before {
            after_hold = Some(procmem::rss_bytes(pid)?);
        }
    }
    let held = connected.saturating_sub(closed_while_held);
    let memory = match (memory_before, after) {
        (Some((pid, before)), Some(after)) => Some(Memory {
            pid,
            before_bytes: before,
            after_bytes: after,
            per_connection_bytes: if held == 0 {
                0.0
            } else {
                (after as f64 - before as f64) / held as f64
            },
            after_hold_bytes: after_hold,
        }),
        _ => None,
    };

    let storm = if args.storm {
        if let Some(path) = &args.ready_file {
            std::fs::write(path, format!("{held}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("{held} connections held: restart the server now");
        Some(storm(args, held, &mut events, &go_tx, deadline).await?)
    } else {
        None
    };
    let _ = stop_tx.send(true);

    Ok(ConnectReport {
        mode: "connect",
        load: ConnectLoad {
            mqtt: server.to_string(),
            clients,
            auth: args.auth.as_str(),
            subscribe: args.subscribe.as_str(),
            keep_alive: args.keep_alive,
            concurrency: args.concurrency as usize,
            sources: sources.count(),
        },
        connected,
        failed_by_reason: failed,
        connect_elapsed_s: connect_ns as f64 / 1e9,
        connects_per_s: per_second(connected as u64, connect_ns),
        connack_latency_ms: connack_latency.summary(),
        total_latency_ms: total_latency.summary(),
        held,
        closed_while_held,
        memory,
        storm,
    })
}

/// Waits for every held connection to be closed by the server, lets all clients reconnect, and
/// measures how long it takes.
async fn storm(
    args: &ConnectArgs,
    held: usize,
    events: &mut mpsc::UnboundedReceiver<Event>,
    go: &watch::Sender<bool>,
    deadline: Instant,
) -> Result<Storm> {
    let mut closes: Vec<Instant> = Vec::with_capacity(held);
    let close_deadline = deadline.min(Instant::now() + secs(args.storm_timeout));
    while closes.len() < held {
        // The limit on the wait starts at the first close, or now if none came yet.
        match tokio::time::timeout_at(close_deadline, events.recv()).await {
            Ok(Some(Event::Closed(at))) => {
                if closes.is_empty() {
                    eprintln!("first connection closed by the server");
                }
                closes.push(at);
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("every client task ended early"),
            Err(_) => {
                eprintln!(
                    "only {} of {held} connections were closed in time; reconnecting those",
                    closes.len()
                );
                break;
            }
        }
    }
    let first_close = closes
        .iter()
        .min()
        .copied()
        .ok_or_else(|| anyhow!("the server closed no connection within --storm-timeout"))?;
    let last_close = closes.iter().max().copied().unwrap_or(first_close);
    let closed = closes.len();
    eprintln!(
        "{closed} closed within {:.3} s; reconnecting",
        (last_close - first_close).as_secs_f64()
    );
    go.send(true)
        .map_err(|_| anyhow!("every client task ended early"))?;

    let mut reconnected = 0usize;
    let mut gave_up = 0usize;
    let mut retries: BTreeMap<String, u64> = BTreeMap::new();
    let mut latency = Latency::new();
    let mut first_tcp: Option<Instant> = None;
    let mut last_ready = first_close;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    while reconnected + gave_up < closed {
        match tokio::time::timeout_at(next_progress.min(deadline), events.recv()).await {
            Ok(Some(Event::Reconnected {
                tcp_up,
                connack,
                ready,
            })) => {
                reconnected += 1;
                latency.record_ns(nanos(connack - tcp_up));
                first_tcp = Some(first_tcp.map_or(tcp_up, |t| t.min(tcp_up)));
                last_ready = last_ready.max(ready);
            }
            Ok(Some(Event::Retry(f))) => *retries.entry(f.label()).or_default() += 1,
            Ok(Some(Event::GaveUp(f))) => {
                gave_up += 1;
                *retries.entry(format!("gave_up_{}", f.label())).or_default() += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("every client task ended early"),
            Err(_) if Instant::now() >= deadline => {
                eprintln!("duration limit reached with {reconnected} of {closed} back");
                break;
            }
            Err(_) => {
                eprintln!(
                    "  {reconnected} back, {} retried attempts, {:.1} s since the first close",
                    retries.values().sum::<u64>(),
                    first_close.elapsed().as_secs_f64()
                );
                next_progress += PROGRESS_EVERY;
            }
        }
    }
    let listening = first_tcp.unwrap_or(last_ready);
    let back_ns = nanos(last_ready.saturating_duration_since(listening));
    Ok(Storm {
        closed,
        closing_s: (last_close - first_close).as_secs_f64(),
        reconnected,
        not_reconnected: closed - reconnected,
        retries_by_reason: retries,
        first_close_to_all_back_s: (last_ready - first_close).as_secs_f64(),
        listening_to_all_back_s: back_ns as f64 / 1e9,
        down_s: listening
            .saturating_duration_since(first_close)
            .as_secs_f64(),
        reconnects_per_s: per_second(reconnected as u64, back_ns),
        connack_latency_ms: latency.summary(),
    })
}

/// Counts the `Closed` events arriving until `until` (other events cannot come in this phase).
async fn drain_closed(events: &mut mpsc::UnboundedReceiver<Event>, until: Instant) -> usize {
    let mut closed = 0;
    while let Ok(Some(event)) = tokio::time::timeout_at(until, events.recv()).await {
        if let Event::Closed(_) = event {
            closed += 1;
        }
    }
    closed
}

/// One client's life: connect, hold, and in a storm reconnect and hold again.
async fn client(
    plan: Plan,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) {
    let report = |e: Event| {
        let _ = shared.events.send(e);
    };
    let (start, opened) = {
        let Ok(_permit) = shared.limit.acquire().await else {
            return;
        };
        let start = Instant::now();
        (start, rawconn::open(&plan).await)
    };
    let opened = match opened {
        Ok(o) => o,
        Err(f) => return report(Event::Failed(f)),
    };
    report(Event::Connected {
        start,
        tcp_up: opened.tcp_up,
        connack: opened.connack,
        ready: Instant::now(),
    });
    match rawconn::hold(opened.stream, &mut stop).await {
        HoldEnd::Stopped => return,
        HoldEnd::ClosedByServer(at) => report(Event::Closed(at)),
    }
    if !shared.storm {
        return;
    }
    tokio::select! {
        _ = control::stopped(&mut stop) => return,
        _ = go.wait_for(|g| *g) => {}
    }
    loop {
        let Ok(permit) = shared.limit.acquire().await else {
            return;
        };
        match rawconn::open(&plan).await {
            Ok(o) => {
                drop(permit);
                report(Event::Reconnected {
                    tcp_up: o.tcp_up,
                    connack: o.connack,
                    ready: Instant::now(),
                });
                // A second close is not part of the measurement.
                let _ = rawconn::hold(o.stream, &mut stop).await;
                return;
            }
            Err(f) if f.transient() => {
                report(Event::Retry(f));
                // The permit is kept while waiting: at most `concurrency` clients knock at a
                // server that is still down.
                tokio::select! {
                    _ = control::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(shared.retry) => {}
                }
            }
            Err(f) => return report(Event::GaveUp(f)),
        }
    }
}

/// Encodes every client's CONNECT (with its token) and SUBSCRIBE up front.
fn plans(args: &ConnectArgs, server: SocketAddr, sources: &Sources) -> Result<Vec<Plan>> {
    let minter = match args.auth {
        AuthMode::Jwt => Some(Minter::new(args.jwt_secret.as_deref().ok_or_else(
            || anyhow!("--auth jwt needs --jwt-secret (or CHATBENCH_JWT_SECRET)"),
        )?)?),
        _ => None,
    };
    let clients = args.clients as usize;
    let timeout = secs(args.connack_timeout);
    (0..clients)
        .map(|i| {
            let user = format!("{}{}", args.prefix, args.offset as usize + i);
            let password = match (&minter, args.auth) {
                (Some(m), _) => Some(m.token(&user)?),
                (None, AuthMode::Password) => Some(args.password.clone()),
                _ => None,
            };
            let connect = wire::encode_connect(&ConnectPacket {
                client_id: &user,
                login: password.as_deref().map(|p| (user.as_str(), p)),
                keep_alive: args.keep_alive,
            })?;
            let mut filters = Vec::new();
            if args.subscribe != SubscribeMode::None {
                filters.push(format!("user/{user}/#"));
            }
            if args.subscribe == SubscribeMode::Presence {
                let next = args.offset as usize + (i + 1) % clients;
                filters.push(format!("presence/{}{next}", args.prefix));
            }
            Ok(Plan {
                server,
                source: sources.for_client(i),
                connect,
                subscribe: rawconn::subscribe_packet(&filters)?,
                timeout,
            })
        })
        .collect()
}

/// The server's MQTT address: `--mqtt`, else `listen.json` of `--chatd-data`, else the default;
/// a wildcard address means this machine's loopback.
async fn server_address(args: &ConnectArgs) -> Result<SocketAddr> {
    let text = mqtt_text(args.mqtt.as_deref(), args.chatd_data.as_deref())?;
    let endpoint = Endpoint::parse(&text)?;
    let mut addrs = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .with_context(|| format!("resolving {endpoint}"))?;
    let mut addr = addrs
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| anyhow!("{endpoint} has no IPv4 address (source addresses are IPv4)"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
