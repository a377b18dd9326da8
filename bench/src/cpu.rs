//! CPU time of the server under test and of chatbench itself, per message.
//!
//! Why: on the 2-core machines the project is measured on, the server and the load generator
//! share the cores, so a throughput ratio is a CPU budget shared by both. Each run reporting
//! how many µs of CPU a message cost the server (user and kernel) and the generator makes that
//! budget visible without a profiler.

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

/// Microseconds per tick of `/proc/{pid}/stat`'s times: they count in `USER_HZ`, which Linux
/// fixes at 100 for user space whatever the kernel's own tick rate.
const MICROS_PER_TICK: u64 = 10_000;

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime {
    /// In user space, µs.
    pub user_us: u64,
    /// In the kernel on its behalf, µs.
    pub sys_us: u64,
}

/// The CPU time of process `pid`, all its threads (`utime` and `stime` of `/proc/{pid}/stat`).
pub fn process(pid: u32) -> Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).ok_or_else(|| anyhow!("unreadable {path}"))
}

/// chatbench's own CPU time so far.
pub fn own() -> Result<CpuTime> {
    process(std::process::id())
}

/// `utime` and `stime` of a stat line. They follow the command name, which is in parentheses
/// and may itself hold spaces and `)`: the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<CpuTime> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid … cmajflt (4–12), utime (14), stime (15).
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let sys: u64 = fields.next()?.parse().ok()?;
    Some(CpuTime {
        user_us: user * MICROS_PER_TICK,
        sys_us: sys * MICROS_PER_TICK,
    })
}

/// CPU time per message of one process over a run, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerMessage {
    /// In user space.
    pub user_us: f64,
    /// In the kernel.
    pub sys_us: f64,
    /// Both.
    pub total_us: f64,
}

impl PerMessage {
    /// What `after - before` comes to over `messages` messages.
    fn between(before: CpuTime, after: CpuTime, messages: u64) -> PerMessage {
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / messages.max(1) as f64;
        let user_us = per(after.user_us, before.user_us);
        let sys_us = per(after.sys_us, before.sys_us);
        PerMessage {
            user_us,
            sys_us,
            total_us: user_us + sys_us,
        }
    }
}

/// The CPU cost of a run's messages: the server's (with `--pid`) and chatbench's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuReport {
    /// The server process given by `--pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<PerMessage>,
    /// chatbench itself (every client, sender and receiver).
    pub generator: PerMessage,
}

/// Both processes' CPU time at the start of a run.
pub struct Meter {
    /// The server's pid and its time then, when it could be read.
    server: Option<(u32, CpuTime)>,
    /// chatbench's time then.
    own: CpuTime,
}

impl Meter {
    /// Reads both now (the server's only when `pid` is given and readable).
    pub fn start(pid: Option<u32>) -> Result<Meter> {
        let server = match pid {
            Some(pid) => Some((pid, process(pid)?)),
            None => None,
        };
        Ok(Meter {
            server,
            own: own()?,
        })
    }

    /// What the `messages` of the run cost each process since [`Meter::start`]; `None` when
    /// chatbench cannot read its own time (the server's is left out if it exited).
    pub fn finish(&self, messages: u64) -> Option<CpuReport> {
        let generator = PerMessage::between(self.own, own().ok()?, messages);
        let server = self.server.and_then(|(pid, before)| {
            let after = process(pid).ok()?;
            Some(PerMessage::between(before, after, messages))
        });
        Some(CpuReport { server, generator })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_after_the_last_parenthesis() {
        // A command name with a space and a `)` of its own, as a thread may be named.
        let stat = "4242 (chat d) x) S 1 4242 4242 0 -1 4194560 1500 0 3 0 731 52 0 0 20 0 9 0 100 1000 200";
        assert_eq!(
            parse_stat(stat),
            Some(CpuTime {
                user_us: 7_310_000,
                sys_us: 520_000
            })
        );
        assert_eq!(parse_stat("4242 (chatd) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn per_message_divides_the_difference() {
        let before = CpuTime {
            user_us: 1_000_000,
            sys_us: 500_000,
        };
        let after = CpuTime {
            user_us: 3_000_000,
            sys_us: 1_500_000,
        };
        let per = PerMessage::between(before, after, 100_000);
        assert_eq!((per.user_us, per.sys_us, per.total_us), (20.0, 10.0, 30.0));
        // No message: no division by zero.
        assert_eq!(PerMessage::between(before, after, 0).user_us, 2_000_000.0);
    }

    #[test]
    fn own_time_grows_with_work() -> Result<()> {
        let meter = Meter::start(Some(std::process::id()))?;
        let began = std::time::Instant::now();
        let mut x = 0u64;
        // Busy for 200 ms of CPU at least: 20 ticks.
        while began.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let report = meter.finish(1).expect("own time");
        assert!(report.generator.total_us >= 100_000.0, "{report:?}");
        let server = report.server.expect("server time");
        assert!(server.total_us >= 100_000.0, "{server:?}");
        Ok(())
    }
}
