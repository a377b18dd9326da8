//! The result of a run: a human table and a one-line JSON object.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::cpu::{CpuReport, PerMessage};
use crate::stats::LatencySummary;
use crate::windows::WindowReport;

/// The load that was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// MQTT broker address.
    pub mqtt: String,
    /// chatd HTTP address (chat mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Sending clients.
    pub senders: usize,
    /// Receiving clients.
    pub receivers: usize,
    /// Messages per sender.
    pub messages_per_sender: u64,
    /// Target total rate in msgs/s, 0 = unlimited.
    pub rate: u64,
    /// Payload (message text) size in bytes.
    pub payload_bytes: usize,
    /// Un-acknowledged messages allowed per sender.
    pub inflight: usize,
    /// Whether the clients left Nagle's algorithm on (`--nagle`).
    pub nagle: bool,
    /// Whether the clients kept persistent sessions (`--persistent`).
    pub persistent: bool,
}

/// Everything measured in one run. Rates are counts divided by the time from the start of the
/// clock to the last event of that kind.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `chat` or `raw`.
    pub mode: &'static str,
    /// The load asked for.
    pub load: Load,
    /// Seconds from the start of the clock to the end of the run (grace period included).
    pub elapsed_s: f64,
    /// How the run ended: `complete`, `grace_expired` or `duration_limit`.
    pub end: &'static str,
    /// Messages handed to the MQTT clients.
    pub sent: u64,
    /// Chat: acks with status `sent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<u64>,
    /// Chat: acked messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_per_s: Option<f64>,
    /// Chat: acks carrying an `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Chat: error acks by error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_by_code: Option<BTreeMap<String, u64>>,
    /// Raw: messages PUBACKed by the broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    /// Raw: PUBACKed messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_per_s: Option<f64>,
    /// Sent messages that got no ack (chat) / PUBACK (raw) before the end.
    pub unconfirmed: u64,
    /// Distinct messages delivered to their receiver.
    pub delivered: u64,
    /// Delivered messages per second.
    pub delivered_per_s: f64,
    /// Confirmed messages (acked / PUBACKed) that were not delivered by the end.
    pub missing: u64,
    /// Second and later deliveries of a message.
    pub duplicates: u64,
    /// Distinct deliveries that came after a message its sender sent later.
    pub reordered: u64,
    /// Benchmark messages of earlier runs that arrived (left over in an inbox).
    pub stale: u64,
    /// Client connections that broke during the run.
    pub connection_errors: usize,
    /// Send → delivery latency, ms.
    pub latency_ms: LatencySummary,
    /// Chat: send → ack latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency_ms: Option<LatencySummary>,
    /// Chat with `--receipts`: the receipt load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<ReceiptReport>,
    /// Chat: the figures of every `--window` (printed on stderr as the run went).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<WindowReport>>,
    /// CPU time per message sent, of the server (`--pid`) and of chatbench, from the first
    /// send to the end of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuReport>,
}

/// Receipt figures of a chat run with `--receipts`. Receipts are counted per message id and
/// status (`delivered-read` sends two per message).
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptReport {
    /// `read` or `delivered-read`.
    pub mode: &'static str,
    /// Ids per receipt publish (`--receipt-batch`).
    pub batch: usize,
    /// Receipt publishes by the receivers.
    pub publishes: u64,
    /// Ids in those publishes.
    pub sent: u64,
    /// Receipts due for delivered messages that were never published before the run stopped.
    pub unsent: u64,
    /// Distinct receipts received by their authors (the senders).
    pub received: u64,
    /// Received receipts per second (from the start of the clock to the last one).
    pub received_per_s: f64,
    /// Ids refused on the receivers' ack topics.
    pub errors: u64,
    /// Refused ids by error code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Published, not refused receipts that had not reached their author by the end.
    pub missing: u64,
    /// Second and later copies of a receipt.
    pub duplicates: u64,
    /// Receipts that matched nothing this run published (e.g. left over from earlier runs).
    pub unknown: u64,
    /// Receipt publish (handed to the receiver's client) → received by the author, ms.
    pub latency_ms: LatencySummary,
}

/// A finished run's figures: a human table and one line of JSON.
pub trait Render {
    /// Writes the human-readable table.
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()>;
    /// The figures as one line of JSON.
    fn to_json_line(&self) -> String;
}

impl Render for Report {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        Report::write_table(self, out)
    }

    fn to_json_line(&self) -> String {
        Report::to_json_line(self)
    }
}

/// Writes one latency line: `label` padded, then p50/p99/p99.9/max and the sample count.
pub fn write_latency(
    out: &mut dyn Write,
    label: &str,
    lat: &LatencySummary,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  {label:<22} p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
        lat.p50, lat.p99, lat.p999, lat.max, lat.count
    )
}

/// The CPU line(s): µs per message sent, user + kernel.
fn write_cpu(out: &mut dyn Write, cpu: &CpuReport) -> std::io::Result<()> {
    let line = |out: &mut dyn Write, who: &str, p: &PerMessage| {
        writeln!(
            out,
            "  cpu per message    {who:<9} {:>7.2} us  (user {:.2}, kernel {:.2})",
            p.total_us, p.user_us, p.sys_us
        )
    };
    if let Some(server) = &cpu.server {
        line(out, "server", server)?;
    }
    line(out, "chatbench", &cpu.generator)
}

fn rate(count: u64, per_s: f64) -> String {
    format!("{count:>10}   {per_s:>10.1} msg/s")
}

impl Report {
    /// Writes the human-readable table.
    pub fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let l = &self.load;
        let limit = if l.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} msg/s", l.rate)
        };
        writeln!(
            out,
            "chatbench {}: {} senders -> {} receivers, {} msgs each, payload {} B, inflight {}, rate {}",
            self.mode, l.senders, l.receivers, l.messages_per_sender, l.payload_bytes, l.inflight, limit
        )?;
        writeln!(out, "  mqtt {}", l.mqtt)?;
        if let Some(http) = &l.http {
            writeln!(out, "  http {http}")?;
        }
        writeln!(
            out,
            "  elapsed            {:>10.3} s ({})",
            self.elapsed_s, self.end
        )?;
        writeln!(out, "  sent               {:>10}", self.sent)?;
        if let (Some(n), Some(r)) = (self.acked, self.acked_per_s) {
            writeln!(out, "  acked (sent)       {}", rate(n, r))?;
        }
        if let (Some(n), Some(r)) = (self.published, self.published_per_s) {
            writeln!(out, "  published (PUBACK) {}", rate(n, r))?;
        }
        writeln!(
            out,
            "  delivered          {}",
            rate(self.delivered, self.delivered_per_s)
        )?;
        if let Some(errors) = self.errors {
            let by_code = self
                .errors_by_code
                .iter()
                .flatten()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let line = format!("  errors             {errors:>10}   {by_code}");
            writeln!(out, "{}", line.trim_end())?;
        }
        writeln!(out, "  unconfirmed        {:>10}", self.unconfirmed)?;
        writeln!(out, "  missing            {:>10}", self.missing)?;
        writeln!(out, "  duplicates         {:>10}", self.duplicates)?;
        writeln!(out, "  reordered          {:>10}", self.reordered)?;
        if self.stale > 0 {
            writeln!(out, "  stale (old runs)   {:>10}", self.stale)?;
        }
        writeln!(out, "  connection errors  {:>10}", self.connection_errors)?;
        let lat = &self.latency_ms;
        writeln!(
            out,
            "  latency send->deliver  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            lat.p50, lat.p99, lat.p999, lat.max, lat.count
        )?;
        if let Some(ack) = &self.ack_latency_ms {
            writeln!(
                out,
                "  latency send->ack      p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
                ack.p50, ack.p99, ack.p999, ack.max, ack.count
            )?;
        }
        if let Some(windows) = self.windows.as_deref().filter(|w| !w.is_empty()) {
            let worst = windows.iter().map(|w| w.latency_ms.p99).fold(0.0, f64::max);
            writeln!(
                out,
                "  windows            {:>10}   worst window p99 {worst:.3} ms",
                windows.len()
            )?;
            let rss: Vec<u64> = windows.iter().filter_map(|w| w.rss_bytes).collect();
            if let (Some(first), Some(last), Some(peak)) =
                (rss.first(), rss.last(), rss.iter().max())
            {
                writeln!(
                    out,
                    "  server rss         first {:.0} MB  last {:.0} MB  peak {:.0} MB",
                    *first as f64 / 1e6,
                    *last as f64 / 1e6,
                    *peak as f64 / 1e6
                )?;
            }
        }
        if let Some(cpu) = &self.cpu {
            write_cpu(out, cpu)?;
        }
        if let Some(r) = &self.receipts {
            writeln!(
                out,
                "  receipts ({}, batch {})  {} publishes",
                r.mode, r.batch, r.publishes
            )?;
            writeln!(out, "    sent (ids)       {:>10}", r.sent)?;
            writeln!(
                out,
                "    forwarded        {:>10}   {:>10.1} rcpt/s",
                r.received, r.received_per_s
            )?;
            let by_code = r
                .errors_by_code
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let line = format!("    errors           {:>10}   {by_code}", r.errors);
            writeln!(out, "{}", line.trim_end())?;
            writeln!(out, "    missing          {:>10}", r.missing)?;
            if r.unsent > 0 {
                writeln!(out, "    unsent           {:>10}", r.unsent)?;
            }
            writeln!(out, "    duplicates       {:>10}", r.duplicates)?;
            if r.unknown > 0 {
                writeln!(out, "    unknown          {:>10}", r.unknown)?;
            }
            let lat = &r.latency_ms;
            writeln!(
                out,
                "  latency receipt->author p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
                lat.p50, lat.p99, lat.p999, lat.max, lat.count
            )?;
        }
        Ok(())
    }

    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }
}

/// Count per second over `window_ns` nanoseconds (0 when nothing happened).
pub fn per_second(count: u64, window_ns: u64) -> f64 {
    if count == 0 || window_ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / window_ns as f64
    }
}
