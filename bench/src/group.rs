//! `chatbench group`: group fan-out against chatd, with 1:1 latency measured beside it.
//!
//! 1. Users `{prefix}-m{i}` (members) and `{prefix}-pa{i}` / `{prefix}-pb{i}` (pairs) are
//!    created unless they exist; `m0` creates a new group of all members over its own
//!    connection (see [`crate::group_setup`]).
//! 2. The first `--online` members connect as `{user}:bench` and subscribe to `user/{me}/#`;
//!    the pairs connect like `chatbench chat` clients. Inbox backlogs (membership events,
//!    copies queued by earlier runs) drain until the inboxes are quiet for 500 ms.
//! 3. Baseline: the pairs send 1:1 messages at `--pair-rate` for `--baseline-secs`.
//! 4. Fan-out: the first `--senders` members each send `--messages` group messages
//!    (`{"cid","group","type":"text","text"}` on `chat/{me}/send`) within an `--inflight`
//!    window, while the pairs keep sending. It ends when every message is acked and every
//!    online member has its copy (or nothing progresses for `--grace`).
//! 5. The pairs stop and their last messages are awaited.
//!
//! Texts carry the send time ([`crate::stamp`]), so every copy gives send→delivery latency.
//! 1:1 deliveries are split by their send time into baseline, during the fan-out (first group
//! send → last group delivery or ack) and after.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rumqttc::{AsyncClient, Packet};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::acks::{self, AckState, AckTally};
use crate::admin::{resolve, Admin};
use crate::cli::GroupArgs;
use crate::clock::now_ns;
use crate::control::{self, join_all, stop_signal, wait_for_end, wait_until_quiet, Progress};
use crate::fanout::{classify, totals, MemberTally};
use crate::group_report::{Fanout, GroupLoad, GroupReport, OneToOne, Setup};
use crate::group_setup::{create_group, Plan, Roster, MAX_RPC_BYTES};
use crate::mqtt::{self, ClientSpec, Connected, Endpoint};
use crate::pace::Pacer;
use crate::pairs::{self, PairOutcome, Pairs};
use crate::publisher::Publisher;
use crate::report::per_second;
use crate::stamp::{self, Encoder, Stamp};
use crate::stats::{Arrival, Latency};

/// Inboxes must be quiet this long before the clock starts.
const QUIET: Duration = Duration::from_millis(500);
/// More inbox messages than this before the clock deserve a warning.
const BIG_BACKLOG: u64 = 10_000;
/// Room for membership events (they list the users added) on top of the message size.
const EVENT_ROOM: usize = 32 * 1024;

/// What the setup produced.
struct Prepared {
    created: usize,
    existing: usize,
    group: String,
    group_setup_s: f64,
}

/// What every member task shares.
struct MemberContext {
    run: u32,
    group: Arc<String>,
    sender_index: Arc<HashMap<String, usize>>,
    windows: Vec<Arc<Semaphore>>,
    names: Vec<String>,
    messages: u64,
    stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
    arrivals: Arc<AtomicU64>,
}

/// What one online member's task saw: its inbox, and its acks if it sends.
type MemberResult = (MemberTally, Option<AckTally>);

/// Runs the group benchmark; `deadline` is the hard stop.
pub async fn run(args: &GroupArgs, deadline: Instant) -> Result<GroupReport> {
    let plan = Plan::new(args)?;
    let load = &args.load;
    let (endpoint, http, token) = resolve(&args.chatd)?;
    let roster = Roster::new(&args.prefix, plan.members, plan.pairs);
    let inflight = load.inflight as usize;
    let payload = (load.payload as usize).max(stamp::HEADER_LEN);
    let run = control::run_id();

    let prepared = tokio::time::timeout_at(
        deadline,
        prepare(args, &plan, &roster, &endpoint, &http, &token, run),
    )
    .await
    .map_err(|_| anyhow!("duration limit reached during setup"))??;

    let (stop_tx, stop_rx) = stop_signal();
    let progress = Arc::new(Progress::default());
    let arrivals = Arc::new(AtomicU64::new(0));
    let ctx = MemberContext {
        run,
        group: Arc::new(prepared.group.clone()),
        sender_index: Arc::new(
            roster.members[..plan.senders]
                .iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), i))
                .collect(),
        ),
        windows: (0..plan.senders)
            .map(|_| Arc::new(Semaphore::new(inflight)))
            .collect(),
        names: roster.members[..plan.online].to_vec(),
        messages: load.messages,
        stop: stop_rx.clone(),
        progress: progress.clone(),
        arrivals: arrivals.clone(),
    };
    let max_payload = payload + EVENT_ROOM;
    // Members spread over the main listener and `--members-mqtt`, round robin.
    let mut listeners = vec![endpoint.clone()];
    for addr in &args.members_mqtt {
        listeners.push(Endpoint::parse(addr)?);
    }
    let spec_on = |user: &str, topic: &str, inflight: usize, at: &Endpoint| ClientSpec {
        endpoint: at.clone(),
        client_id: format!("{user}:bench"),
        credentials: Some((user.to_string(), args.chatd.password.clone())),
        subscribe: vec![format!("user/{user}/{topic}")],
        inflight,
        max_payload,
        nodelay: !load.nagle,
        persistent: load.persistent,
    };
    let spec = |user: &str, topic: &str, inflight: usize| spec_on(user, topic, inflight, &endpoint);
    eprintln!(
        "connecting {} members and {} pair clients to {endpoint}",
        plan.online,
        plan.pairs * 2
    );
    let mut sender_clients: Vec<Option<AsyncClient>> = vec![None; plan.senders];
    let connect = async {
        // Each member is driven as soon as it is connected: connecting many clients takes a
        // while (chatd checks every password), longer than the keep-alive.
        let members = roster.members[..plan.online]
            .iter()
            .enumerate()
            .map(|(i, u)| spec_on(u, "#", inflight, &listeners[i % listeners.len()]))
            .collect();
        let tasks = mqtt::connect_all_then(members, |i, conn| {
            if let Some(slot) = sender_clients.get_mut(i) {
                *slot = Some(conn.client.clone());
            }
            spawn_member(&ctx, i, conn)
        })
        .await?;
        let pair_senders = roster
            .pair_senders
            .iter()
            .map(|u| spec(u, "ack", pairs::INFLIGHT))
            .collect();
        let pair_senders = mqtt::connect_all(pair_senders).await?;
        let pair_receivers = roster
            .pair_receivers
            .iter()
            .map(|u| spec(u, "inbox", pairs::INFLIGHT))
            .collect();
        let pair_receivers = mqtt::connect_all(pair_receivers).await?;
        anyhow::Ok((tasks, pair_senders, pair_receivers))
    };
    let (member_tasks, pair_senders, pair_receivers) = tokio::time::timeout_at(deadline, connect)
        .await
        .map_err(|_| anyhow!("duration limit reached while connecting"))??;
    let group = ctx.group.clone();
    let windows = ctx.windows.clone();

    let encoder = Arc::new(Encoder::new(payload));
    let capacity = pairs::capacity(args.pair_rate, plan.pairs, load.duration_limit);
    let names = roster
        .pair_senders
        .iter()
        .cloned()
        .zip(roster.pair_receivers.iter().cloned())
        .collect();
    let mut pairs = Pairs::start(
        run,
        args.pair_rate,
        capacity,
        encoder.clone(),
        names,
        pair_senders,
        pair_receivers,
        &stop_rx,
        &arrivals,
    );

    eprintln!("waiting for the inboxes to be quiet (membership events, queued backlog)");
    let backlog = wait_until_quiet(&arrivals, QUIET, deadline).await;
    eprintln!("  {backlog} inbox messages drained");
    if backlog > BIG_BACKLOG {
        eprintln!(
            "note: a large backlog was drained before the clock; chatd may still be removing it \
             from the queues (one store write per ack). For clean figures, start from a fresh \
             data directory or use a new --prefix."
        );
    }

    let start_ns = now_ns();
    if plan.pairs > 0 {
        eprintln!(
            "baseline: {} pairs at {} msg/s for {} s",
            plan.pairs, args.pair_rate, args.baseline_secs
        );
        pairs.publish(Instant::now());
        let until = Instant::now() + Duration::from_secs(args.baseline_secs);
        tokio::time::sleep_until(until.min(deadline)).await;
    }

    eprintln!(
        "fan-out: {} sender(s) x {} messages to {} members ({} online){}",
        plan.senders,
        load.messages,
        plan.members,
        plan.online,
        if plan.pairs > 0 {
            ", pairs still sending"
        } else {
            ""
        }
    );
    let fanout_start_ns = now_ns();
    let fanout_start = Instant::now();
    let senders = GroupSenders {
        run,
        group: group.clone(),
        encoder: encoder.clone(),
        rate: load.rate,
        messages: load.messages,
    };
    let publishers = senders.spawn(
        sender_clients,
        &roster.members,
        &windows,
        fanout_start,
        &stop_rx,
        &progress,
    );
    let grace = Duration::from_secs(load.grace);
    let end = wait_for_end(
        &progress,
        plan.copies,
        plan.senders,
        plan.online,
        grace,
        deadline,
    )
    .await;
    pairs.stop_publishing(grace, deadline).await;
    let end_ns = now_ns();
    let _ = stop_tx.send(true);
    let limit = Duration::from_secs(5);
    let sent: u64 = join_all(publishers, limit).await.iter().flatten().sum();
    let members = join_all(member_tasks, limit).await;
    let pair_outcome = pairs.collect().await;

    let (fanout, last_ns) = fanout_figures(&plan, load.messages, sent, fanout_start_ns, members);
    let fanout_end_ns = if last_ns == 0 { end_ns } else { last_ns };
    let one_to_one =
        (plan.pairs > 0).then(|| pair_figures(args, &pair_outcome, fanout_start_ns, fanout_end_ns));
    Ok(GroupReport {
        mode: "group",
        load: GroupLoad {
            mqtt: endpoint.to_string(),
            http,
            group: prepared.group,
            members: plan.members,
            online: plan.online,
            offline: plan.members - plan.online,
            senders: plan.senders,
            messages_per_sender: load.messages,
            rate: load.rate,
            payload_bytes: payload,
            inflight,
            pairs: plan.pairs,
            pair_rate: args.pair_rate,
            baseline_s: args.baseline_secs,
        },
        setup: Setup {
            users_created: prepared.created,
            users_existing: prepared.existing,
            group_setup_s: prepared.group_setup_s,
            backlog,
        },
        elapsed_s: end_ns.saturating_sub(start_ns) as f64 / 1e9,
        end: end.as_str(),
        fanout: Fanout {
            window_s: fanout_end_ns.saturating_sub(fanout_start_ns) as f64 / 1e9,
            ..fanout
        },
        one_to_one,
        connection_errors: progress.connection_errors.load(Ordering::Relaxed)
            + pair_outcome.connection_errors,
    })
}

/// Creates the users (unless they exist) and the group.
async fn prepare(
    args: &GroupArgs,
    plan: &Plan,
    roster: &Roster,
    endpoint: &Endpoint,
    http: &str,
    token: &str,
    run: u32,
) -> Result<Prepared> {
    let password = &args.chatd.password;
    let admin = Admin::new(http, token)?;
    let all: Vec<String> = roster.all().cloned().collect();
    eprintln!(
        "ensuring {} users exist via http://{http}/admin/users",
        all.len()
    );
    let (created, existing) = admin.ensure_users(&all, password).await?;
    eprintln!("  {created} created, {existing} already existed");

    let creator = &roster.members[0];
    eprintln!("creating a group of {} members as {creator}", plan.members);
    let started = Instant::now();
    let setup_client = ClientSpec {
        endpoint: endpoint.clone(),
        client_id: format!("{creator}:setup"),
        credentials: Some((creator.clone(), password.clone())),
        subscribe: vec![format!("user/{creator}/rpc")],
        inflight: 8,
        max_payload: MAX_RPC_BYTES,
        nodelay: true,
        persistent: false,
    };
    let group = create_group(
        &setup_client,
        &format!("chatbench {run:08x}"),
        &roster.members[1..],
    )
    .await?;
    let group_setup_s = started.elapsed().as_secs_f64();
    eprintln!("  {group} in {group_setup_s:.3} s");
    Ok(Prepared {
        created,
        existing,
        group,
        group_setup_s,
    })
}

/// Drives online member `i`'s connection: counts its inbox and, for a sender, its acks
/// (giving back a window permit for each).
fn spawn_member(ctx: &MemberContext, i: usize, conn: Connected) -> JoinHandle<MemberResult> {
    let me = ctx.names.get(i).cloned().unwrap_or_default();
    let (inbox, ack) = (format!("user/{me}/inbox"), format!("user/{me}/ack"));
    let window = ctx.windows.get(i).cloned();
    let (group, sender_index) = (ctx.group.clone(), ctx.sender_index.clone());
    let (stop, progress, arrivals) = (ctx.stop.clone(), ctx.progress.clone(), ctx.arrivals.clone());
    let (run, senders, messages) = (ctx.run, ctx.windows.len(), ctx.messages);
    tokio::spawn(async move {
        let mut tally = MemberTally::new(run, senders, messages);
        let mut acks = window.as_ref().map(|_| AckTally::new(run, messages));
        let broke = mqtt::drive(conn, stop, |packet| {
            let Packet::Publish(p) = packet else { return };
            let now = now_ns();
            if p.topic == inbox {
                arrivals.fetch_add(1, Ordering::Relaxed);
                let kind = classify(&p.payload, &group, &sender_index);
                if tally.record(kind, now) == Arrival::New {
                    Progress::bump(&progress.delivered);
                }
            } else if p.topic == ack {
                let (Some(acks), Some(window)) = (acks.as_mut(), window.as_ref()) else {
                    return;
                };
                match acks.record(&p.payload, now) {
                    Some(AckState::Sent) => Progress::bump(&progress.confirmed),
                    Some(AckState::Failed) => Progress::bump(&progress.failed),
                    _ => return,
                }
                window.add_permits(1);
            }
        })
        .await;
        if let Some(e) = broke {
            eprintln!("member {me}: connection error: {e}");
            progress.connection_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(window) = &window {
            window.close();
        }
        (tally, acks)
    })
}

/// How the group senders publish.
struct GroupSenders {
    run: u32,
    group: Arc<String>,
    encoder: Arc<Encoder>,
    rate: u64,
    messages: u64,
}

impl GroupSenders {
    /// Starts one publisher per connected sender (`clients[i]` is member `names[i]`, its window
    /// `windows[i]`), paced from `start`. Each returns the number of messages it sent.
    fn spawn(
        &self,
        clients: Vec<Option<AsyncClient>>,
        names: &[String],
        windows: &[Arc<Semaphore>],
        start: Instant,
        stop: &watch::Receiver<bool>,
        progress: &Arc<Progress>,
    ) -> Vec<JoinHandle<u64>> {
        let count = clients.len();
        let mut tasks = Vec::with_capacity(count);
        for (i, client) in clients.into_iter().enumerate() {
            let (Some(client), Some(me), Some(window)) = (client, names.get(i), windows.get(i))
            else {
                continue;
            };
            let publisher = Publisher {
                client,
                topic: format!("chat/{me}/send"),
                window: window.clone(),
                pacer: Pacer::new(self.rate, count, i, start),
                messages: self.messages,
            };
            let (run, group, encoder) = (self.run, self.group.clone(), self.encoder.clone());
            let (stop, progress) = (stop.clone(), progress.clone());
            tasks.push(tokio::spawn(async move {
                publisher
                    .run(stop, progress, |seq, sent_ns| {
                        let text = encoder.encode(Stamp { sent_ns, run, seq });
                        format!(
                            r#"{{"cid":"{}","group":"{group}","type":"text","text":"{text}"}}"#,
                            acks::cid(run, seq, sent_ns)
                        )
                        .into_bytes()
                    })
                    .await
            }));
        }
        tasks
    }
}

/// Sums the members' tallies into the fan-out figures (`window_s` left 0) and returns them
/// with the time of the last group delivery or ack (0 if none).
fn fanout_figures(
    plan: &Plan,
    messages: u64,
    sent: u64,
    start_ns: u64,
    members: Vec<Option<MemberResult>>,
) -> (Fanout, u64) {
    let mut ack_latency = Latency::new();
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    let (mut acked, mut errors, mut last_ack) = (0u64, 0u64, 0u64);
    let mut acked_seqs = vec![vec![false; messages as usize]; plan.senders];
    let mut tallies = Vec::with_capacity(members.len());
    for (i, member) in members.into_iter().enumerate() {
        let Some((tally, acks)) = member else {
            tallies.push(None);
            continue;
        };
        if let (Some(a), Some(seqs)) = (acks, acked_seqs.get_mut(i)) {
            acked += a.acked;
            errors += a.errors;
            last_ack = last_ack.max(a.last_ns);
            ack_latency.merge(&a.latency);
            for (code, n) in &a.by_code {
                *by_code.entry(code.clone()).or_default() += n;
            }
            for (seq, slot) in seqs.iter_mut().enumerate() {
                *slot = a.is_sent(seq);
            }
            if a.other > 0 {
                eprintln!(
                    "note: member {i}: {} ack payloads matched no message",
                    a.other
                );
            }
        }
        tallies.push(Some(tally));
    }
    let t = totals(&tallies, &acked_seqs);
    if t.foreign > 0 {
        eprintln!(
            "note: {} inbox payloads were not messages of this group's senders",
            t.foreign
        );
    }
    let offline = (plan.members - plan.online) as u64;
    let fanout = Fanout {
        window_s: 0.0,
        sent,
        acked,
        acked_per_s: per_second(acked, last_ack.saturating_sub(start_ns)),
        errors,
        errors_by_code: by_code,
        unconfirmed: sent.saturating_sub(acked + errors),
        copies_per_message: plan.copies,
        expected: t.expected,
        delivered: t.delivered,
        deliveries_per_s: per_second(t.delivered, t.last_ns.saturating_sub(start_ns)),
        missing: t.missing,
        duplicates: t.duplicates,
        reordered: t.reordered,
        stale: t.stale,
        queued_offline: acked * offline,
        latency_ms: t.latency.summary(),
        complete_latency_ms: t.complete.summary(),
        ack_latency_ms: ack_latency.summary(),
    };
    (fanout, t.last_ns.max(last_ack))
}

/// The pairs' figures, their latency split at the fan-out window.
fn pair_figures(
    args: &GroupArgs,
    outcome: &PairOutcome,
    fanout_start_ns: u64,
    fanout_end_ns: u64,
) -> OneToOne {
    let phases = pairs::split(&outcome.samples, fanout_start_ns, fanout_end_ns);
    if outcome.stale > 0 {
        eprintln!(
            "note: {} 1:1 messages of earlier runs arrived",
            outcome.stale
        );
    }
    OneToOne {
        pairs: args.pairs as usize,
        rate: args.pair_rate,
        sent: outcome.sent,
        acked: outcome.acked,
        errors: outcome.errors,
        delivered: outcome.delivered,
        missing: outcome.missing,
        duplicates: outcome.duplicates,
        stale: outcome.stale,
        baseline_ms: phases.baseline.summary(),
        during_ms: phases.during.summary(),
        after_ms: phases.after.summary(),
    }
}
