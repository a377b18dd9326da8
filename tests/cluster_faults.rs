//! Cluster mode (issue 16) when the database fails: PostgreSQL restarted as a crash would
//! (`-m immediate`), and the primary killed with its synchronous standby promoted. Sends in
//! flight get a retryable error, none is acknowledged without being committed, the nodes
//! reconnect by themselves, and every acknowledged message is delivered once.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
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
