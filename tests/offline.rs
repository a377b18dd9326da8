//! The per-recipient queue: messages for a user with no connected device are delivered in id
//! order when a device subscribes to its inbox, stay queued until a device PUBACKs them, and
//! survive a graceful restart and a `kill -9`.

use crate::support;

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

fn server_ab() -> Server {
    let s = Server::start();
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    s
}

/// Alice's sending connection (subscribed to her acks).
async fn sender(s: &Server) -> Client {
    let c = connect(s.mqtt, "alice", "alice", "alice-pw").await;
    c.subscribe("user/alice/ack", QoS::AtLeastOnce).await;
    c
}

/// Sends `n` messages alice → bob with texts `{prefix}{i}` and returns their ids in send order.
async fn send_many(alice: &mut Client, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let cid = format!("{prefix}{i}");
        let ack = alice.send("alice", "bob", &cid, &cid).await;
        assert_eq!(ack["status"], "sent", "{ack}");
        ids.push(ack["id"].as_str().unwrap().to_string());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids not in send order");
    ids
}

/// Bob with manual acks (3.1.1), subscribed to his inbox.
async fn bob_manual(s: &Server, client_id: &str) -> Client {
    let mut o = options(s.mqtt, client_id, "bob", "bob-pw");
    o.set_manual_acks(true);
    let c = connect_opts(o).await.expect("connect bob with manual acks");
    c.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    c
}

fn json_of(p: &rumqttc::Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("inbox payload is JSON")
}

/// Receives `ids.len()` messages on bob's inbox and checks they are exactly `ids`, in order.
async fn expect_in_order(bob: &mut Client, ids: &[String]) {
    for (i, id) in ids.iter().enumerate() {
        let m = bob.next_on("user/bob/inbox").await;
        assert_eq!(m["id"], id.as_str(), "message {i} of {}: {m}", ids.len());
        assert_eq!(m["from"], "alice");
        assert_eq!(m["to"], "bob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_in_order_on_subscribe() {
    let s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "off-", 20).await;

    // Connecting alone delivers nothing: the queue is sent when the inbox is subscribed.
    let mut bob = connect(s.mqtt, "bob:phone", "bob", "bob-pw").await;
    bob.subscribe("user/bob/ack", QoS::AtLeastOnce).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(500))
        .await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    expect_in_order(&mut bob, &ids).await;

    // New messages follow the backlog, still in order, with no duplicates.
    let more = send_many(&mut alice, "on-", 3).await;
    expect_in_order(&mut bob, &more).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(800))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_in_order_mqtt5() {
    let s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "five-", 12).await;

    let mut bob = connect5(s.mqtt, "bob:v5", "bob", "bob-pw").await;
    // A wildcard subscription that covers the inbox counts as subscribing to it.
    bob.subscribe("user/bob/#", QoS5::AtLeastOnce).await;
    for id in &ids {
        let m = bob.next_on("user/bob/inbox").await;
        assert_eq!(m["id"], id.as_str(), "{m}");
    }
    bob.nothing_on("user/bob/inbox", Duration::from_millis(800))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_and_live_messages_interleave_in_order() {
    // Messages sent while bob's device is subscribing must neither be lost nor reordered.
    let s = server_ab();
    let mut alice = sender(&s).await;
    let mut ids = send_many(&mut alice, "early-", 30).await;
    let mut bob = connect(s.mqtt, "bob", "bob", "bob-pw").await;
    // Publish more without waiting for their acks, then subscribe right away.
    for i in 0..30 {
        let cid = format!("late-{i}");
        alice
            .publish_json(
                "chat/alice/send",
                &json!({"cid":cid,"to":"bob","type":"text","text":cid}),
            )
            .await;
    }
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    for i in 0..30 {
        let cid = format!("late-{i}");
        let ack = alice.next_where("user/alice/ack", "cid", &json!(cid)).await;
        ids.push(ack["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let m = bob.next_on("user/bob/inbox").await;
        let id = m["id"].as_str().unwrap().to_string();
        if seen.contains(&id) {
            continue; // at-least-once: a duplicate is allowed, a gap or a reorder is not
        }
        seen.push(id);
    }
    assert_eq!(seen, ids, "delivery order differs from id order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stays_queued_until_puback() {
    let s = server_ab();
    let mut alice = sender(&s).await;

    // Online with manual acks: receives but does not acknowledge, then leaves cleanly.
    let mut bob = bob_manual(&s, "bob:phone").await;
    let ack = alice.send("alice", "bob", "q-1", "ack me").await;
    let id = ack["id"].as_str().unwrap().to_string();
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(p.qos, QoS::AtLeastOnce, "inbox delivered below QoS 1");
    assert_eq!(json_of(&p)["id"], id.as_str());
    bob.disconnect().await;

    // Again on the next connection (same device).
    let mut bob = bob_manual(&s, "bob:phone").await;
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(json_of(&p)["id"], id.as_str(), "not redelivered");
    // Dropping the network without DISCONNECT keeps it queued as well.
    drop(bob);

    // Another device gets it too, and acknowledges it this time.
    let mut bob = bob_manual(&s, "bob:laptop").await;
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(
        json_of(&p)["id"],
        id.as_str(),
        "not redelivered after a drop"
    );
    bob.ack_manually(&p);
    // A message after the PUBACK proves the session went on past it.
    let ack2 = alice.send("alice", "bob", "q-2", "second").await;
    let p2 = bob.next_publish("user/bob/inbox").await;
    assert_eq!(json_of(&p2)["id"], ack2["id"]);
    bob.ack_manually(&p2);
    bob.disconnect().await;

    // Acknowledged by one device = gone for every device of bob.
    let mut bob = bob_manual(&s, "bob:phone").await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1500))
        .await;
    bob.disconnect().await;
    let mut bob = connect5(s.mqtt, "bob:tablet", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS5::AtLeastOnce).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1000))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_acknowledged_messages_leave_the_queue() {
    let s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "part-", 4).await;

    let mut bob = bob_manual(&s, "bob").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(bob.next_publish("user/bob/inbox").await);
    }
    let got_ids: Vec<String> = got
        .iter()
        .map(|p| json_of(p)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got_ids, ids);
    // Acknowledge the 2nd and the 4th only.
    bob.ack_manually(&got[1]);
    bob.ack_manually(&got[3]);
    // Make sure the PUBACKs went out before leaving: a round trip on the same connection.
    bob.subscribe("user/bob/ack", QoS::AtLeastOnce).await;
    bob.disconnect().await;

    let mut bob = bob_manual(&s, "bob").await;
    let a = bob.next_publish("user/bob/inbox").await;
    let b = bob.next_publish("user/bob/inbox").await;
    assert_eq!(json_of(&a)["id"], ids[0].as_str());
    assert_eq!(json_of(&b)["id"], ids[2].as_str());
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1000))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_acks_with_mqtt5() {
    let s = server_ab();
    let mut alice = sender(&s).await;
    let ack = alice.send("alice", "bob", "m5-1", "five").await;
    let id = ack["id"].clone();

    let mut o = options5(s.mqtt, "bob:v5", "bob", "bob-pw");
    o.set_manual_acks(true);
    let mut bob = connect5_opts(o.clone()).await.expect("connect");
    bob.subscribe("user/bob/inbox", QoS5::AtLeastOnce).await;
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap()["id"],
        id
    );
    bob.disconnect().await;

    let mut bob = connect5_opts(o.clone()).await.expect("reconnect");
    bob.subscribe("user/bob/inbox", QoS5::AtLeastOnce).await;
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap()["id"],
        id,
        "not redelivered"
    );
    bob.ack_manually(&p);
    bob.subscribe("user/bob/rpc", QoS5::AtLeastOnce).await;
    bob.disconnect().await;

    let mut bob = connect5_opts(o).await.expect("reconnect");
    bob.subscribe("user/bob/inbox", QoS5::AtLeastOnce).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_survives_graceful_restart() {
    let mut s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "g-", 10).await;
    // One of them was delivered but not acknowledged before the restart.
    let mut bob = bob_manual(&s, "bob").await;
    let p = bob.next_publish("user/bob/inbox").await;
    assert_eq!(json_of(&p)["id"], ids[0].as_str());
    drop(bob);
    drop(alice);

    let status = s.stop();
    assert!(status.success(), "chatd exited with {status} on SIGTERM");
    assert!(
        !s.data_dir().join("listen.json").exists(),
        "listen.json left behind after a clean exit"
    );
    s.restart();

    let mut bob = connect(s.mqtt, "bob", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    expect_in_order(&mut bob, &ids).await;
    bob.disconnect().await;

    // All acknowledged now (automatic acks): nothing after another restart.
    assert!(s.stop().success());
    s.restart();
    let mut bob = connect(s.mqtt, "bob", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_survives_kill_9() {
    let mut s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "k-", 10).await;
    drop(alice);
    // Every acked message is on disk: kill right after the last ack.
    s.kill9();
    s.restart();

    let mut bob = connect(s.mqtt, "bob:phone", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    expect_in_order(&mut bob, &ids).await;
    bob.disconnect().await;

    // The acknowledgements are durable too (eventually): after a graceful restart nothing comes back.
    let mut alice = sender(&s).await;
    let more = send_many(&mut alice, "k2-", 3).await;
    drop(alice);
    s.kill9();
    s.restart();
    let mut bob = connect(s.mqtt, "bob:phone", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    // The first 10 may come again (their removal may not have reached the disk before the
    // kill), but each at most once and all before the 3 new ones; the 3 new ones must come.
    let mut seen: Vec<String> = Vec::new();
    while !more.iter().all(|id| seen.contains(id)) {
        let m = bob.next_on("user/bob/inbox").await;
        let id = m["id"].as_str().unwrap().to_string();
        assert!(!seen.contains(&id), "{id} delivered twice in one session");
        assert!(
            ids.contains(&id) || more.contains(&id),
            "unknown message {m}"
        );
        seen.push(id);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "backlog out of order after kill -9");
    bob.disconnect().await;

    assert!(s.stop().success());
    s.restart();
    let mut bob = connect(s.mqtt, "bob:phone", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    bob.nothing_on("user/bob/inbox", Duration::from_millis(1500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_kill_9() {
    let mut s = server_ab();
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "hk-", 5).await;
    drop(alice);
    s.kill9();
    s.restart();
    let mut alice = connect(s.mqtt, "alice", "alice", "alice-pw").await;
    alice.subscribe("user/alice/#", QoS::AtLeastOnce).await;
    let r = alice
        .rpc("alice", json!({"rid":"h","op":"history","with":"bob"}))
        .await;
    let got: Vec<&str> = r["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids, "{r}");
    // New ids after the crash still sort after the old ones.
    let ack = alice.send("alice", "bob", "hk-new", "after").await;
    assert!(
        ack["id"].as_str().unwrap() > ids.last().unwrap().as_str(),
        "id after restart {} does not sort after {}",
        ack["id"],
        ids.last().unwrap()
    );
}

/// A server started with `storage.engine = "fjall"` (and alice and bob).
fn fjall_server_ab() -> Server {
    engine_server_ab("fjall")
}

/// A server on a new data directory with `storage.engine = engine`, alice and bob added.
fn engine_server_ab(engine: &str) -> Server {
    let s = Server::try_start_custom(|dir| {
        // `base_config` ends inside `[storage]`.
        format!("{}engine = \"{engine}\"\n", base_config(dir, ""))
    })
    .unwrap_or_else(|e| panic!("chatd did not start on {engine}: {e}"));
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    s
}

/// Bob's 1:1 history with alice: the ids, oldest first.
async fn history_ids(bob: &mut Client) -> Vec<String> {
    let reply = bob
        .rpc(
            "bob",
            json!({"rid": unique("r"), "op": "history", "with": "alice"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "history: {reply}");
    let mut ids: Vec<String> = reply["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array: {reply}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Bob's conversation with alice as `conversations` lists it.
async fn conversation_with_alice(bob: &mut Client) -> Value {
    let reply = bob
        .rpc("bob", json!({"rid": unique("r"), "op": "conversations"}))
        .await;
    assert_eq!(reply["ok"], true, "conversations: {reply}");
    reply["result"]["conversations"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["with"] == "alice"))
        .unwrap_or_else(|| panic!("no conversation with alice: {reply}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_memtables_keep_every_message_through_many_rotations_and_a_kill_9() {
    // `storage.memtable_mb = 1`: about 3 MB of messages rotate fjall's memtable several
    // times while bob is away, each rotation writing a table out and dropping a memtable.
    let mut s = Server::try_start_custom(|dir| {
        // `base_config` ends inside `[storage]`.
        format!(
            "{}engine = \"fjall\"\nmemtable_mb = 1\n\n[limits]\nsends_per_sec = 100000\nsends_burst = 100000\n",
            base_config(dir, "")
        )
    })
    .unwrap_or_else(|e| panic!("chatd did not start with 1 MiB memtables: {e}"));
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let mut alice = sender(&s).await;
    let n = 1500;
    let mut ids = Vec::new();
    for i in 0..n {
        let text = format!("{i:04} {}", "x".repeat(2000));
        let ack = alice.send("alice", "bob", &format!("mt-{i}"), &text).await;
        assert_eq!(ack["status"], "sent", "{ack}");
        ids.push(ack["id"].as_str().unwrap().to_string());
    }
    drop(alice);
    // Replies only: his inbox stays queued.
    let mut bob = connect(s.mqtt, "bob:tablet", "bob", "bob-pw").await;
    bob.subscribe("user/bob/rpc", QoS::AtLeastOnce).await;
    let conv = conversation_with_alice(&mut bob).await;
    assert_eq!(conv["unread"], n, "{conv}");
    assert_eq!(conv["last"]["id"], ids[n - 1].as_str(), "{conv}");
    bob.disconnect().await;

    s.kill9();
    s.restart();
    let mut bob = online(&s, "bob:phone", "bob").await;
    expect_in_order(&mut bob, &ids).await;
    assert_eq!(conversation_with_alice(&mut bob).await["unread"], n);
    assert_eq!(history_ids(&mut bob).await, ids[n - 50..].to_vec());
    bob.disconnect().await;
    assert!(s.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_store_keeps_queue_and_history_across_kill_9() {
    let mut s = fjall_server_ab();
    let data = s.data_dir();
    assert!(data.join("fjall").is_dir(), "no fjall store in {data:?}");
    assert!(!data.join("store").exists(), "a sled store next to fjall's");
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "fj-", 1).await;
    drop(alice);
    // The ack came after the flush: the message must survive a kill right now.
    s.kill9();
    s.restart();

    let mut bob = online(&s, "bob:phone", "bob").await;
    expect_in_order(&mut bob, &ids).await;
    assert_eq!(history_ids(&mut bob).await, ids);
    bob.disconnect().await;

    // A configuration that names another engine does not move an existing data directory off
    // fjall: the server warns and keeps using fjall.
    assert!(s.stop().success());
    let config = std::fs::read_to_string(s.config_path()).expect("read the config");
    let sled_config = config.replace("engine = \"fjall\"\n", "engine = \"sled\"\n");
    assert_ne!(sled_config, config);
    std::fs::write(s.config_path(), sled_config).expect("write the config");
    s.restart();
    assert!(
        !data.join("store").exists(),
        "sled was opened next to fjall"
    );
    let log = s.log();
    assert!(
        log.contains("storage.engine is `sled`") && log.contains("opening it with fjall"),
        "no warning about the engine in the log:\n{log}"
    );
    let mut bob = online(&s, "bob:phone", "bob").await;
    assert_eq!(history_ids(&mut bob).await, ids);
    bob.disconnect().await;
    assert!(s.stop().success());
}

#[test]
fn a_data_dir_with_two_engines_is_refused() {
    let err = match Server::try_start_custom(|dir| {
        let data = dir.join("data");
        for store in ["store", "fjall"] {
            std::fs::create_dir_all(data.join(store)).expect("create a store directory");
        }
        base_config(dir, "")
    }) {
        Ok(_) => panic!("chatd started on a data directory with a sled and a fjall store"),
        Err(e) => e,
    };
    assert!(
        err.contains("more than one engine")
            && err.contains("store (sled)")
            && err.contains("fjall (fjall)"),
        "the failure does not name both stores: {err}"
    );
}

/// `{stdout}{stderr}` of a CLI run, for assertions and failure messages.
fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_moves_a_sled_data_dir_to_fjall() {
    let mut s = engine_server_ab("sled");
    let data = s.data_dir();
    assert!(data.join("store").is_dir(), "no sled store in {data:?}");
    let mut alice = sender(&s).await;
    let ids = send_many(&mut alice, "mig-", 3).await;
    drop(alice);

    // Refused while the server holds the store.
    let out = s.cli(&["store", "migrate", "--to", "fjall"]);
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "migrated under a running server: {text}"
    );
    assert!(text.contains("stop the server"), "{text}");
    assert!(!data.join("fjall").exists() && !data.join("fjall.migrating").exists());

    assert!(s.stop().success());
    let out = s.cli(&["store", "migrate", "--to", "fjall"]);
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "store migrate --to fjall failed: {text}"
    );
    assert!(
        text.contains("from sled to fjall")
            && text.contains("store.old")
            && text.contains("--remove-old")
            && text.contains("storage.engine"),
        "{text}"
    );
    assert!(
        data.join("fjall").is_dir(),
        "no fjall store after migrating"
    );
    assert!(
        data.join("store.old").is_dir(),
        "the old store was not kept"
    );
    assert!(!data.join("store").exists(), "the sled store is still live");
    assert!(!data.join("fjall.migrating").exists());
    // Once is enough.
    let out = s.cli(&["store", "migrate", "--to", "fjall"]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("already is on fjall"),
        "{}",
        output_text(&out)
    );

    // The configuration still says sled: the data directory's engine wins.
    s.restart();
    assert!(!data.join("store").exists(), "the server opened sled again");
    let mut bob = online(&s, "bob:phone", "bob").await;
    assert_eq!(history_ids(&mut bob).await, ids);
    expect_in_order(&mut bob, &ids).await;
    bob.disconnect().await;
    assert!(s.stop().success());

    let out = s.cli(&["store", "migrate", "--remove-old"]);
    let text = output_text(&out);
    assert!(out.status.success(), "--remove-old failed: {text}");
    assert!(text.contains("store.old"), "{text}");
    assert!(!data.join("store.old").exists(), "store.old is still there");
    assert!(data.join("fjall").is_dir());
    let out = s.cli(&["store", "migrate", "--remove-old"]);
    assert!(!out.status.success(), "a second --remove-old succeeded");
}

/// The nice value of each thread of process `pid` whose name is `name` (Linux keeps 15 bytes of
/// a name), read from `/proc/{pid}/task/*/stat` (field 19).
#[cfg(target_os = "linux")]
fn nice_of_threads(pid: u32, name: &str) -> Vec<i64> {
    let name = &name[..name.len().min(15)];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read the task list");
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // After the name in parentheses: state is field 3, nice field 19.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_background_threads_run_lower_while_messages_are_served() {
    let s = Server::try_start_custom(|dir| {
        format!(
            "{}engine = \"fjall\"\nbackground_nice = 7\n",
            base_config(dir, "")
        )
    })
    .unwrap_or_else(|e| panic!("chatd did not start: {e}"));
    let pid = s.pid().expect("chatd runs");
    let main = nice_of_threads(pid, "chatd");
    assert!(!main.is_empty(), "no main thread named chatd");
    let want = (main[0] + 7).min(19);
    let workers = nice_of_threads(pid, "fjall:worker");
    // One: with more, fjall 3.1's first worker spins on compaction requests (`fjall_store.rs`).
    assert_eq!(workers.len(), 1, "fjall worker threads: {workers:?}");
    assert!(
        workers.iter().all(|&n| n == want),
        "want {want}: {workers:?}"
    );
    // Served as before.
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let mut bob = online(&s, "bob:phone", "bob").await;
    let mut alice = sender(&s).await;
    let ack = alice.send("alice", "bob", "bg-1", "hello").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    expect_in_order(
        &mut bob,
        &[ack["id"].as_str().unwrap_or_default().to_string()],
    )
    .await;
    // The thread that frees memtables starts with the store and lowers itself.
    let freeing = nice_of_threads(pid, "chatd-memtable-free");
    assert!(
        freeing.iter().all(|&n| n == want),
        "want {want}: {freeing:?}"
    );
}

#[test]
fn an_out_of_range_background_nice_is_refused_at_start_by_name() {
    let err =
        Server::try_start_custom(|dir| format!("{}background_nice = 20\n", base_config(dir, "")))
            .err()
            .expect("chatd started with background_nice = 20");
    assert!(err.contains("storage.background_nice"), "{err}");
}

/// A device still reading its queue gets a new message live even when another device of the
/// same user acknowledged it first (it left the queue before the read came to it). Bob's laptop
/// takes one message unacknowledged at a time (MQTT 5 Receive Maximum 1) and holds the first of
/// his backlog, so its replay is under way when the new message arrives; his phone reads the
/// whole queue, gets the new message and acknowledges everything before the laptop goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_replaying_its_queue_gets_what_another_device_acknowledged_meanwhile() {
    use support::raw::{puback, Connect, Raw, PUBLISH, V};
    let s = server_ab();
    let mut alice = sender(&s).await;
    let old = send_many(&mut alice, "old-", 2).await;
    let laptop_connect = Connect::new(V::V5, "bob:laptop", "bob", "bob-pw").receive_maximum(1);
    let mut laptop = Raw::login_with(s.mqtt, &laptop_connect).await;
    laptop
        .send(&support::raw::subscribe(V::V5, 1, &[("user/bob/inbox", 1)]))
        .await;
    // The SUBACK, then the first of the backlog, left unacknowledged.
    let first = loop {
        let p = laptop.read_packet(WAIT).await.expect("the first message");
        if p.kind() == PUBLISH {
            break p.publish(V::V5);
        }
    };
    assert_eq!(first.json()["id"], old[0].as_str(), "{:?}", first.json());

    let mut phone = connect(s.mqtt, "bob:phone", "bob", "bob-pw").await;
    phone.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    expect_in_order(&mut phone, &old).await;
    let new = send_many(&mut alice, "new-", 1).await;
    expect_in_order(&mut phone, &new).await;
    // The phone's PUBACKs were handled (the queue is empty) once this is answered.
    phone.subscribe("user/bob/rpc", QoS::AtLeastOnce).await;
    let page = phone
        .rpc(
            "bob",
            json!({"op": "presence.get", "rid": "p", "users": ["alice"]}),
        )
        .await;
    assert_eq!(page["ok"], true, "{page}");

    laptop.send(&puback(first.pkid)).await;
    // The second of the backlog went to the phone before the laptop's read came to it; the new
    // message, live to every device, reaches the laptop too, once.
    let next = laptop
        .next_publish_on("user/bob/inbox", WAIT)
        .await
        .unwrap_or_else(|e| panic!("the laptop never got {} ({e:?})", new[0]));
    assert_eq!(next.json()["id"], new[0].as_str(), "{:?}", next.json());
    let more = laptop.publishes_for(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "more than once: {more:?}");
}
