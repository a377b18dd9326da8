//! Crash safety: chatd is SIGKILLed in the middle of a sending load, several times. Afterwards
//! every acknowledged message is in history exactly once and is delivered to its recipient, and
//! nothing (acknowledged or not) exists twice.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

const SENDERS: usize = 4;
/// Per-user write rates far above what the senders can reach.
const NO_USER_RATES: &str = "[limits]\nsends_per_sec = 100000\nsends_burst = 1000000\nrequests_per_sec = 100000\nrequests_burst = 1000000\n";
const RECIPIENTS: usize = 2;
/// Messages each sender tries to send per round (a round ends with a kill).
const PER_ROUND: usize = 250;
const ROUNDS: usize = 3;
/// Sends a sender keeps in flight without an ack.
const WINDOW: usize = 32;

#[derive(Clone, Debug)]
struct Acked {
    cid: String,
    id: String,
    text: String,
    to: String,
}

#[derive(Default)]
struct Record {
    acked: Vec<Acked>,
    errors: Vec<Value>,
}

fn sender_name(i: usize) -> String {
    format!("sender{i}")
}

fn recipient_of(i: usize) -> String {
    format!("rcpt{}", i % RECIPIENTS)
}

/// A 3.1.1 or 5.0 connection of a sender or recipient.
enum Sender {
    V4(Box<Client>),
    V5(Box<Client5>),
}

impl Sender {
    /// Connects as `me` (client id `me`) and subscribes to `user/{me}/ack` and `user/{me}/inbox`;
    /// `None` when the server is gone (the kill may come before the CONNACK or the SUBACK).
    async fn connect(mqtt: std::net::SocketAddr, me: &str, v5: bool) -> Option<Sender> {
        let ack = format!("user/{me}/ack");
        if v5 {
            let c = connect5_opts(options5(mqtt, me, me, "pw")).await.ok()?;
            let codes = c.try_subscribe(&ack, QoS5::AtLeastOnce).await.ok()?;
            assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS5::AtLeastOnce)]);
            Some(Sender::V5(Box::new(c)))
        } else {
            let c = connect_opts(options(mqtt, me, me, "pw")).await.ok()?;
            let codes = c.try_subscribe(&ack, QoS::AtLeastOnce).await.ok()?;
            assert_eq!(
                codes,
                vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
            );
            Some(Sender::V4(Box::new(c)))
        }
    }

    /// Publishes at QoS 1 without waiting; false when the connection is gone.
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> bool {
        match self {
            Sender::V4(c) => c
                .inner
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_ok(),
            Sender::V5(c) => c
                .inner
                .publish(topic, QoS5::AtLeastOnce, false, payload)
                .await
                .is_ok(),
        }
    }

    /// The next publish on `topic` as JSON; `None` when the connection closed or nothing came.
    async fn next(&mut self, topic: &str) -> Option<Value> {
        let payload = match self {
            Sender::V4(c) => c.next_publish_within(topic, WAIT).await.ok()?.payload,
            Sender::V5(c) => c.next_publish_within(topic, WAIT).await.ok()?.payload,
        };
        Some(serde_json::from_slice(&payload).expect("payload is JSON"))
    }
}

/// One sender's run against the current server: first retries what it sent before without an
/// ack (same cid, same text), then sends `PER_ROUND` new messages, `WINDOW` at a time. Stops as
/// soon as the connection is lost. Returns the cids still unacknowledged.
async fn run_sender(
    mqtt: std::net::SocketAddr,
    i: usize,
    round: usize,
    retry: Vec<(String, String)>,
    record: Arc<Mutex<Record>>,
) -> Vec<(String, String)> {
    let me = sender_name(i);
    let to = recipient_of(i);
    let mut pending: VecDeque<(String, String)> = retry.into();
    for n in 0..PER_ROUND {
        let cid = format!("r{round}-{n}");
        let text = format!("{me} round {round} message {n}");
        pending.push_back((cid, text));
    }
    // Even senders speak MQTT 3.1.1, odd ones MQTT 5.
    let mut client = match Sender::connect(mqtt, &me, i % 2 == 1).await {
        Some(c) => c,
        None => return pending.into_iter().collect(), // killed before we got in
    };
    let ack_topic = format!("user/{me}/ack");
    let send_topic = format!("chat/{me}/send");
    let mut outstanding: HashMap<String, String> = HashMap::new();
    loop {
        while outstanding.len() < WINDOW {
            let Some((cid, text)) = pending.pop_front() else {
                break;
            };
            let payload = json!({"cid": cid, "to": to, "type": "text", "text": text});
            let sent = client
                .publish(&send_topic, payload.to_string().into_bytes())
                .await;
            outstanding.insert(cid.clone(), text.clone());
            if !sent {
                break;
            }
        }
        if outstanding.is_empty() {
            break;
        }
        let Some(ack) = client.next(&ack_topic).await else {
            break; // connection lost (the kill) or nothing more
        };
        let cid = ack["cid"].as_str().unwrap_or_default().to_string();
        let Some(text) = outstanding.remove(&cid) else {
            record
                .lock()
                .unwrap()
                .errors
                .push(json!({"unexpected ack": ack}));
            continue;
        };
        if ack["status"] == "sent" {
            record.lock().unwrap().acked.push(Acked {
                cid,
                id: ack["id"].as_str().expect("ack id").to_string(),
                text,
                to: to.clone(),
            });
        } else {
            record.lock().unwrap().errors.push(ack);
        }
    }
    // Unacked: in flight at the kill, or never sent.
    let mut left: Vec<(String, String)> = outstanding.into_iter().collect();
    left.sort();
    left.extend(pending);
    left
}

/// All messages of `me`'s conversation with `with`, oldest first, paging backwards.
async fn full_history(c: &mut Client, me: &str, with: &str) -> Vec<Value> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = json!({"rid": unique("h"), "op": "history", "with": with, "limit": 100});
        if let Some(b) = &before {
            req["before"] = json!(b);
        }
        let r = c.rpc(me, req.clone()).await;
        assert_eq!(r["ok"], true, "{req} → {r}");
        let msgs = r["result"]["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .clone();
        let more = r["result"]["more"] == true;
        if let Some(first) = msgs.first() {
            before = Some(first["id"].as_str().unwrap().to_string());
        }
        let empty = msgs.is_empty();
        pages.push(msgs);
        if !more || empty {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9_under_load() {
    let started = Instant::now();
    // Each sender sends as fast as its window allows: the per-user rates are not under test.
    let mut s = Server::start_with(NO_USER_RATES);
    for i in 0..SENDERS {
        s.add_user(&sender_name(i), "pw");
    }
    for r in 0..RECIPIENTS {
        s.add_user(&format!("rcpt{r}"), "pw");
    }
    let record = Arc::new(Mutex::new(Record::default()));
    let mut retries: Vec<Vec<(String, String)>> = vec![Vec::new(); SENDERS];
    let mut kills_mid_load = 0;

    for round in 0..ROUNDS {
        let before = record.lock().unwrap().acked.len();
        let mut tasks = Vec::new();
        for (i, retry) in retries.iter_mut().enumerate() {
            let retry = std::mem::take(retry);
            tasks.push(tokio::spawn(run_sender(
                s.mqtt,
                i,
                round,
                retry,
                record.clone(),
            )));
        }
        // Kill once a good part of the round is acknowledged (or after a while on a slow machine).
        let round_start = Instant::now();
        let target = SENDERS * PER_ROUND * 2 / 5;
        loop {
            let done = record.lock().unwrap().acked.len() - before;
            let elapsed = round_start.elapsed();
            if done >= target
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
        let acked_at_kill = record.lock().unwrap().acked.len() - before;
        for (i, t) in tasks.into_iter().enumerate() {
            retries[i] = t.await.expect("sender task panicked");
        }
        eprintln!(
            "round {round}: killed after {:?} with {acked_at_kill} acks this round, {} unacked left",
            round_start.elapsed(),
            retries.iter().map(|r| r.len()).sum::<usize>()
        );
        s.restart();
    }
    assert!(
        kills_mid_load >= 2,
        "only {kills_mid_load} of {ROUNDS} kills happened while senders were still sending"
    );

    let (acked, errors) = {
        let r = record.lock().unwrap();
        (r.acked.clone(), r.errors.clone())
    };
    assert!(errors.is_empty(), "error acks during the load: {errors:?}");
    assert!(
        acked.len() >= 100,
        "too few messages acked ({}) for the test to mean much",
        acked.len()
    );
    // Acked ids are unique, and a cid retried after a crash kept its first id.
    let mut by_cid: BTreeMap<(String, String), &Acked> = BTreeMap::new();
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for a in &acked {
        assert!(ids.insert(&a.id), "id {} acked twice", a.id);
        let key = (a.text.clone(), a.cid.clone());
        assert!(
            by_cid.insert(key, a).is_none(),
            "cid {} acked twice ({})",
            a.cid,
            a.text
        );
    }

    // History: every acked message exactly once, nothing twice.
    for i in 0..SENDERS {
        let me = sender_name(i);
        let to = recipient_of(i);
        let mut c = connect(s.mqtt, &format!("{me}:check"), &me, "pw").await;
        c.subscribe(&format!("user/{me}/rpc"), QoS::AtLeastOnce)
            .await;
        let hist = full_history(&mut c, &me, &to).await;
        let mut texts: HashMap<String, String> = HashMap::new(); // text → id
        let mut seen_ids = BTreeSet::new();
        let mut last = String::new();
        for m in &hist {
            let id = m["id"].as_str().unwrap().to_string();
            let text = m["text"].as_str().unwrap().to_string();
            assert!(id > last, "history of {me} not in id order at {id}");
            last = id.clone();
            assert_eq!(m["from"], me.as_str(), "{m}");
            assert_eq!(m["to"], to.as_str(), "{m}");
            assert!(seen_ids.insert(id.clone()), "id {id} twice in history");
            if let Some(other) = texts.insert(text.clone(), id.clone()) {
                panic!("{text:?} stored twice: {other} and {id}");
            }
        }
        let mine: Vec<&Acked> = acked
            .iter()
            .filter(|a| a.text.starts_with(&format!("{me} ")))
            .collect();
        for a in &mine {
            match texts.get(&a.text) {
                Some(id) => assert_eq!(
                    id, &a.id,
                    "{:?} acked as {} but stored as {id}",
                    a.text, a.id
                ),
                None => panic!("acked message {:?} ({}) missing from history", a.text, a.id),
            }
        }
        eprintln!("{me}: {} acked, {} in history", mine.len(), hist.len());
        c.disconnect().await;
    }

    // Delivery: each recipient gets every acked message (de-duplicated by id).
    for r in 0..RECIPIENTS {
        let me = format!("rcpt{r}");
        let want: HashMap<&str, &Acked> = acked
            .iter()
            .filter(|a| a.to == me)
            .map(|a| (a.id.as_str(), a))
            .collect();
        let inbox = format!("user/{me}/inbox");
        let mut c = if r % 2 == 1 {
            let c = connect5(s.mqtt, &me, &me, "pw").await;
            c.subscribe(&inbox, QoS5::AtLeastOnce).await;
            Sender::V5(Box::new(c))
        } else {
            let c = connect(s.mqtt, &me, &me, "pw").await;
            c.subscribe(&inbox, QoS::AtLeastOnce).await;
            Sender::V4(Box::new(c))
        };
        let mut got: BTreeSet<String> = BTreeSet::new();
        let mut texts: HashMap<String, String> = HashMap::new();
        while want.keys().any(|id| !got.contains(*id)) {
            let m = c.next(&inbox).await.unwrap_or_else(|| {
                panic!(
                    "{me}: {} of {} acked messages delivered, then nothing for {WAIT:?}",
                    want.keys().filter(|id| got.contains(**id)).count(),
                    want.len()
                )
            });
            let id = m["id"].as_str().unwrap().to_string();
            let text = m["text"].as_str().unwrap().to_string();
            if let Some(a) = want.get(id.as_str()) {
                assert_eq!(a.text, text, "delivered text differs for {id}");
            }
            if let Some(other) = texts.get(&text) {
                assert_eq!(other, &id, "{text:?} delivered under two ids");
            }
            texts.insert(text, id.clone());
            got.insert(id);
        }
        eprintln!("{me}: {} delivered, {} acked for it", got.len(), want.len());
    }
    eprintln!("crash test took {:?}", started.elapsed());
}
