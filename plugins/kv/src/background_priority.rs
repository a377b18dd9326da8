//! Runs the store's background work (fjall's flushes and compactions, chatd's freeing of
//! written-out memtables) at a lower CPU priority than the threads that serve clients.
//!
//! Why: on a machine with few cores a compaction takes a whole core for seconds. At the same
//! priority, the committer and the session threads that wake up meanwhile wait for their turn
//! behind it (the scheduler's time slices are milliseconds long), which showed in the p99 of
//! send → delivery. With a higher nice value, the scheduler runs a waking client thread at
//! once. The background work still gets all the CPU nobody else wants, so it keeps up unless
//! the machine is saturated; then the committer gives way to it (`FjallStore`'s
//! `KvStore::give_way`) before fjall halts every write.
//!
//! The priority is relative to the process (the main thread's nice value) and never brought
//! back up (that would need a privilege), so that a server started with `nice` keeps its
//! background threads below it, and opening another store in the same process does not lower
//! the first one's threads twice.

/// How many nice levels below the rest of chatd the store's background threads run, unless
/// configured otherwise (`storage.background_nice`): 10.
///
/// At 10,000 msg/s on the 2-core benchmark machine the p99 of send → delivery was 4.6–5.7 ms
/// in 10 runs of 12 with it against 7.4–10.6 ms without, and throughput rose by a fifth
/// (docs/benchmarks.md, "background threads at a lower CPU priority").
pub const DEFAULT_BACKGROUND_NICE: u8 = 10;

/// The highest nice value Linux has: the lowest priority.
const LOWEST: i32 = 19;

/// Gives every thread of this process whose name starts with `prefix` a nice value of at
/// least the process's plus `below` (at most 19); returns how many threads were lowered.
/// Threads already that low are left alone. A thread that ends meanwhile is skipped.
#[cfg(target_os = "linux")]
pub(crate) fn lower_threads_named(prefix: &str, below: u8) -> usize {
    if below == 0 {
        return 0;
    }
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let target = target_nice(below);
    let mut lowered = 0;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::id_t>().ok())
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if name.trim_end().starts_with(prefix) && lower(tid, target) {
            lowered += 1;
        }
    }
    lowered
}

/// Gives the calling thread a nice value of at least the process's plus `below`.
#[cfg(target_os = "linux")]
pub(crate) fn lower_this_thread(below: u8) {
    if below == 0 {
        return;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    lower(tid as libc::id_t, target_nice(below));
}

/// The nice value `below` levels under the process's (its main thread's).
#[cfg(target_os = "linux")]
fn target_nice(below: u8) -> i32 {
    (nice_of(std::process::id() as libc::id_t).unwrap_or(0) + i32::from(below)).min(LOWEST)
}

/// Sets thread `tid`'s nice value to `target` if it is higher (lower priority) than now;
/// true when it was changed.
#[cfg(target_os = "linux")]
fn lower(tid: libc::id_t, target: i32) -> bool {
    match nice_of(tid) {
        Some(now) if now < target => {
            // SAFETY: setpriority with PRIO_PROCESS and a thread id changes that one thread
            // (Linux); lowering a priority needs no privilege.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) == 0 }
        }
        _ => false,
    }
}

/// Thread (or process) `tid`'s nice value; none when it is gone.
#[cfg(target_os = "linux")]
pub(crate) fn nice_of(tid: libc::id_t) -> Option<i32> {
    // getpriority returns -1 both as a value and as an error: errno tells them apart.
    // SAFETY: errno is thread-local; getpriority only reads.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

/// Elsewhere thread priorities are left as they are.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_threads_named(_prefix: &str, _below: u8) -> usize {
    0
}

/// Elsewhere thread priorities are left as they are.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_this_thread(_below: u8) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value of every thread of this process named `name`.
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
            if comm.trim_end() == name {
                if let Some(nice) = tid.and_then(nice_of) {
                    found.push(nice);
                }
            }
        }
        found
    }

    /// A thread named `name` that runs until the returned sender is dropped.
    fn parked(name: &str) -> std::sync::mpsc::Sender<()> {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = ready_tx.send(());
                let _ = stop_rx.recv();
            })
            .expect("thread spawned");
        ready_rx.recv().expect("thread started");
        stop_tx
    }

    #[test]
    fn named_threads_are_lowered_once_and_others_are_not() {
        let base = nice_of(std::process::id() as libc::id_t).unwrap_or(0);
        if base + 4 > LOWEST {
            return; // a test run already at the lowest priorities has nothing to lower
        }
        let running = [
            parked("bgprio:work"),
            parked("bgprio:work"),
            parked("bgprio-other"),
        ];
        assert_eq!(lower_threads_named("bgprio:", 4), 2);
        let want = (base + 4).min(LOWEST);
        assert_eq!(nice_of_threads("bgprio:work"), vec![want, want]);
        assert_eq!(nice_of_threads("bgprio-other"), vec![base]);
        // Asking again, or for less, changes nothing.
        assert_eq!(lower_threads_named("bgprio:", 4), 0);
        assert_eq!(lower_threads_named("bgprio:", 2), 0);
        assert_eq!(nice_of_threads("bgprio:work"), vec![want, want]);
        drop(running);
    }

    #[test]
    fn the_calling_thread_is_lowered() {
        let base = nice_of(std::process::id() as libc::id_t).unwrap_or(0);
        let nice = std::thread::spawn(|| {
            lower_this_thread(3);
            // SAFETY: gettid has no preconditions.
            nice_of(unsafe { libc::gettid() } as libc::id_t)
        })
        .join()
        .expect("thread ran");
        assert_eq!(nice, Some((base + 3).min(LOWEST)));
    }
}
