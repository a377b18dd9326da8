//! Cluster mode (issue 16), the work every node shares: groups whose members are on every
//! node, group fan-outs finished by another node when theirs dies or stops (claims with
//! leases, and a paused node never repeats a slice another node wrote), receipts across nodes,
//! and push notifications sent once, by one node.

use crate::fake;
use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fake::{FakeApns, FakeFcm};
use rumqttc::QoS;
use serde_json::{json, Value};
use support::cluster_kit::*;
use support::push_kit;
use support::*;

/// The next `n` group messages (not events) in `c`'s inbox, as (id, text).
async fn group_messages(c: &mut Client, user: &str, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = c.next_on(&format!("user/{user}/inbox")).await;
        if m["type"] == "event" {
            continue;
        }
        got.push((
            m["id"].as_str().unwrap_or_default().to_string(),
            m["text"].as_str().unwrap_or_default().to_string(),
        ));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_on_three_nodes_gets_each_message_once_in_order() {
    let cluster = Cluster::new();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    for user in ["alice", "bob", "carol"] {
        one.add_user(user, &format!("{user}-pw"));
    }
    let mut alice = device(&one, "alice", "phone").await;
    let mut bob = device(&two, "bob", "phone").await;
    let mut carol = device(&three, "carol", "phone").await;
    let mut carols_laptop = device(&one, "carol", "laptop").await;
    alice.subscribe("user/alice/rpc", QoS::AtLeastOnce).await;
    let members = vec!["bob".to_string(), "carol".to_string()];
    let g = create_group(&mut alice, "alice", "three nodes", &members).await;
    // Senders on every node, one after the other: every device sees the same order.
    let mut sent = Vec::new();
    for round in 0..5 {
        for (who, c) in [
            ("alice", &mut alice),
            ("bob", &mut bob),
            ("carol", &mut carol),
        ] {
            let text = format!("{who}-{round}");
            sent.push((group_sent_id(c, who, &g, &text).await, text));
        }
    }
    let from = |me: &str| -> Vec<(String, String)> {
        sent.iter()
            .filter(|(_, text)| !text.starts_with(me))
            .cloned()
            .collect()
    };
    assert_eq!(group_messages(&mut bob, "bob", 10).await, from("bob"));
    assert_eq!(group_messages(&mut alice, "alice", 10).await, from("alice"));
    // Carol's laptop on node 1 gets what everybody else sent, and a copy of her own.
    let laptop = group_messages(&mut carols_laptop, "carol", 15).await;
    assert_eq!(laptop, sent, "every message once, in order");
    assert_eq!(group_messages(&mut carol, "carol", 10).await, from("carol"));
    for (c, user) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        c.nothing_on(&format!("user/{user}/inbox"), Duration::from_millis(500))
            .await;
    }
}

/// How the node that started a fan-out goes away.
#[derive(Clone, Copy, PartialEq)]
enum Loss {
    /// `kill -9`.
    Killed,
    /// `kill -STOP` for 20 s, then `kill -CONT`; stopped in the middle of a database
    /// transaction (`true`) or between two.
    Paused(bool),
}

/// Stops `node` (node `id` of `cluster`) with SIGSTOP at a moment when it is in the middle
/// of a transaction that holds its fan-out claims locked (`in_transaction`), or has no
/// transaction open at all: tries again (SIGCONT, a short wait) until it is so. These are the
/// two ways a paused node could hold up or repeat work: locks that keep the others from
/// taking its fan-outs over, and a slice written after its claim was taken over.
async fn pause_at(cluster: &Cluster, node: &Server, id: u16, in_transaction: bool) {
    let node_is =
        format!("a.application_name = 'chatd-node-{id}' AND a.datname = current_database()");
    let check = match in_transaction {
        true => format!(
            "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE {node_is} AND l.relation = 'fanouts'::regclass"
        ),
        false => format!(
            "SELECT count(*) = 0 FROM pg_stat_activity a WHERE {node_is} \
             AND a.xact_start IS NOT NULL"
        ),
    };
    // One connection for all the checks: the moment wanted may be rare (a busy node is in a
    // transaction most of the time), so each try must be quick.
    let (client, connection) = tokio_postgres::connect(&cluster.database, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    for attempt in 0..20_000u64 {
        node.signal(libc::SIGSTOP);
        let row = client.query_one(&check, &[]).await.expect("check");
        if row.get::<_, bool>(0) {
            return;
        }
        node.signal(libc::SIGCONT);
        tokio::time::sleep(Duration::from_micros(100 * (attempt % 13))).await;
    }
    panic!("node {id} was never stopped with in_transaction = {in_transaction}");
}

/// A big group's fan-outs started on node 1, which is then lost mid-way: another node takes
/// them over once the claim runs out, and every member gets every message exactly once.
async fn a_fanout_outlives_its_node(loss: Loss) {
    let mut cluster = Cluster::new();
    // One recipient per slice: twenty messages to sixty members take over a thousand
    // batches, so node 1 is surely lost mid-way.
    cluster.limits = "fanout_slice = 1".into();
    cluster.cluster = "lease_secs = 2".into();
    let mut one = cluster.node(1);
    let two = cluster.node(2);
    let three = cluster.node(3);
    one.add_user("alice", "alice-pw");
    let members: Vec<String> = (0..60).map(|i| format!("m{i:03}")).collect();
    for m in &members {
        two.add_user(m, &format!("{m}-pw"));
    }
    let mut alice = device(&one, "alice", "phone").await;
    alice.subscribe("user/alice/rpc", QoS::AtLeastOnce).await;
    let g = create_group(&mut alice, "alice", "big", &members).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(group_sent_id(&mut alice, "alice", &g, &format!("g{i}")).await);
    }
    match loss {
        Loss::Killed => one.kill9(),
        Loss::Paused(in_transaction) => pause_at(&cluster, &one, 1, in_transaction).await,
    }
    let lost = Instant::now();
    let pending = cluster.count("SELECT count(*) FROM fanouts");
    assert!(
        pending > 0,
        "node 1 finished its fan-outs before it was lost"
    );
    // A member who comes online now, on node 3, gets all twenty, in order, once each.
    let mut late = device(&three, "m059", "phone").await;
    let want: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("g{i}")))
        .collect();
    assert_eq!(group_messages(&mut late, "m059", 20).await, want);
    // Everything was taken over and finished while node 1 was gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.count("SELECT count(*) FROM fanouts") > 0 {
        assert!(Instant::now() < deadline, "fan-outs not finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if matches!(loss, Loss::Paused(_)) {
        assert!(
            lost.elapsed() < Duration::from_secs(20),
            "taken over only after {:?}",
            lost.elapsed()
        );
        let rest = Duration::from_secs(20).saturating_sub(lost.elapsed());
        tokio::time::sleep(rest).await;
        one.signal(libc::SIGCONT);
        // Node 1 works again (a send through it is acknowledged), and the slice it was about
        // to write when it stopped was not written.
        let mut again = device(&one, "alice", "tablet").await;
        let deadline = Instant::now() + WAIT;
        loop {
            let ack = again.send("alice", "m000", &unique("c"), "back").await;
            if ack["status"] == "sent" {
                break;
            }
            // The server may have ended node 1's stalled transaction: storage is failing
            // for a moment, then recovers.
            assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
            assert!(Instant::now() < deadline, "node 1 does not recover: {ack}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cluster.count("SELECT count(*) FROM fanouts"), 0);
    }
    // Each member has each message queued exactly once (the late member's were delivered).
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = cluster.query(&format!(
        "SELECT user_id, count(*), count(DISTINCT message_id) FROM queue \
         WHERE message_id IN ({list}) GROUP BY user_id ORDER BY user_id"
    ));
    let users: HashSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(users.len(), 59, "every offline member: {rows:?}");
    assert!(!users.contains("m059"));
    for row in &rows {
        assert_eq!((row[1].as_str(), row[2].as_str()), ("20", "20"), "{row:?}");
    }
    late.nothing_on("user/m059/inbox", Duration::from_millis(500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_fanout_is_finished_by_another_node() {
    a_fanout_outlives_its_node(Loss::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_mid_transaction_has_its_fanouts_taken_over_and_not_done_twice() {
    a_fanout_outlives_its_node(Loss::Paused(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_between_transactions_has_its_fanouts_taken_over_and_not_done_twice() {
    a_fanout_outlives_its_node(Loss::Paused(false)).await;
}

/// Publishes a receipt of `me` for `ids`.
async fn receipt(c: &Client, me: &str, ids: &[&str], status: &str) {
    c.publish_json(
        &format!("chat/{me}/receipt"),
        &json!({"ids": ids, "status": status}),
    )
    .await;
}

/// The next receipt `c` (user `me`) gets, as (id, by, status).
async fn next_receipt(c: &mut Client, me: &str) -> (String, String, String) {
    let r: Value = c.next_on(&format!("user/{me}/receipt")).await;
    let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    (text("id"), text("by"), text("status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_cross_nodes_and_wait_for_an_offline_sender() {
    let cluster = Cluster::new();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let mut alice = device(&one, "alice", "phone").await;
    alice
        .subscribe("user/alice/receipt", QoS::AtLeastOnce)
        .await;
    let mut bob = device(&two, "bob", "phone").await;
    let first = alice.send("alice", "bob", "r1", "one").await;
    let x1 = first["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(inbox(&mut bob, "bob", 1).await[0].0, x1);
    receipt(&bob, "bob", &[&x1], "delivered").await;
    assert_eq!(
        next_receipt(&mut alice, "alice").await,
        (x1.clone(), "bob".into(), "delivered".into())
    );
    // Alice goes away; bob reads both; she comes back on node 3 and gets what she missed.
    let second = alice.send("alice", "bob", "r2", "two").await;
    let x2 = second["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(inbox(&mut bob, "bob", 1).await[0].0, x2);
    alice.disconnect().await;
    receipt(&bob, "bob", &[&x1, &x2], "read").await;
    bob.subscribe("user/bob/rpc", QoS::AtLeastOnce).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let page = rpc_ok(
            &mut bob,
            "bob",
            json!({"op": "history", "with": "alice", "limit": 10}),
        )
        .await;
        let statuses: Vec<Value> = page["messages"]
            .as_array()
            .map(|m| m.iter().map(|m| m["status"].clone()).collect())
            .unwrap_or_default();
        if statuses == vec![json!("read"), json!("read")] {
            break;
        }
        assert!(Instant::now() < deadline, "statuses: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut alice = connect(three.mqtt, "alice:laptop", "alice", "alice-pw").await;
    alice
        .subscribe("user/alice/receipt", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        next_receipt(&mut alice, "alice").await,
        (x1, "bob".into(), "read".into())
    );
    assert_eq!(
        next_receipt(&mut alice, "alice").await,
        (x2, "bob".into(), "read".into())
    );
    alice
        .nothing_on("user/alice/receipt", Duration::from_millis(800))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_sent_once_by_one_node_and_not_while_online_elsewhere() {
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let cluster = Cluster::new();
    let push = |dir: &std::path::Path| {
        push_kit::push_section(dir, &fcm, &apns, "collapse_window_ms = 1000")
    };
    let one = cluster.node_with(1, push);
    let two = cluster.node_with(2, push);
    let three = cluster.node_with(3, push);
    for user in ["alice", "bob", "carol"] {
        one.add_user(user, &format!("{user}-pw"));
    }
    // Bob registers his phone on node 3 and goes offline.
    let mut phone = device(&three, "bob", "android").await;
    phone.subscribe("user/bob/rpc", QoS::AtLeastOnce).await;
    rpc_ok(
        &mut phone,
        "bob",
        json!({"op": "push.register", "platform": "fcm", "token": "fcm-bob"}),
    )
    .await;
    phone.disconnect().await;
    push_kit::wait_offline(&three, "bob");
    // Alice (node 1) and carol (node 2) write to him: one push per conversation, whichever
    // node sends it, none twice.
    let mut alice = device(&one, "alice", "phone").await;
    let mut carol = device(&two, "carol", "phone").await;
    for i in 0..3 {
        let ack = alice
            .send("alice", "bob", &unique("c"), &format!("a{i}"))
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        let ack = carol
            .send("carol", "bob", &unique("c"), &format!("c{i}"))
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
    }
    let pushes = fcm.wait_pushes(2).await;
    fcm.no_more_than(2, Duration::from_secs(3)).await;
    let mut from: Vec<String> = pushes
        .iter()
        .map(|p| {
            p.body["message"]["data"]["from"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    from.sort();
    assert_eq!(from, ["alice", "carol"]);
    for p in &pushes {
        assert_eq!(p.token, "fcm-bob");
        assert_eq!(p.body["message"]["data"]["unread"], "3", "{:?}", p.body);
    }
    // Bob online on node 2: messages from node 1 and node 3 push nothing.
    let mut laptop = device(&two, "bob", "laptop").await;
    let ack = alice.send("alice", "bob", &unique("c"), "online").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let mut dave = device(&three, "carol", "tablet").await;
    let ack = dave.send("carol", "bob", &unique("c"), "online too").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let texts: HashSet<String> = inbox(&mut laptop, "bob", 8)
        .await
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert!(
        texts.contains("online") && texts.contains("online too"),
        "{texts:?}"
    );
    fcm.no_more_than(2, Duration::from_secs(3)).await;
    fcm.assert_clean();
}
