//! The result of `chatbench connect`: a human table and a one-line JSON object.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::report::Render;
use crate::stats::LatencySummary;

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectLoad {
    /// Server address.
    pub mqtt: String,
    /// Connections asked for.
    pub clients: usize,
    /// `jwt`, `password` or `none`.
    pub auth: &'static str,
    /// `none`, `own` or `presence`.
    pub subscribe: &'static str,
    /// Keep-alive sent in CONNECT, seconds.
    pub keep_alive: u16,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Source addresses used.
    pub sources: u32,
}

/// The server's resident memory.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Server process id.
    pub pid: u32,
    /// VmRSS before the first connection, bytes.
    pub before_bytes: u64,
    /// VmRSS after the last CONNACK and the settle time, bytes.
    pub after_bytes: u64,
    /// (after − before) / connections held then, bytes.
    pub per_connection_bytes: f64,
    /// VmRSS at the end of `--hold`, bytes (when holding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_hold_bytes: Option<u64>,
}

/// The reconnect storm.
#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    /// Connections the server closed.
    pub closed: usize,
    /// Seconds from the first close seen to the last one.
    pub closing_s: f64,
    /// Connections back (CONNACK received, subscriptions done).
    pub reconnected: usize,
    /// Connections that could not come back before the duration limit.
    pub not_reconnected: usize,
    /// Attempts that failed and were retried, by reason.
    pub retries_by_reason: BTreeMap<String, u64>,
    /// Seconds from the first close seen to the last reconnection: the storm's total.
    pub first_close_to_all_back_s: f64,
    /// Seconds from the first TCP connection accepted again (the server listening) to the last
    /// reconnection.
    pub listening_to_all_back_s: f64,
    /// Seconds from the first close seen to the first TCP connection accepted again.
    pub down_s: f64,
    /// Reconnections per second once the server listened again.
    pub reconnects_per_s: f64,
    /// Latency of the successful attempts, TCP connect → CONNACK, ms.
    pub connack_latency_ms: LatencySummary,
}

/// Everything `chatbench connect` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    /// Always `connect`.
    pub mode: &'static str,
    /// What was asked for.
    pub load: ConnectLoad,
    /// Connections accepted (CONNACK 0, and SUBACK if subscribing).
    pub connected: usize,
    /// Connections that failed, by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Seconds from the first connection attempt to the last CONNACK.
    pub connect_elapsed_s: f64,
    /// Connections accepted per second over that time.
    pub connects_per_s: f64,
    /// TCP connection established → CONNACK, ms.
    pub connack_latency_ms: LatencySummary,
    /// Attempt start (before TCP connect) → CONNACK (and SUBACK when subscribing), ms.
    pub total_latency_ms: LatencySummary,
    /// Connections still open after the settle time (and after `--hold`).
    pub held: usize,
    /// Connections the server closed while they were held.
    pub closed_while_held: usize,
    /// The server's memory, with `--pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// The reconnect storm, with `--storm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<Storm>,
}

fn latency_line(out: &mut dyn Write, label: &str, l: &LatencySummary) -> std::io::Result<()> {
    writeln!(
        out,
        "  {label:<26} p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
        l.p50, l.p99, l.p999, l.max, l.count
    )
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Render for ConnectReport {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let l = &self.load;
        writeln!(
            out,
            "chatbench connect: {} clients to {} (auth {}, subscribe {}, keep-alive {} s, {} in flight, {} source addresses)",
            l.clients, l.mqtt, l.auth, l.subscribe, l.keep_alive, l.concurrency, l.sources
        )?;
        let failed: u64 = self.failed_by_reason.values().sum();
        writeln!(
            out,
            "  connected                  {:>10}   failed {failed} {}",
            self.connected,
            reasons(&self.failed_by_reason)
        )?;
        writeln!(
            out,
            "  connects/s                 {:>10.1}   ({:.3} s from first attempt to last CONNACK)",
            self.connects_per_s, self.connect_elapsed_s
        )?;
        latency_line(out, "TCP up -> CONNACK", &self.connack_latency_ms)?;
        latency_line(out, "attempt -> ready", &self.total_latency_ms)?;
        writeln!(
            out,
            "  held                       {:>10}   (closed by the server while held: {})",
            self.held, self.closed_while_held
        )?;
        if let Some(m) = &self.memory {
            const MIB: f64 = 1024.0 * 1024.0;
            writeln!(
                out,
                "  server RSS (pid {})      before {:.1} MiB  after {:.1} MiB  -> {:.0} bytes per connection",
                m.pid,
                m.before_bytes as f64 / MIB,
                m.after_bytes as f64 / MIB,
                m.per_connection_bytes
            )?;
            if let Some(h) = m.after_hold_bytes {
                writeln!(
                    out,
                    "  server RSS after hold      {:.1} MiB",
                    h as f64 / MIB
                )?;
            }
        }
        if let Some(s) = &self.storm {
            writeln!(
                out,
                "  storm: {} closed by the server within {:.3} s",
                s.closed, s.closing_s
            )?;
            writeln!(
                out,
                "    reconnected              {:>10}   not reconnected {}",
                s.reconnected, s.not_reconnected
            )?;
            writeln!(
                out,
                "    first close -> all back  {:>10.3} s (server down {:.3} s, listening -> all back {:.3} s, {:.1} reconnects/s)",
                s.first_close_to_all_back_s, s.down_s, s.listening_to_all_back_s, s.reconnects_per_s
            )?;
            writeln!(
                out,
                "    retried attempts         {}",
                reasons(&s.retries_by_reason)
            )?;
            latency_line(out, "  TCP up -> CONNACK", &s.connack_latency_ms)?;
        }
        Ok(())
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
