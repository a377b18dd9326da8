//! `chatbench reads`: `history` and `conversations` latency against chatd on a generated store
//! (see [`crate::generate`]). One request at a time, so each latency is the server's answer to
//! one request with nothing queued before it: publish on `chat/{me}/rpc` → reply on
//! `user/{me}/rpc`.

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use rumqttc::{Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admin::mqtt_text;
use crate::cli::{GeneratedArgs, ReadsArgs};
use crate::clock::now_ns;
use crate::control::{join_all, stop_signal};
use crate::mqtt::{self, ClientSpec, Endpoint};
use crate::population::Rng;
use crate::report::{write_latency, Render};
use crate::stats::{Latency, LatencySummary};

/// Longest wait for one reply.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A reply on `user/{me}/rpc`, as far as this mode reads it.
#[derive(Deserialize)]
struct Reply {
    rid: Option<String>,
    ok: Option<bool>,
    result: Option<ReplyResult>,
}

/// The lists a reply carries.
#[derive(Deserialize)]
struct ReplyResult {
    #[serde(default)]
    messages: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    conversations: Vec<serde::de::IgnoredAny>,
}

/// The figures of one kind of request.
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    /// Requests answered `ok`.
    pub ok: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Mean number of messages (history) or conversations per `ok` reply.
    pub mean_items: f64,
    /// Publish → reply, ms.
    pub latency_ms: LatencySummary,
}

/// What `chatbench reads` measured.
#[derive(Debug, Serialize)]
pub struct ReadsReport {
    /// Always `reads`.
    pub mode: &'static str,
    /// Server address.
    pub mqtt: String,
    /// Users connected.
    pub clients: usize,
    /// `limit` of every request.
    pub limit: u32,
    /// `history` requests.
    pub history: OpFigures,
    /// `conversations` requests.
    pub conversations: OpFigures,
}

impl Render for ReadsReport {
    fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "chatbench reads: {} users connected to {}, limit {}",
            self.clients, self.mqtt, self.limit
        )?;
        for (name, f) in [
            ("history", &self.history),
            ("conversations", &self.conversations),
        ] {
            writeln!(
                out,
                "  {name:<14} ok {:>6}  errors {:>4}  mean items {:.1}",
                f.ok, f.errors, f.mean_items
            )?;
            write_latency(out, name, &f.latency_ms)?;
        }
        Ok(())
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Running totals of one kind of request.
#[derive(Default)]
struct OpTally {
    ok: u64,
    errors: u64,
    items: u64,
    latency: Latency,
}

impl OpTally {
    fn figures(&self) -> OpFigures {
        OpFigures {
            ok: self.ok,
            errors: self.errors,
            mean_items: if self.ok == 0 {
                0.0
            } else {
                self.items as f64 / self.ok as f64
            },
            latency_ms: self.latency.summary(),
        }
    }
}

/// The MQTT address: `--mqtt`, else `listen.json` of `--chatd-data`, else the default.
pub fn endpoint(args: &GeneratedArgs) -> Result<Endpoint> {
    let text = mqtt_text(args.mqtt.as_deref(), args.chatd_data.as_deref())?;
    Endpoint::parse(&text.replace("0.0.0.0", "127.0.0.1"))
}

/// Runs `chatbench reads`; `deadline` is the hard stop.
pub async fn run(args: &ReadsArgs, deadline: Instant) -> Result<ReadsReport> {
    let endpoint = endpoint(&args.store)?;
    let pop = args.store.population();
    let mut rng = Rng::new(args.seed);
    let wanted = args.clients.min(pop.users) as usize;
    let mut chosen: Vec<u32> = Vec::with_capacity(wanted);
    while chosen.len() < wanted {
        let u = rng.below(u64::from(pop.users)) as u32;
        if !chosen.contains(&u) {
            chosen.push(u);
        }
    }
    let specs = chosen
        .iter()
        .map(|&u| {
            let user = pop.user(u);
            ClientSpec {
                endpoint: endpoint.clone(),
                client_id: format!("{user}:reads"),
                credentials: Some((user.clone(), args.store.password.clone())),
                subscribe: vec![format!("user/{user}/rpc")],
                inflight: 4,
                max_payload: 1 << 20,
                nodelay: true,
                persistent: false,
            }
        })
        .collect();
    eprintln!("connecting {wanted} users to {endpoint}");
    let conns = tokio::time::timeout_at(deadline, mqtt::connect_all(specs))
        .await
        .map_err(|_| anyhow!("duration limit reached while connecting"))??;
    let (stop_tx, stop_rx) = stop_signal();
    let (tx, mut replies) = mpsc::unbounded_channel::<(Bytes, u64)>();
    let mut clients = Vec::with_capacity(conns.len());
    let mut tasks = Vec::with_capacity(conns.len());
    for conn in conns {
        clients.push(conn.client.clone());
        let tx = tx.clone();
        tasks.push(tokio::spawn(mqtt::drive(conn, stop_rx.clone(), move |p| {
            if let Packet::Publish(p) = p {
                let _ = tx.send((p.payload, now_ns()));
            }
        })));
    }
    eprintln!("sending {} requests, one at a time", args.requests);
    let (mut history, mut conversations) = (OpTally::default(), OpTally::default());
    for i in 0..args.requests {
        let c = rng.below(chosen.len() as u64) as usize;
        let me = chosen[c];
        let rid = format!("r{i}");
        let (body, tally) = if i.is_multiple_of(2) {
            let peer = pop.peer(me, rng.below(u64::from(pop.peers)) as u32);
            let body = serde_json::json!({
                "rid": rid, "op": "history", "with": pop.user(peer), "limit": args.limit,
            });
            (body, &mut history)
        } else {
            let body = serde_json::json!({
                "rid": rid, "op": "conversations", "limit": args.limit.min(200),
            });
            (body, &mut conversations)
        };
        let sent = now_ns();
        clients[c]
            .publish(
                format!("chat/{}/rpc", pop.user(me)),
                QoS::AtLeastOnce,
                false,
                body.to_string().into_bytes(),
            )
            .await?;
        let until = deadline.min(Instant::now() + REPLY_TIMEOUT);
        loop {
            let Ok(Some((payload, at))) = tokio::time::timeout_at(until, replies.recv()).await
            else {
                let _ = stop_tx.send(true);
                bail!("no reply to request {rid} in time");
            };
            let Ok(reply) = serde_json::from_slice::<Reply>(&payload) else {
                continue;
            };
            if reply.rid.as_deref() != Some(rid.as_str()) {
                continue;
            }
            tally.latency.record_ns(at.saturating_sub(sent));
            match (reply.ok, reply.result) {
                (Some(true), Some(result)) => {
                    tally.ok += 1;
                    tally.items += (result.messages.len() + result.conversations.len()) as u64;
                }
                _ => tally.errors += 1,
            }
            break;
        }
    }
    let _ = stop_tx.send(true);
    join_all(tasks, std::time::Duration::from_secs(5)).await;
    Ok(ReadsReport {
        mode: "reads",
        mqtt: endpoint.to_string(),
        clients: chosen.len(),
        limit: args.limit,
        history: history.figures(),
        conversations: conversations.figures(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_counted_by_their_lists() {
        let reply: Reply = serde_json::from_slice(
            br#"{"rid":"r1","ok":true,"result":{"messages":[{"id":"a"},{"id":"b"}],"more":true}}"#,
        )
        .expect("parses");
        let result = reply.result.expect("result");
        assert_eq!((result.messages.len(), result.conversations.len()), (2, 0));
        let refused: Reply = serde_json::from_slice(
            br#"{"rid":"r2","ok":false,"error":{"code":"rate_limited","message":"m"}}"#,
        )
        .expect("parses");
        assert_eq!((refused.ok, refused.result.is_none()), (Some(false), true));
        let mut t = OpTally::default();
        assert_eq!(t.figures().mean_items, 0.0);
        t.ok = 2;
        t.items = 7;
        assert!((t.figures().mean_items - 3.5).abs() < 1e-9);
    }
}
