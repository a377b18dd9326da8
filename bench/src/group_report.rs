//! The figures of a `chatbench group` run: a human table and one JSON line.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::report::{write_latency, Render};
use crate::stats::LatencySummary;

/// The load that was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLoad {
    /// MQTT broker address.
    pub mqtt: String,
    /// chatd HTTP address.
    pub http: String,
    /// The group created for the run.
    pub group: String,
    /// Members, the creator included.
    pub members: usize,
    /// Members connected.
    pub online: usize,
    /// Members not connected (their copies are queued).
    pub offline: usize,
    /// Members sending group messages.
    pub senders: usize,
    /// Group messages per sender.
    pub messages_per_sender: u64,
    /// Target total group message rate, msgs/s, 0 = as fast as the window allows.
    pub rate: u64,
    /// Message text size in bytes.
    pub payload_bytes: usize,
    /// Un-acked group messages allowed per sender.
    pub inflight: usize,
    /// 1:1 pairs beside the fan-out.
    pub pairs: usize,
    /// Total rate of the pairs, msgs/s.
    pub pair_rate: u64,
    /// Seconds of 1:1 traffic alone before the fan-out.
    pub baseline_s: u64,
}

/// What happened before the clock started.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Users created through the admin API.
    pub users_created: usize,
    /// Users that existed already.
    pub users_existing: usize,
    /// Seconds to create the group (`group.create` plus the `group.add` requests).
    pub group_setup_s: f64,
    /// Inbox messages received before the clock started (membership events, queued backlog).
    pub backlog: u64,
}

/// The group fan-out.
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    /// Seconds from the first group send to the last delivery or ack.
    pub window_s: f64,
    /// Group messages handed to the clients.
    pub sent: u64,
    /// Acks with status `sent`.
    pub acked: u64,
    /// Acked group messages per second (first send → last ack).
    pub acked_per_s: f64,
    /// Error acks.
    pub errors: u64,
    /// Error acks by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Sent messages without ack at the end.
    pub unconfirmed: u64,
    /// Online copies per message (online members other than the sender).
    pub copies_per_message: u64,
    /// Copies due to online members (acked messages × copies per message).
    pub expected: u64,
    /// Distinct copies received by online members.
    pub delivered: u64,
    /// Copies received per second (first send → last delivery).
    pub deliveries_per_s: f64,
    /// Due copies that did not arrive.
    pub missing: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// Copies that arrived after a later message of the same sender.
    pub reordered: u64,
    /// Benchmark messages of earlier runs that arrived.
    pub stale: u64,
    /// Copies queued for offline members (acked messages × offline members).
    pub queued_offline: u64,
    /// Send → arrival of each copy, ms.
    pub latency_ms: LatencySummary,
    /// Send → arrival at the last online member, per fully delivered message, ms.
    pub complete_latency_ms: LatencySummary,
    /// Send → ack, ms.
    pub ack_latency_ms: LatencySummary,
}

/// The 1:1 traffic beside the fan-out.
#[derive(Debug, Clone, Serialize)]
pub struct OneToOne {
    /// Pairs.
    pub pairs: usize,
    /// Total rate, msgs/s.
    pub rate: u64,
    /// Messages handed to the clients.
    pub sent: u64,
    /// Acks with status `sent`.
    pub acked: u64,
    /// Error acks.
    pub errors: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Acked but not delivered.
    pub missing: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// Messages of earlier runs that arrived.
    pub stale: u64,
    /// Send → delivery of messages sent before the fan-out, ms.
    pub baseline_ms: LatencySummary,
    /// Send → delivery of messages sent while the fan-out ran, ms.
    pub during_ms: LatencySummary,
    /// Send → delivery of messages sent after the fan-out, ms.
    pub after_ms: LatencySummary,
}

/// Everything measured in one group run.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// Always `group`.
    pub mode: &'static str,
    /// The load asked for.
    pub load: GroupLoad,
    /// Before the clock.
    pub setup: Setup,
    /// Seconds from the start of the baseline to the end of the run.
    pub elapsed_s: f64,
    /// How the fan-out ended: `complete`, `grace_expired`, `duration_limit`, `connections_lost`.
    pub end: &'static str,
    /// The fan-out.
    pub fanout: Fanout,
    /// The 1:1 pairs, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_to_one: Option<OneToOne>,
    /// Client connections that broke during the run (members and pairs).
    pub connection_errors: usize,
}

impl Render for GroupReport {
    fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let l = &self.load;
        let rate = if l.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} msg/s", l.rate)
        };
        writeln!(
            out,
            "chatbench group: {} members ({} online, {} offline), {} sender(s) x {} msgs, payload {} B, inflight {}, rate {}",
            l.members, l.online, l.offline, l.senders, l.messages_per_sender, l.payload_bytes, l.inflight, rate
        )?;
        writeln!(out, "  mqtt {}  http {}  group {}", l.mqtt, l.http, l.group)?;
        let s = &self.setup;
        writeln!(
            out,
            "  setup: {} users created, {} existed; group set up in {:.3} s; {} backlog inbox messages drained",
            s.users_created, s.users_existing, s.group_setup_s, s.backlog
        )?;
        writeln!(
            out,
            "  elapsed            {:>10.3} s ({})",
            self.elapsed_s, self.end
        )?;
        let f = &self.fanout;
        writeln!(out, "  fan-out window     {:>10.3} s", f.window_s)?;
        writeln!(out, "  group msgs sent    {:>10}", f.sent)?;
        writeln!(
            out,
            "  group msgs acked   {:>10}   {:>10.1} msg/s",
            f.acked, f.acked_per_s
        )?;
        let by_code = f
            .errors_by_code
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let line = format!("  errors             {:>10}   {by_code}", f.errors);
        writeln!(out, "{}", line.trim_end())?;
        writeln!(out, "  unconfirmed        {:>10}", f.unconfirmed)?;
        writeln!(
            out,
            "  deliveries         {:>10}   {:>10.1} msg/s  ({} due: {} copies per message)",
            f.delivered, f.deliveries_per_s, f.expected, f.copies_per_message
        )?;
        writeln!(out, "  missing            {:>10}", f.missing)?;
        writeln!(out, "  duplicates         {:>10}", f.duplicates)?;
        writeln!(out, "  reordered          {:>10}", f.reordered)?;
        if f.stale > 0 {
            writeln!(out, "  stale (old runs)   {:>10}", f.stale)?;
        }
        writeln!(out, "  queued for offline {:>10}", f.queued_offline)?;
        writeln!(out, "  connection errors  {:>10}", self.connection_errors)?;
        write_latency(out, "latency send->deliver", &f.latency_ms)?;
        write_latency(out, "latency send->all", &f.complete_latency_ms)?;
        write_latency(out, "latency send->ack", &f.ack_latency_ms)?;
        if let Some(p) = &self.one_to_one {
            writeln!(
                out,
                "  1:1 pairs {} at {} msg/s: sent {} acked {} errors {} delivered {} missing {} duplicates {}",
                p.pairs, p.rate, p.sent, p.acked, p.errors, p.delivered, p.missing, p.duplicates
            )?;
            write_latency(out, "1:1 baseline", &p.baseline_ms)?;
            write_latency(out, "1:1 during fan-out", &p.during_ms)?;
            if p.after_ms.count > 0 {
                write_latency(out, "1:1 after fan-out", &p.after_ms)?;
            }
        }
        Ok(())
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    #[test]
    fn table_and_json() {
        let lat = Latency::new().summary();
        let report = GroupReport {
            mode: "group",
            load: GroupLoad {
                mqtt: "127.0.0.1:1".into(),
                http: "127.0.0.1:2".into(),
                group: "g_1".into(),
                members: 3,
                online: 2,
                offline: 1,
                senders: 1,
                messages_per_sender: 4,
                rate: 0,
                payload_bytes: 200,
                inflight: 50,
                pairs: 1,
                pair_rate: 10,
                baseline_s: 1,
            },
            setup: Setup {
                users_created: 5,
                users_existing: 0,
                group_setup_s: 0.1,
                backlog: 2,
            },
            elapsed_s: 2.0,
            end: "complete",
            fanout: Fanout {
                window_s: 0.5,
                sent: 4,
                acked: 4,
                acked_per_s: 8.0,
                errors: 0,
                errors_by_code: BTreeMap::new(),
                unconfirmed: 0,
                copies_per_message: 1,
                expected: 4,
                delivered: 4,
                deliveries_per_s: 8.0,
                missing: 0,
                duplicates: 0,
                reordered: 0,
                stale: 0,
                queued_offline: 4,
                latency_ms: lat,
                complete_latency_ms: lat,
                ack_latency_ms: lat,
            },
            one_to_one: Some(OneToOne {
                pairs: 1,
                rate: 10,
                sent: 20,
                acked: 20,
                errors: 0,
                delivered: 20,
                missing: 0,
                duplicates: 0,
                stale: 0,
                baseline_ms: lat,
                during_ms: lat,
                after_ms: lat,
            }),
            connection_errors: 0,
        };
        let mut table = Vec::new();
        report.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("1:1 during fan-out"), "{table}");
        assert!(table.contains("queued for offline          4"), "{table}");
        let v: serde_json::Value = serde_json::from_str(&report.to_json_line()).unwrap();
        assert_eq!(v["fanout"]["deliveries_per_s"], 8.0);
        assert_eq!(v["one_to_one"]["baseline_ms"]["count"], 0);
    }
}
