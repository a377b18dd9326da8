//! Crash safety under mixed load: group messages, 1:1 messages and read receipts flow while
//! chatd is SIGKILLed, several times. Afterwards every acknowledged message is in history
//! exactly once and reaches a member who was offline throughout, and every receipt the server
//! acknowledged (PUBACK) shows in the group history's per-member state.

use crate::support;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

/// Messages each sender tries per round.
const PER_ROUND: usize = 150;
/// Per-user write rates far above what the clients can reach.
const NO_USER_RATES: &str = "[limits]\nsends_per_sec = 100000\nsends_burst = 1000000\nrequests_per_sec = 100000\nrequests_burst = 1000000\n";
/// Kills per run, unless `CHATD_CRASH_ROUNDS` says otherwise (the benchmark's 20-round runs:
/// docs/benchmarks.md).
const ROUNDS: usize = 3;
/// Sends in flight per sender.
const WINDOW: usize = 16;

/// Builds a send payload from a cid and a text.
type Payload = Arc<dyn Fn(&str, &str) -> Value + Send + Sync>;

#[derive(Default)]
struct Record {
    /// (text, id) of every acked message.
    acked: Vec<(String, String)>,
    /// Ids whose read receipt got a PUBACK.
    receipts: Vec<String>,
    errors: Vec<Value>,
}

async fn login(s: &Server, client_id: &str, me: &str, topics: &[&str]) -> Option<Client> {
    let c = connect_opts(options(s.mqtt, client_id, me, "pw"))
        .await
        .ok()?;
    for t in topics {
        c.subscribe(&format!("user/{me}/{t}"), QoS::AtLeastOnce)
            .await;
    }
    Some(c)
}

/// Sends what was left unacked, then `PER_ROUND` new messages built by `payload`, until the
/// connection is lost; returns what is still unacked.
async fn run_sender(
    s: std::net::SocketAddr,
    me: String,
    round: usize,
    retry: Vec<(String, String)>,
    record: Arc<Mutex<Record>>,
    payload: Payload,
) -> Vec<(String, String)> {
    let mut pending: VecDeque<(String, String)> = retry.into();
    for n in 0..PER_ROUND {
        pending.push_back((format!("r{round}-{n}"), format!("{me} round {round} #{n}")));
    }
    let Ok(mut c) = connect_opts(options(s, &format!("{me}:load"), &me, "pw")).await else {
        return pending.into();
    };
    // Not waiting for the SUBACK (the kill may come first); the server handles the subscribe
    // before the publishes that follow it on this connection.
    if c.inner
        .subscribe(format!("user/{me}/ack"), QoS::AtLeastOnce)
        .await
        .is_err()
    {
        return pending.into();
    }
    let mut outstanding: HashMap<String, String> = HashMap::new();
    loop {
        while outstanding.len() < WINDOW {
            let Some((cid, text)) = pending.pop_front() else {
                break;
            };
            let body = payload(&cid, &text).to_string().into_bytes();
            let ok = c
                .inner
                .publish(format!("chat/{me}/send"), QoS::AtLeastOnce, false, body)
                .await
                .is_ok();
            outstanding.insert(cid, text);
            if !ok {
                break;
            }
        }
        if outstanding.is_empty() {
            break;
        }
        let Ok(p) = c
            .next_publish_within(&format!("user/{me}/ack"), Duration::from_secs(10))
            .await
        else {
            break;
        };
        let ack: Value = serde_json::from_slice(&p.payload).expect("ack JSON");
        let cid = ack["cid"].as_str().unwrap_or_default().to_string();
        let Some(text) = outstanding.remove(&cid) else {
            continue;
        };
        let mut r = record.lock().unwrap();
        match ack["id"].as_str() {
            Some(id) if ack["status"] == "sent" => r.acked.push((text, id.to_string())),
            _ => r.errors.push(ack),
        }
    }
    let mut left: Vec<(String, String)> = outstanding.into_iter().collect();
    left.sort();
    left.extend(pending);
    left
}

/// Reads the group messages arriving for `reader` and acknowledges them with `read` receipts
/// (whatever arrived together goes in one receipt), recording the ids whose receipt publish
/// was acknowledged; stops when the server goes.
async fn run_reader(s: std::net::SocketAddr, record: Arc<Mutex<Record>>) {
    let Some(mut c) = login_addr(s, "reader:load", "reader").await else {
        return;
    };
    let group_message = |p: &rumqttc::Publish| -> Option<String> {
        let m: Value = serde_json::from_slice(&p.payload).expect("inbox JSON");
        (!m["group"].is_null() && m["type"] == "text").then(|| m["id"].as_str().unwrap().into())
    };
    loop {
        let Ok(first) = c
            .next_publish_within("user/reader/inbox", Duration::from_secs(10))
            .await
        else {
            return;
        };
        let mut ids: Vec<String> = group_message(&first).into_iter().collect();
        while ids.len() < 100 {
            match c
                .next_publish_within("user/reader/inbox", Duration::from_millis(20))
                .await
            {
                Ok(p) => ids.extend(group_message(&p)),
                Err(_) => break,
            }
        }
        if ids.is_empty() {
            continue;
        }
        let receipt = json!({"ids": ids, "status": "read"}).to_string();
        if c.publish_wait("chat/reader/receipt", receipt.into_bytes())
            .await
            .is_err()
        {
            return;
        }
        record.lock().unwrap().receipts.extend(ids);
    }
}

async fn login_addr(s: std::net::SocketAddr, client_id: &str, me: &str) -> Option<Client> {
    let c = connect_opts(options(s, client_id, me, "pw")).await.ok()?;
    c.inner
        .subscribe(format!("user/{me}/inbox"), QoS::AtLeastOnce)
        .await
        .ok()?;
    Some(c)
}

/// Every message of a conversation as `me` sees it, oldest first.
async fn full_history(c: &mut Client, me: &str, target: Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = json!({"rid": unique("h"), "op": "history", "limit": 100});
        for (k, v) in target.as_object().unwrap() {
            req[k] = v.clone();
        }
        if let Some(b) = &before {
            req["before"] = json!(b);
        }
        let r = c.rpc(me, req.clone()).await;
        assert_eq!(r["ok"], true, "{req} -> {r}");
        let page = r["result"]["messages"].as_array().unwrap().clone();
        if let Some(first) = page.first() {
            before = Some(first["id"].as_str().unwrap().to_string());
        }
        let more = r["result"]["more"] == true && !page.is_empty();
        out.splice(0..0, page);
        if !more {
            return out;
        }
    }
}

/// Checks that `history` holds every acked (text, id) exactly once and nothing twice.
fn check_history(what: &str, history: &[Value], acked: &[(String, String)]) {
    let mut by_text: HashMap<String, String> = HashMap::new();
    let mut last = String::new();
    for m in history.iter().filter(|m| m["type"] == "text") {
        let id = m["id"].as_str().unwrap().to_string();
        assert!(id > last, "{what}: history out of order at {id}");
        last = id.clone();
        let text = m["text"].as_str().unwrap().to_string();
        if let Some(other) = by_text.insert(text.clone(), id.clone()) {
            panic!("{what}: {text:?} stored twice ({other}, {id})");
        }
    }
    for (text, id) in acked {
        assert_eq!(
            by_text.get(text),
            Some(id),
            "{what}: acked {text:?} ({id}) not in history as acked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_receipts_and_direct_messages_survive_kill_9_on_fjall() {
    survive_kill_9("fjall").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_receipts_and_direct_messages_survive_kill_9_on_sled() {
    survive_kill_9("sled").await;
}

/// The number of kills: `CHATD_CRASH_ROUNDS`, else [`ROUNDS`].
fn rounds() -> usize {
    std::env::var("CHATD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}

async fn survive_kill_9(engine: &str) {
    let started = Instant::now();
    // Each client writes as fast as it can: the per-user rates are not under test.
    let mut s = Server::start_on(engine, NO_USER_RATES);
    assert!(
        s.data_dir().join(engine_dir(engine)).is_dir(),
        "not running on {engine}"
    );
    for u in ["gsender", "dsender", "reader", "offline"] {
        s.add_user(u, "pw");
    }
    let mut admin = login(&s, "gsender:setup", "gsender", &["rpc"])
        .await
        .unwrap();
    let r = admin
        .rpc(
            "gsender",
            json!({"rid": "c", "op": "group.create", "name": "crash",
                   "members": ["dsender", "reader", "offline"]}),
        )
        .await;
    let group = r["result"]["group"].as_str().unwrap().to_string();
    admin.disconnect().await;

    let record = Arc::new(Mutex::new(Record::default()));
    let group_payload: Payload = {
        let g = group.clone();
        Arc::new(move |cid, text| json!({"cid": cid, "group": g, "type": "text", "text": text}))
    };
    let direct_payload: Payload =
        Arc::new(|cid, text| json!({"cid": cid, "to": "offline", "type": "text", "text": text}));
    let mut retries = [Vec::new(), Vec::new()];
    let mut kills_mid_load = 0;
    let rounds = rounds();
    for round in 0..rounds {
        let before = record.lock().unwrap().acked.len();
        let senders = [
            ("gsender", group_payload.clone()),
            ("dsender", direct_payload.clone()),
        ];
        let mut tasks = Vec::new();
        for (i, (me, payload)) in senders.into_iter().enumerate() {
            tasks.push(tokio::spawn(run_sender(
                s.mqtt,
                me.to_string(),
                round,
                std::mem::take(&mut retries[i]),
                record.clone(),
                payload,
            )));
        }
        let reader = tokio::spawn(run_reader(s.mqtt, record.clone()));
        let round_start = Instant::now();
        loop {
            let (group_done, direct_done) = {
                let r = record.lock().unwrap();
                let new = &r.acked[before..];
                let group = new
                    .iter()
                    .filter(|(t, _)| t.starts_with("gsender "))
                    .count();
                (group, new.len() - group)
            };
            let done = group_done.min(direct_done);
            let elapsed = round_start.elapsed();
            if done >= PER_ROUND / 3
                || (elapsed > Duration::from_secs(8) && done > 0)
                || elapsed > Duration::from_secs(30)
                || tasks.iter().all(|t| t.is_finished())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !tasks.iter().all(|t| t.is_finished()) {
            kills_mid_load += 1;
        }
        s.kill9();
        for (i, t) in tasks.into_iter().enumerate() {
            retries[i] = t.await.expect("sender panicked");
        }
        reader.await.expect("reader panicked");
        s.restart();
    }
    assert!(
        kills_mid_load >= rounds.min(2),
        "only {kills_mid_load} of {rounds} kills hit the load"
    );

    let (acked, receipts, errors) = {
        let r = record.lock().unwrap();
        (r.acked.clone(), r.receipts.clone(), r.errors.clone())
    };
    assert!(errors.is_empty(), "error acks: {errors:?}");
    let group_acked: Vec<_> = acked
        .iter()
        .filter(|(t, _)| t.starts_with("gsender "))
        .cloned()
        .collect();
    let direct_acked: Vec<_> = acked
        .iter()
        .filter(|(t, _)| t.starts_with("dsender "))
        .cloned()
        .collect();
    assert!(
        group_acked.len() >= 30 && direct_acked.len() >= 30,
        "too little acked to mean much: {} group, {} direct, {} receipts",
        group_acked.len(),
        direct_acked.len(),
        receipts.len()
    );
    let ids: BTreeSet<&str> = acked.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "an id was acked twice");

    // History, read by the member who was offline throughout.
    let mut off = login(&s, "offline:check", "offline", &["rpc"])
        .await
        .unwrap();
    let group_history = full_history(&mut off, "offline", json!({"group": group})).await;
    check_history("group", &group_history, &group_acked);
    let direct_history = full_history(&mut off, "offline", json!({"with": "dsender"})).await;
    check_history("1:1", &direct_history, &direct_acked);

    // Every acknowledged receipt shows in the sender's view of the group history.
    let mut gs = login(&s, "gsender:check", "gsender", &["rpc"])
        .await
        .unwrap();
    let seen_by_sender = full_history(&mut gs, "gsender", json!({"group": group})).await;
    let read: HashMap<&str, &Value> = seen_by_sender
        .iter()
        .filter(|m| m["type"] == "text")
        .map(|m| (m["id"].as_str().unwrap(), &m["receipts"]["read_by"]))
        .collect();
    for id in &receipts {
        assert_eq!(
            read.get(id.as_str()).copied(),
            Some(&json!(["reader"])),
            "acknowledged receipt for {id} lost"
        );
    }

    // Delivery: the offline member gets every acked message, group and 1:1.
    off.subscribe("user/offline/inbox", QoS::AtLeastOnce).await;
    let mut missing: BTreeSet<&str> = ids.clone();
    while !missing.is_empty() {
        let m = off.next_on("user/offline/inbox").await;
        if let Some(id) = m["id"].as_str() {
            missing.remove(id);
        }
    }
    eprintln!(
        "mixed crash test on {engine}, {rounds} kills ({kills_mid_load} mid-load): {} group + {} \
         direct acked, 0 lost, 0 duplicated, {} receipts, {:?}",
        group_acked.len(),
        direct_acked.len(),
        receipts.len(),
        started.elapsed()
    );
}

/// The directory an engine keeps its store in, inside the data directory.
fn engine_dir(engine: &str) -> &'static str {
    match engine {
        "sled" => "store",
        _ => "fjall",
    }
}
