//! Cluster mode (issue 16): several chatd processes sharing one PostgreSQL database (started by
//! the tests, `plugins/postgres/tests/common`) and one Redis. Messages cross nodes through the
//! database, and the wake-up bus tells the recipient's node to look.

use crate::pg;
use crate::support;

use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::json;
use support::cluster_kit::*;
use support::redis_server::RedisServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_in_order_once_each() {
    let cluster = Cluster::new();
    let one = cluster.node(1);
    let two = cluster.node(2);
    one.add_user("alice", "alice-pw");
    // Created on node 1, logs in on node 2: accounts are in the database.
    one.add_user("bob", "bob-pw");
    let mut alice = device(&one, "alice", "phone").await;
    let mut bob = device(&two, "bob", "phone").await;
    const N: usize = 1000;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let ack = alice
            .send("alice", "bob", &format!("c{i}"), &format!("m{i}"))
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        ids.push(ack["id"].as_str().unwrap_or_default().to_string());
    }
    let got = inbox(&mut bob, "bob", N).await;
    let want: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("m{i}")))
        .collect();
    assert_eq!(got, want, "bob's messages, in order, once each");
    bob.nothing_on("user/bob/inbox", Duration::from_secs(1))
        .await;
    // Acknowledged means committed: node 2 reads all of them back from the database.
    bob.subscribe("user/bob/rpc", QoS::AtLeastOnce).await;
    let page = bob
        .rpc(
            "bob",
            json!({"op": "history", "rid": "h", "with": "alice", "limit": 100}),
        )
        .await;
    assert_eq!(page["ok"], true, "{page}");
    let newest = page["result"]["messages"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(newest, 100, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_on_every_node_gets_its_copy() {
    let cluster = Cluster::new();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let mut phone = device(&one, "bob", "phone").await;
    let mut laptop = device(&three, "bob", "laptop").await;
    let mut alice = device(&one, "alice", "phone").await;
    let mut tablet = device(&two, "alice", "tablet").await;
    for i in 0..20 {
        let ack = alice
            .send("alice", "bob", &format!("d{i}"), &format!("t{i}"))
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        // Alice's tablet on another node sees the ack of what her phone sent.
        let copy = tablet
            .next_where("user/alice/ack", "cid", &json!(format!("d{i}")))
            .await;
        assert_eq!(copy["id"], ack["id"], "{copy}");
    }
    let on_phone = inbox(&mut phone, "bob", 20).await;
    let on_laptop = inbox(&mut laptop, "bob", 20).await;
    assert_eq!(
        on_phone, on_laptop,
        "both devices, the same messages in the same order"
    );
    let texts: Vec<String> = on_phone.into_iter().map(|(_, t)| t).collect();
    let want: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    assert_eq!(texts, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_the_queue_on_another_node() {
    let cluster = Cluster::new();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let mut alice = device(&one, "alice", "phone").await;
    // Bob reads some on node 2, goes away; alice sends more; bob comes back on node 3.
    let mut bob = device(&two, "bob", "phone").await;
    for i in 0..5 {
        alice
            .send("alice", "bob", &format!("a{i}"), &format!("a{i}"))
            .await;
    }
    assert_eq!(inbox(&mut bob, "bob", 5).await.len(), 5);
    bob.disconnect().await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let ack = alice
            .send("alice", "bob", &format!("b{i}"), &format!("b{i}"))
            .await;
        sent.push((
            ack["id"].as_str().unwrap_or_default().to_string(),
            format!("b{i}"),
        ));
    }
    let mut bob = device(&three, "bob", "phone").await;
    assert_eq!(
        inbox(&mut bob, "bob", 50).await,
        sent,
        "the queue, in order, no gaps"
    );
    bob.nothing_on("user/bob/inbox", Duration::from_secs(1))
        .await;
}

/// The JSON of node `s`'s `/healthz` once `ok(status)` holds (polled up to [`WAIT`]).
async fn healthz_until(s: &Server, what: &str, ok: impl Fn(&str) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(s.http, "/healthz");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if ok(v["status"].as_str().unwrap_or_default()) {
            return v;
        }
        assert!(Instant::now() < deadline, "/healthz never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_redis_still_delivers_from_the_store() {
    let mut cluster = Cluster::new();
    let (one, two) = (cluster.node(1), cluster.node(2));
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let mut alice = device(&one, "alice", "phone").await;
    let mut bob = device(&two, "bob", "phone").await;
    alice.send("alice", "bob", "before", "before").await;
    assert_eq!(inbox(&mut bob, "bob", 1).await[0].1, "before");
    cluster.redis.stop();
    for node in [&one, &two] {
        let h = healthz_until(node, "degraded", |s| s == "degraded").await;
        assert_eq!(h["connection_cache"]["ok"], false, "{h}");
        assert_eq!(h["storage"]["ok"], true, "{h}");
    }
    // No wake-up can travel for ten seconds: node 2 reads its sessions' queues every few
    // seconds instead. Every send is acknowledged (the database is the truth) and delivered.
    let outage = Instant::now();
    let mut i = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let text = format!("during-{i}");
        let start = Instant::now();
        let ack = alice.send("alice", "bob", &text, &text).await;
        assert_eq!(ack["status"], "sent", "{ack}");
        assert_eq!(inbox(&mut bob, "bob", 1).await[0].1, text);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "delivered {:?} after the send",
            start.elapsed()
        );
        i += 1;
    }
    cluster.redis.restart();
    for node in [&one, &two] {
        healthz_until(node, "ok", |s| s == "ok").await;
    }
    // The connection cache is rebuilt: node 1 knows where bob's device is again.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = one.admin("GET", "/admin/users/bob/devices", None);
        assert_eq!(status, 200, "{body}");
        if body.contains("bob:phone") && body.contains("\"node\":2") {
            break;
        }
        assert!(Instant::now() < deadline, "bob's device not back: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = alice.send("alice", "bob", "after", "after").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(inbox(&mut bob, "bob", 1).await[0].1, "after");
    bob.nothing_on("user/bob/inbox", Duration::from_millis(500))
        .await;
}

#[test]
fn a_node_refuses_a_database_without_the_schema() {
    let database = pg::fresh_database();
    let redis = RedisServer::start();
    let media = tempfile::tempdir().expect("media dir");
    let cluster = Cluster {
        redis,
        database,
        media,
        own: None,
        standby: None,
        limits: String::new(),
        cluster: String::new(),
    };
    let err = match Server::try_start_custom(|dir| cluster.config(dir, 1)) {
        Ok(_) => panic!("a node started on a database without the schema"),
        Err(e) => e,
    };
    assert!(err.contains("chatd db migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_online_while_a_device_is_on_any_node() {
    let cluster = Cluster::new();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    one.add_user("bob", "bob-pw");
    one.add_user("carol", "carol-pw");
    let mut carol = device(&two, "carol", "phone").await;
    carol.subscribe("presence/bob", QoS::AtLeastOnce).await;
    assert_eq!(presence_of(&mut carol, "bob").await, "offline");
    let phone = device(&one, "bob", "phone").await;
    assert_eq!(presence_of(&mut carol, "bob").await, "online");
    let laptop = device(&three, "bob", "laptop").await;
    carol
        .nothing_on("presence/bob", Duration::from_secs(1))
        .await;
    // The phone goes; the laptop on another node keeps bob online.
    phone.disconnect().await;
    carol
        .nothing_on("presence/bob", Duration::from_secs(2))
        .await;
    // presence.get on a third node says the same.
    let mut dave = device(&one, "carol", "tablet").await;
    dave.subscribe("user/carol/rpc", QoS::AtLeastOnce).await;
    let got = dave
        .rpc(
            "carol",
            json!({"op": "presence.get", "rid": "p", "users": ["bob"]}),
        )
        .await;
    assert_eq!(got["result"]["users"][0]["status"], "online", "{got}");
    laptop.disconnect().await;
    assert_eq!(presence_of(&mut carol, "bob").await, "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_go_offline_within_the_ttl() {
    let cluster = Cluster::new();
    let one = cluster.node(1);
    let mut three = cluster.node(3);
    one.add_user("bob", "bob-pw");
    one.add_user("carol", "carol-pw");
    let mut carol = device(&one, "carol", "phone").await;
    carol.subscribe("presence/bob", QoS::AtLeastOnce).await;
    assert_eq!(presence_of(&mut carol, "bob").await, "offline");
    let _bob = device(&three, "bob", "phone").await;
    assert_eq!(presence_of(&mut carol, "bob").await, "online");
    three.kill9();
    let killed = Instant::now();
    assert_eq!(presence_of(&mut carol, "bob").await, "offline");
    // redis.ttl_secs is 5 in these tests: silent for 5 s, noticed within a second more.
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "offline {:?} after the kill",
        killed.elapsed()
    );
}

/// A user's device gets, live, a message that another node numbered below one the device already
/// has, even when the user's other device acknowledged it first. Node 2's id generator runs ahead
/// of node 1's (as with a clock ahead: it took up a newer id from the database when it started),
/// so a message sent through node 1 after one sent through node 2 gets the lower id. Bob's laptop
/// takes one message unacknowledged at a time (MQTT 5 Receive Maximum 1) and holds the first, so
/// the second reaches its node's session only after bob's phone acknowledged it and it left his
/// queue: reading the queue again cannot find it, only the delivery in hand can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_id_acknowledged_by_another_device_still_reaches_a_device_live() {
    use support::raw::{puback, Connect, Raw, PUBLISH, V};
    let cluster = Cluster::new();
    let one = cluster.node(1);
    one.add_user("alice", "alice-pw");
    one.add_user("bob", "bob-pw");
    let ahead = chatd_wire::ids::now_ms() + 60_000;
    cluster.query(&format!(
        "INSERT INTO meta (key, value) VALUES ('last_id', '{ahead:013}-00000-00000') \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    ));
    let two = cluster.node(2);
    let mut alice_one = device(&one, "alice", "phone").await;
    let mut alice_two = device(&two, "alice", "tablet").await;
    let mut phone = device(&one, "bob", "phone").await;
    let connect = Connect::new(V::V5, "bob:laptop", "bob", "bob-pw").receive_maximum(1);
    let mut laptop = Raw::login_with(two.mqtt, &connect).await;
    assert_eq!(laptop.subscribe(1, &[("user/bob/inbox", 1)]).await, vec![1]);

    let high = alice_two.send("alice", "bob", "c-high", "high").await;
    assert_eq!(high["status"], "sent", "{high}");
    let high_id = high["id"].as_str().unwrap_or_default().to_string();
    // The laptop holds the first message unacknowledged: its window is full.
    let first = laptop.read_packet(WAIT).await.expect("the first message");
    assert_eq!(first.kind(), PUBLISH, "{first:?}");
    let first = first.publish(V::V5);
    assert_eq!(first.json()["id"], high_id.as_str(), "{:?}", first.json());

    let low = alice_one.send("alice", "bob", "c-low", "low").await;
    assert_eq!(low["status"], "sent", "{low}");
    let low_id = low["id"].as_str().unwrap_or_default().to_string();
    assert!(low_id < high_id, "{low_id} is not below {high_id}");
    // The phone gets both, in the order they were sent, and acknowledges them: bob's queue is
    // empty before the laptop can take the second.
    assert_eq!(
        inbox(&mut phone, "bob", 2).await,
        vec![
            (high_id.clone(), "high".to_string()),
            (low_id.clone(), "low".to_string())
        ]
    );
    let deadline = Instant::now() + WAIT;
    while cluster.count("SELECT count(*) FROM queue WHERE user_id = 'bob'") > 0 {
        assert!(
            Instant::now() < deadline,
            "the phone's acks never reached the queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    laptop.send(&puback(first.pkid)).await;
    let second = laptop
        .next_publish_on("user/bob/inbox", WAIT)
        .await
        .unwrap_or_else(|e| panic!("the laptop never got {low_id} ({e:?})"));
    assert_eq!(second.json()["id"], low_id.as_str(), "{:?}", second.json());
    // Once each.
    let more = laptop.publishes_for(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "more than once: {more:?}");
}
