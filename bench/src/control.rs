//! Run control shared by all tasks: live counters, the stop signal and the end-of-run logic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Live counters updated by the client tasks and read by the controller.
#[derive(Default)]
pub struct Progress {
    /// Messages handed to the MQTT clients.
    pub published: AtomicU64,
    /// Messages confirmed: chat acks with status `sent`, or raw PUBACKs.
    pub confirmed: AtomicU64,
    /// Messages refused (chat acks with `error`).
    pub failed: AtomicU64,
    /// Distinct messages of this run delivered to receivers.
    pub delivered: AtomicU64,
    /// Chat receipts: ids handed to the clients in receipt publishes (one per id and status).
    pub receipts_sent: AtomicU64,
    /// Chat receipts: distinct receipts of this run that reached their author.
    pub receipts_received: AtomicU64,
    /// Chat receipts: ids refused on the receivers' ack topics.
    pub receipts_refused: AtomicU64,
    /// Sender tasks that have stopped publishing.
    pub senders_done: AtomicUsize,
    /// Clients whose connection broke during the run.
    pub connection_errors: AtomicUsize,
}

impl Progress {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates the stop signal: the sender half is kept by the controller, receivers go to tasks.
pub fn stop_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Resolves once the stop signal is raised (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Why the measured run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Everything sent was confirmed and delivered.
    Complete,
    /// The grace period ran out (confirmations or deliveries stopped coming).
    GraceExpired,
    /// The hard duration limit was reached.
    DurationLimit,
    /// Every client's connection broke.
    ConnectionsLost,
}

impl EndReason {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Complete => "complete",
            EndReason::GraceExpired => "grace_expired",
            EndReason::DurationLimit => "duration_limit",
            EndReason::ConnectionsLost => "connections_lost",
        }
    }
}

/// Interval of the progress lines on stderr.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Waits until the run is over: all senders are done and every published message is confirmed
/// or refused (phase 1), then every confirmed message is delivered `copies` times (phase 2: 1
/// for 1:1 traffic, the online receivers of a group for group traffic). Phase 1 gives up when no
/// confirmation arrives for `grace`, phase 2 when no delivery arrives for `grace`. `deadline`
/// cuts either short, and so does the loss of all `clients` connections. Prints a progress line
/// every 5 s.
pub async fn wait_for_end(
    progress: &Progress,
    copies: u64,
    senders: usize,
    clients: usize,
    grace: Duration,
    deadline: Instant,
) -> EndReason {
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    let mut check = || {
        let now = Instant::now();
        if now >= next_report {
            next_report += REPORT_EVERY;
            eprintln!(
                "  {:>4}s: sent {} confirmed {} refused {} delivered {}",
                (now - started).as_secs(),
                Progress::get(&progress.published),
                Progress::get(&progress.confirmed),
                Progress::get(&progress.failed),
                Progress::get(&progress.delivered),
            );
        }
        if now >= deadline {
            Some(EndReason::DurationLimit)
        } else if progress.connection_errors.load(Ordering::Relaxed) >= clients {
            Some(EndReason::ConnectionsLost)
        } else {
            None
        }
    };
    let tick = Duration::from_millis(20);
    // Phase 1: publishing and confirmations.
    let mut last_settled = 0;
    let mut last_change = Instant::now();
    let all_settled = loop {
        if let Some(end) = check() {
            return end;
        }
        let settled = Progress::get(&progress.confirmed) + Progress::get(&progress.failed);
        if settled != last_settled {
            last_settled = settled;
            last_change = Instant::now();
        }
        let done = progress.senders_done.load(Ordering::Relaxed) >= senders;
        if done && settled >= Progress::get(&progress.published) {
            break true;
        }
        if done && last_change.elapsed() >= grace {
            break false;
        }
        tokio::time::sleep(tick).await;
    };
    // Phase 2: deliveries of confirmed messages.
    let mut last_delivered = Progress::get(&progress.delivered);
    let mut until = Instant::now() + grace;
    loop {
        let delivered = Progress::get(&progress.delivered);
        if delivered >= Progress::get(&progress.confirmed).saturating_mul(copies) {
            return if all_settled {
                EndReason::Complete
            } else {
                EndReason::GraceExpired
            };
        }
        if let Some(end) = check() {
            return end;
        }
        if delivered != last_delivered {
            last_delivered = delivered;
            until = Instant::now() + grace;
        }
        if Instant::now() >= until {
            return EndReason::GraceExpired;
        }
        tokio::time::sleep(tick).await;
    }
}

/// Phase 3 of a chat run with receipts: waits until every delivered message's receipts
/// (`per_message` of them) reached its author or were refused. Gives up (returns false) once
/// nothing progresses for `grace`, at `deadline`, or when all `clients` connections are lost.
pub async fn wait_for_receipts(
    progress: &Progress,
    per_message: u64,
    clients: usize,
    grace: Duration,
    deadline: Instant,
) -> bool {
    let tick = Duration::from_millis(20);
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    let mut last = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        let done =
            Progress::get(&progress.receipts_received) + Progress::get(&progress.receipts_refused);
        let expected = Progress::get(&progress.delivered) * per_message;
        if done >= expected {
            return true;
        }
        let now = Instant::now();
        if done != last {
            last = done;
            last_change = now;
        }
        if now >= next_report {
            next_report += REPORT_EVERY;
            eprintln!(
                "  receipts: sent {} received {} refused {} of {expected}",
                Progress::get(&progress.receipts_sent),
                Progress::get(&progress.receipts_received),
                Progress::get(&progress.receipts_refused),
            );
        }
        if now >= deadline
            || last_change.elapsed() >= grace
            || progress.connection_errors.load(Ordering::Relaxed) >= clients
        {
            return false;
        }
        tokio::time::sleep(tick).await;
    }
}

/// Waits until `counter` has not changed for `quiet` (at least `quiet` in all), or until
/// `deadline`. Returns the counter's value then. Used to let backlogs (queued messages, group
/// events) drain before the clock starts.
pub async fn wait_until_quiet(counter: &AtomicU64, quiet: Duration, deadline: Instant) -> u64 {
    let tick = Duration::from_millis(20);
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_change) >= quiet {
            return last;
        }
        tokio::time::sleep(tick).await;
        let value = counter.load(Ordering::Relaxed);
        if value != last {
            last = value;
            last_change = Instant::now();
        }
    }
}

/// Waits for all tasks, at most `limit` in total; tasks still running then are aborted and
/// yield `None`.
pub async fn join_all<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
    limit: Duration,
) -> Vec<Option<T>> {
    let until = Instant::now() + limit;
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(until, handle).await {
            Ok(Ok(v)) => out.push(Some(v)),
            Ok(Err(_)) => out.push(None),
            Err(_) => {
                abort.abort();
                out.push(None);
            }
        }
    }
    out
}

/// An identifier for this run, written into every message so leftovers of other runs are
/// recognised.
pub fn run_id() -> u32 {
    let ns = crate::clock::now_ns();
    (ns ^ (ns >> 32) ^ (u64::from(std::process::id()) << 16)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fanout_ends_when_every_copy_arrived() {
        let p = Progress::default();
        p.published.store(2, Ordering::Relaxed);
        p.confirmed.store(2, Ordering::Relaxed);
        p.senders_done.store(1, Ordering::Relaxed);
        p.delivered.store(6, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        let grace = Duration::from_millis(100);
        assert_eq!(
            wait_for_end(&p, 3, 1, 4, grace, deadline).await,
            EndReason::Complete
        );
        p.delivered.store(5, Ordering::Relaxed);
        assert_eq!(
            wait_for_end(&p, 3, 1, 4, grace, deadline).await,
            EndReason::GraceExpired
        );
    }

    #[tokio::test]
    async fn quiet_waits_for_the_counter_to_settle() {
        let counter = std::sync::Arc::new(AtomicU64::new(0));
        let bump = counter.clone();
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                bump.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let seen = wait_until_quiet(&counter, Duration::from_millis(100), deadline).await;
        assert_eq!(seen, 5);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let _ = writer.await;
        let past = Instant::now();
        assert_eq!(
            wait_until_quiet(&counter, Duration::from_secs(5), past).await,
            5
        );
    }
}
