//! Cluster mode (issue 16) when something fails: PostgreSQL restarted as a crash would
//! (`-m immediate`), the primary killed with its synchronous standby promoted, and a node
//! killed under the load of 200 clients. Sends in flight get a retryable error (or no answer,
//! and are sent again elsewhere), none is acknowledged without being committed, nodes and
//! clients reconnect, and every acknowledged message is delivered.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster_kit::*;
use support::*;

/// How many messages alice sends; the fault comes after the first [`FAULT_AT`].
const MESSAGES: usize = 120;
const FAULT_AT: usize = 40;

/// What alice saw: the id each message was finally acknowledged with, and the error codes
/// of the attempts that failed.
struct Sent {
    ids: Vec<String>,
    errors: BTreeMap<String, usize>,
}

/// Alice (on `node`) sends [`MESSAGES`] messages to bob, one at a time, as a careful client
/// does: a send that fails is sent again with the same `cid` until it is acknowledged. `fault`
/// runs (on a thread of its own) once [`FAULT_AT`] are acknowledged.
async fn send_through(node: &Server, fault: impl FnOnce() + Send + 'static) -> Sent {
    let mut alice = device(node, "alice", "phone").await;
    let mut fault = Some(fault);
    let mut injected = None;
    let mut sent = Sent {
        ids: Vec::with_capacity(MESSAGES),
        errors: BTreeMap::new(),
    };
    for i in 0..MESSAGES {
        if i == FAULT_AT {
            if let Some(fault) = fault.take() {
                injected = Some(std::thread::spawn(fault));
            }
        }
        let cid = format!("c{i}");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ack: Value = alice.send("alice", "bob", &cid, &format!("m{i}")).await;
            if ack["status"] == "sent" {
                sent.ids
                    .push(ack["id"].as_str().unwrap_or_default().to_string());
                break;
            }
            let code = ack["error"]["code"].as_str().unwrap_or("?").to_string();
            *sent.errors.entry(code).or_default() += 1;
            assert!(
                Instant::now() < deadline,
                "message {i} never acknowledged: {ack}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(injected) = injected {
        tokio::task::block_in_place(|| injected.join()).expect("the fault's thread");
    }
    sent
}

/// Bob, connecting to `node` afterwards, gets exactly the acknowledged messages, in order.
async fn bob_gets_exactly(node: &Server, sent: &Sent) {
    let mut bob = device(node, "bob", "phone").await;
    let got = inbox(&mut bob, "bob", MESSAGES).await;
    let want: Vec<(String, String)> = sent
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("m{i}")))
        .collect();
    assert_eq!(got, want, "every acknowledged message, once, in order");
    bob.nothing_on("user/bob/inbox", Duration::from_secs(1))
        .await;
}

/// The errors alice saw are all retryable, and there were some: the fault was felt.
fn only_retryable(sent: &Sent) {
    assert!(!sent.errors.is_empty(), "no send ever failed");
    let retryable = ["unavailable"];
    for code in sent.errors.keys() {
        assert!(
            retryable.contains(&code.as_str()),
            "errors seen: {:?}",
            sent.errors
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_loses_nothing_acknowledged() {
    let mut cluster = Cluster::with_own_server();
    let (one, two) = (cluster.node(1), cluster.node(2));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    // The server stops when the test binary exits, not when dropped: it may move.
    let server = cluster.own.take().expect("a server of the test's own");
    let sent = send_through(&one, move || {
        server.crash();
        std::thread::sleep(Duration::from_secs(2));
        server.start_again();
    })
    .await;
    only_retryable(&sent);
    bob_gets_exactly(&two, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_has_every_acknowledged_message() {
    let mut cluster = Cluster::with_standby();
    let (one, two) = (cluster.node(1), cluster.node(2));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let primary = cluster.own.take().expect("the primary");
    let standby = cluster.standby.take().expect("the standby");
    let sent = send_through(&one, move || {
        // The primary's machine is lost; an operator (or a failover manager) promotes the
        // synchronous standby a moment later. The nodes find it through the URL.
        primary.crash();
        std::thread::sleep(Duration::from_secs(1));
        standby.promote();
    })
    .await;
    only_retryable(&sent);
    bob_gets_exactly(&two, &sent).await;
}

/// Connects `client_id` of `user` to the first of `nodes` (from `start`, round) that takes
/// it, subscribed to `topics`; the index of that node and the client.
async fn connect_any(
    nodes: &[std::net::SocketAddr],
    start: usize,
    client_id: &str,
    user: &str,
    topics: &[String],
) -> (usize, Client) {
    let deadline = Instant::now() + WAIT;
    let mut n = start;
    loop {
        let addr = nodes[n % nodes.len()];
        if let Ok(c) = connect_opts(options(addr, client_id, user, &format!("{user}-pw"))).await {
            let mut ok = true;
            for topic in topics {
                if c.try_subscribe(topic, rumqttc::QoS::AtLeastOnce)
                    .await
                    .is_err()
                {
                    ok = false;
                    break;
                }
            }
            if ok {
                return (n % nodes.len(), c);
            }
        }
        assert!(Instant::now() < deadline, "{client_id} found no node");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When node 2 was killed, and how long after it each sender that lost its node had a send
/// acknowledged again (printed by the test: a figure for `docs/benchmarks.md`, not a check).
#[derive(Default)]
struct Recovery {
    killed: std::sync::OnceLock<Instant>,
    after: std::sync::Mutex<Vec<Duration>>,
}

impl Recovery {
    fn served_again(&self) {
        if let Some(killed) = self.killed.get() {
            let mut after = self.after.lock().unwrap_or_else(|p| p.into_inner());
            after.push(killed.elapsed());
        }
    }

    fn report(&self) {
        let mut after = self.after.lock().unwrap_or_else(|p| p.into_inner()).clone();
        after.sort();
        if let (Some(first), Some(last)) = (after.first(), after.last()) {
            eprintln!(
                "senders served again after the kill: n {} first {:?} median {:?} last {:?}",
                after.len(),
                first,
                after[after.len() / 2],
                last
            );
        }
    }
}

/// Sender `i` sends `n` messages to its receiver, one at a time; on a lost connection it
/// reconnects to another node and sends the unacknowledged one again with its `cid`. The ids
/// of the acks, in order.
async fn sender(
    nodes: Arc<Vec<std::net::SocketAddr>>,
    i: usize,
    n: usize,
    acked: Arc<AtomicUsize>,
    moved: Arc<AtomicUsize>,
    recovery: Arc<Recovery>,
) -> Vec<String> {
    let (me, to) = (format!("s{i:03}"), format!("r{i:03}"));
    let topics = [format!("user/{me}/ack")];
    let (mut at, mut c) = connect_any(&nodes, i, &format!("{me}:phone"), &me, &topics).await;
    let mut ids = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut lost = false;
    for k in 0..n {
        let cid = format!("{me}-{k}");
        let msg = json!({"cid": cid, "to": to, "type": "text", "text": format!("{me}-{k}")});
        loop {
            assert!(Instant::now() < deadline, "{me} is stuck at message {k}");
            let published = c
                .inner
                .publish(
                    format!("chat/{me}/send"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    msg.to_string(),
                )
                .await;
            let ack = match published {
                Ok(()) => {
                    c.next_where_within(&topics[0], "cid", &json!(cid), Duration::from_secs(5))
                        .await
                }
                Err(e) => Err(e.to_string()),
            };
            match ack {
                Ok(ack) if ack["status"] == "sent" => {
                    if std::mem::take(&mut lost) {
                        recovery.served_again();
                    }
                    ids.push(ack["id"].as_str().unwrap_or_default().to_string());
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(ack) => {
                    let code = &ack["error"]["code"];
                    assert_eq!(code, "unavailable", "{me}: {ack}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => {
                    // Its node is gone (or slow): another one.
                    moved.fetch_add(1, Ordering::Relaxed);
                    lost = true;
                    (at, c) =
                        connect_any(&nodes, at + 1, &format!("{me}:phone"), &me, &topics).await;
                }
            }
        }
    }
    ids
}

/// Receiver `i` collects what arrives in its inbox (ids with texts, redeliveries included)
/// until it has every id in `want` (filled in by the test once its sender is done) or
/// `deadline`; reconnects to another node when its connection is lost.
async fn receiver(
    nodes: Arc<Vec<std::net::SocketAddr>>,
    i: usize,
    want: Arc<tokio::sync::OnceCell<Vec<String>>>,
    moved: Arc<AtomicUsize>,
    node_of: Arc<Vec<AtomicUsize>>,
) -> Vec<(String, String)> {
    let me = format!("r{i:03}");
    let topics = [format!("user/{me}/inbox")];
    let (mut at, mut c) = connect_any(&nodes, i + 1, &format!("{me}:phone"), &me, &topics).await;
    node_of[i].store(at, Ordering::Relaxed);
    let mut got: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut missing = Vec::new();
        if let Some(want) = want.get() {
            let have: HashSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
            missing = want
                .iter()
                .filter(|id| !have.contains(id.as_str()))
                .collect();
            if missing.is_empty() {
                return got;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{me} (on node index {at}) is missing {missing:?}; got {got:?}"
        );
        match c
            .next_publish_within(&topics[0], Duration::from_millis(500))
            .await
        {
            Ok(p) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                got.push((
                    v["id"].as_str().unwrap_or_default().to_string(),
                    v["text"].as_str().unwrap_or_default().to_string(),
                ));
            }
            Err(_) if c.close_reason().await.is_some() => {
                moved.fetch_add(1, Ordering::Relaxed);
                (at, c) = connect_any(&nodes, at + 1, &format!("{me}:phone"), &me, &topics).await;
                node_of[i].store(at, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_acknowledged() {
    const PAIRS: usize = 100;
    const EACH: usize = 20;
    let cluster = Cluster::new();
    let one = cluster.node(1);
    let mut two = cluster.node(2);
    let three = cluster.node(3);
    let nodes = Arc::new(vec![one.mqtt, two.mqtt, three.mqtt]);
    for i in 0..PAIRS {
        for who in ["s", "r"] {
            let user = format!("{who}{i:03}");
            one.add_user(&user, &format!("{user}-pw"));
        }
    }
    one.add_user("watcher", "watcher-pw");
    one.add_user("idle", "idle-pw");
    // A user whose only device is on node 2, and a watcher on node 1.
    let _idle = device(&two, "idle", "phone").await;
    let mut watcher = device(&one, "watcher", "phone").await;
    watcher
        .subscribe("presence/idle", rumqttc::QoS::AtLeastOnce)
        .await;
    assert_eq!(presence_of(&mut watcher, "idle").await, "online");

    let acked = Arc::new(AtomicUsize::new(0));
    let moved = Arc::new(AtomicUsize::new(0));
    let recovery = Arc::new(Recovery::default());
    let mut receivers = Vec::new();
    let mut wants = Vec::new();
    // Where each receiver is connected (an index into `nodes`); a slow start may have sent
    // some of them past node 2 already.
    let node_of: Arc<Vec<AtomicUsize>> =
        Arc::new((0..PAIRS).map(|_| AtomicUsize::new(usize::MAX)).collect());
    for i in 0..PAIRS {
        let want = Arc::new(tokio::sync::OnceCell::new());
        wants.push(want.clone());
        receivers.push(tokio::spawn(receiver(
            nodes.clone(),
            i,
            want,
            moved.clone(),
            node_of.clone(),
        )));
    }
    let senders: Vec<_> = (0..PAIRS)
        .map(|i| {
            let (acked, moved, recovery) = (acked.clone(), moved.clone(), recovery.clone());
            tokio::spawn(sender(nodes.clone(), i, EACH, acked, moved, recovery))
        })
        .collect();
    // A third of the messages acknowledged: node 2 is lost, with a third of the clients.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < PAIRS * EACH / 3 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_two = node_of
        .iter()
        .filter(|n| n.load(Ordering::Relaxed) == 1)
        .count();
    two.kill9();
    let killed = Instant::now();
    let _ = recovery.killed.set(killed);
    assert_eq!(presence_of(&mut watcher, "idle").await, "offline");
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "offline {:?} after the kill (ttl 5 s)",
        killed.elapsed()
    );
    let mut sent = Vec::new();
    for (i, s) in senders.into_iter().enumerate() {
        let ids = s.await.expect("sender");
        assert_eq!(ids.len(), EACH);
        let _ = wants[i].set(ids.clone());
        sent.push(ids);
    }
    recovery.report();
    for (i, r) in receivers.into_iter().enumerate() {
        let got = r.await.expect("receiver");
        // Redeliveries keep their id and text.
        let mut first: Vec<&str> = Vec::new();
        let mut texts: std::collections::HashMap<&str, &str> = Default::default();
        for (id, text) in &got {
            match texts.insert(id.as_str(), text.as_str()) {
                None => first.push(id.as_str()),
                Some(before) => assert_eq!(before, text, "r{i:03}: {id} changed"),
            }
        }
        let want: Vec<&str> = sent[i].iter().map(String::as_str).collect();
        let mut arrived = first.clone();
        arrived.sort_unstable();
        let mut acknowledged = want.clone();
        acknowledged.sort_unstable();
        assert_eq!(arrived, acknowledged, "r{i:03}: every acknowledged message");
        // In order, except what node 2 committed in its last moments without telling anyone
        // (its wake-up died with it): that is found when the others take node 2 for dead.
        let survivors = |ids: &[&str]| -> Vec<String> {
            ids.iter()
                .filter(|id| id.split('-').nth(1) != Some("00002"))
                .map(|id| id.to_string())
                .collect()
        };
        assert_eq!(survivors(&first), survivors(&want), "r{i:03}: in order");
        for (k, id) in want.iter().enumerate() {
            assert_eq!(texts[id], format!("s{i:03}-{k}"));
        }
    }
    // Node 2's clients moved to the others: every receiver connected there at the kill (how
    // many depends on how fast the nodes took the first 200 logins), besides the senders.
    assert!(on_two > 0, "no receiver was on node 2");
    assert!(
        moved.load(Ordering::Relaxed) >= on_two,
        "only {} clients moved; {on_two} receivers were on node 2",
        moved.load(Ordering::Relaxed)
    );
}
