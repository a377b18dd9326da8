//! `chatbench replay`: how fast chatd replays a long offline queue to a user who comes back.
//! Connects the user `chatbench generate` left messages for, subscribes to its inbox, and
//! times the handshake and the deliveries (the client acknowledges each at once, as rumqttc
//! does). Ids are counted once, so a redelivery does not count as progress.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rumqttc::{Event, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cli::ReplayArgs;
use crate::mqtt::{self, ClientSpec, Connected};
use crate::reads::endpoint;
use crate::report::Render;

/// An inbox message, as far as this mode reads it.
#[derive(Deserialize)]
struct InboxId {
    id: Option<String>,
}

/// What `chatbench replay` measured; times in seconds from the start of the connection.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// Always `replay`.
    pub mode: &'static str,
    /// The user connected.
    pub user: String,
    /// Messages expected.
    pub expected: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Deliveries of an id already delivered.
    pub duplicates: u64,
    /// CONNACK.
    pub connack_s: f64,
    /// SUBACK of the inbox subscription.
    pub suback_s: f64,
    /// First delivery.
    pub first_s: f64,
    /// Last delivery.
    pub last_s: f64,
    /// First to last delivery.
    pub replay_s: f64,
    /// Distinct messages per second from first to last delivery.
    pub per_s: f64,
    /// How the run ended: `complete`, `quiet` or `duration_limit`.
    pub end: &'static str,
}

impl Render for ReplayReport {
    fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "chatbench replay: {} ({}), {} of {} delivered, {} duplicates",
            self.user, self.end, self.delivered, self.expected, self.duplicates
        )?;
        writeln!(
            out,
            "  connack {:.3} s  suback {:.3} s  first {:.3} s  last {:.3} s (from connecting)",
            self.connack_s, self.suback_s, self.first_s, self.last_s
        )?;
        writeln!(
            out,
            "  first -> last delivery {:.3} s ({:.0} msg/s)",
            self.replay_s, self.per_s
        )
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs `chatbench replay`; `deadline` is the hard stop.
pub async fn run(args: &ReplayArgs, deadline: Instant) -> Result<ReplayReport> {
    let endpoint = endpoint(&args.store)?;
    let user = args.store.population().queued_user();
    let inbox = format!("user/{user}/inbox");
    let spec = ClientSpec {
        endpoint: endpoint.clone(),
        client_id: format!("{user}:replay"),
        credentials: Some((user.clone(), args.store.password.clone())),
        subscribe: vec![inbox.clone()],
        inflight: 100,
        max_payload: 1 << 20,
        nodelay: true,
        persistent: false,
    };
    eprintln!("connecting {user} to {endpoint}");
    let started = Instant::now();
    let Connected {
        client,
        mut eventloop,
    } = mqtt::start(&spec);
    client.subscribe(inbox.clone(), QoS::AtLeastOnce).await?;
    let since = |at: Option<Instant>| at.map_or(0.0, |t| (t - started).as_secs_f64());
    let (mut connack, mut suback, mut first, mut last) = (None, None, None, None);
    let mut ids = HashSet::new();
    let mut duplicates = 0u64;
    let quiet = Duration::from_secs(args.quiet);
    let end = loop {
        if ids.len() as u64 >= args.expect {
            break "complete";
        }
        let until = deadline.min(Instant::now() + quiet);
        let event = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Err(_) if Instant::now() >= deadline => break "duration_limit",
            Err(_) => break "quiet",
            Ok(event) => event.map_err(|e| anyhow!("{user}: {e}"))?,
        };
        let now = Instant::now();
        match event {
            Event::Incoming(Packet::ConnAck(_)) => connack = Some(now),
            Event::Incoming(Packet::SubAck(_)) => suback = Some(now),
            Event::Incoming(Packet::Publish(p)) if p.topic == inbox => {
                let id = serde_json::from_slice::<InboxId>(&p.payload)
                    .ok()
                    .and_then(|m| m.id);
                if id.is_some_and(|id| ids.insert(id)) {
                    first.get_or_insert(now);
                    last = Some(now);
                } else {
                    duplicates += 1;
                }
            }
            _ => {}
        }
    };
    mqtt::disconnect(&client, &mut eventloop).await;
    let replay_s = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    let delivered = ids.len() as u64;
    Ok(ReplayReport {
        mode: "replay",
        user,
        expected: args.expect,
        delivered,
        duplicates,
        connack_s: since(connack),
        suback_s: since(suback),
        first_s: since(first),
        last_s: since(last),
        replay_s,
        per_s: if replay_s > 0.0 {
            delivered as f64 / replay_s
        } else {
            0.0
        },
        end,
    })
}
