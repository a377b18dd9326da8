//! The connection cache: in-process by default; in a real `redis-server` (started by the tests on
//! a free port) when `[redis] url` is configured — entries per device and node, removal at
//! disconnect, expiry after a node is killed, and a Redis outage that degrades health while the
//! node keeps serving.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::redis_server::RedisServer;
use support::{http_get, unique, Server};

/// TTL of the Redis entries in these tests (the smallest allowed).
const TTL_SECS: u64 = 5;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Starts a chatd node `node` using `redis` with key prefix `prefix` and the test TTL.
fn start_node(node: u16, redis: &RedisServer, prefix: &str) -> Server {
    Server::start_with(&format!(
        "[node]\nid = {node}\n\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\nttl_secs = {TTL_SECS}\n",
        redis.url()
    ))
}

fn healthz(srv: &Server) -> Value {
    let (status, body) = http_get(srv.http, "/healthz");
    assert_eq!(status, 200, "/healthz: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {body}"))
}

/// The value of the Prometheus sample `name` on `srv`.
fn metric(srv: &Server, name: &str) -> Option<f64> {
    let (status, text) = http_get(srv.http, "/metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// `GET /admin/users/{user}/devices` on `srv`: the `devices` array.
fn devices(srv: &Server, user: &str) -> Vec<Value> {
    let (status, body) = srv.admin("GET", &format!("/admin/users/{user}/devices"), None);
    assert_eq!(status, 200, "devices of {user}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices array: {body}"))
        .clone()
}

/// Polls `check` (every 100 ms) until it returns `Some`, for at most `limit`; panics with
/// `what` and the last state otherwise.
async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within {limit:?}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn conn_key(prefix: &str, user: &str, node: u16, client_id: &str) -> String {
    format!("{prefix}:conn:{user}:{node}:{client_id}")
}

/// The JSON entry under `key`, if the key exists.
fn entry(c: &mut redis::Connection, key: &str) -> Option<Value> {
    let text: Option<String> = redis::cmd("GET")
        .arg(key)
        .query(c)
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    text.map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("{key}: {e}: {t}")))
}

fn members(c: &mut redis::Connection, key: &str) -> Vec<String> {
    let mut m: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query(c)
        .unwrap_or_else(|e| panic!("SMEMBERS {key}: {e}"));
    m.sort();
    m
}

/// Whether every key in `present` exists and none in `absent` does.
fn keys_are(c: &mut redis::Connection, present: &[&str], absent: &[&str]) -> Result<(), String> {
    for k in present {
        if entry(c, k).is_none() {
            return Err(format!("{k} missing"));
        }
    }
    for k in absent {
        if let Some(v) = entry(c, k) {
            return Err(format!("{k} still there: {v}"));
        }
    }
    Ok(())
}

/// alice sends bob a message (both connected with the given clients); bob receives it.
async fn message(a: &mut support::Client, b: &mut support::Client, alice: &str, bob: &str) {
    let text = unique("text");
    let ack = a.send(alice, bob, &unique("c"), &text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let msg = b.next_on(&format!("user/{bob}/inbox")).await;
    assert_eq!(msg["text"], text.as_str(), "{msg}");
}

async fn connect(addr: SocketAddr, client_id: &str, user: &str) -> support::Client {
    let c = support::connect(addr, client_id, user, "pw").await;
    c.subscribe(&format!("user/{user}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    c
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_cache_by_default() {
    let srv = Server::start();
    assert_eq!(
        healthz(&srv),
        json!({"status": "ok", "storage": {"ok": true}, "connection_cache": {"backend": "memory", "ok": true}})
    );
    assert_eq!(metric(&srv, "chatd_connection_cache_up"), Some(1.0));

    let alice = unique("alice");
    srv.add_user(&alice, "pw");
    let phone = format!("{alice}:phone");
    let c = connect(srv.mqtt, &phone, &alice).await;
    let listed = wait_for("the device in the memory cache", support::WAIT, || {
        let d = devices(&srv, &alice);
        if d.len() == 1 {
            Ok(d)
        } else {
            Err(format!("{d:?}"))
        }
    })
    .await;
    assert_eq!(listed[0]["node"], 1);
    assert_eq!(listed[0]["client_id"], phone.as_str());
    assert!(
        listed[0]["since_ms"].as_u64().unwrap_or(0) > 0,
        "{listed:?}"
    );
    c.disconnect().await;
    wait_for("the device gone", support::WAIT, || {
        let d = devices(&srv, &alice);
        if d.is_empty() {
            Ok(())
        } else {
            Err(format!("{d:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tracks_devices_nodes_and_expires_dead_nodes() {
    let redis = RedisServer::start();
    let prefix = unique("t");
    let node1 = start_node(1, &redis, &prefix);
    assert_eq!(
        healthz(&node1),
        json!({"status": "ok", "storage": {"ok": true}, "connection_cache": {"backend": "redis", "ok": true}})
    );
    assert_eq!(metric(&node1, "chatd_connection_cache_up"), Some(1.0));

    let (alice, bob) = (unique("alice"), unique("bob"));
    node1.add_user(&alice, "pw");
    node1.add_user(&bob, "pw");
    let (phone, laptop) = (format!("{alice}:phone"), format!("{alice}:laptop"));
    let mut lap = connect(node1.mqtt, &laptop, &alice).await;
    let ph = connect(node1.mqtt, &phone, &alice).await;
    let (phone_key, laptop_key) = (
        conn_key(&prefix, &alice, 1, &phone),
        conn_key(&prefix, &alice, 1, &laptop),
    );
    let user_key = format!("{prefix}:user:{alice}");
    let mut rc = redis.conn();
    wait_for("both devices in Redis", support::WAIT, || {
        keys_are(&mut rc, &[&phone_key, &laptop_key], &[])
    })
    .await;
    let e = entry(&mut rc, &phone_key).unwrap_or_default();
    assert_eq!(e["node"], 1, "{e}");
    assert_eq!(e["client_id"], phone.as_str(), "{e}");
    assert!(e["since_ms"].as_u64().unwrap_or(0) > 0, "{e}");
    assert!(e["last_activity_ms"].as_u64().is_some(), "{e}");
    assert_eq!(members(&mut rc, &user_key), {
        let mut v = vec![laptop_key.clone(), phone_key.clone()];
        v.sort();
        v
    });
    let ttl: i64 = redis::cmd("TTL").arg(&phone_key).query(&mut rc).unwrap();
    assert!(
        ttl > 0 && ttl <= TTL_SECS as i64,
        "TTL of {phone_key}: {ttl}"
    );

    // Disconnecting removes the entry and the set member; the other device stays.
    ph.disconnect().await;
    wait_for("the phone gone from Redis", support::WAIT, || {
        keys_are(&mut rc, &[&laptop_key], &[&phone_key])?;
        let m = members(&mut rc, &user_key);
        if m == vec![laptop_key.clone()] {
            Ok(())
        } else {
            Err(format!("members {m:?}"))
        }
    })
    .await;

    // Activity of the laptop reaches Redis (with the next TTL refresh).
    let since = entry(&mut rc, &laptop_key).unwrap_or_default()["last_activity_ms"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut b = connect(node1.mqtt, &bob, &bob).await;
    message(&mut lap, &mut b, &alice, &bob).await;
    wait_for("the laptop's activity in Redis", support::WAIT, || {
        let e = entry(&mut rc, &laptop_key).ok_or("laptop key missing")?;
        match e["last_activity_ms"].as_u64() {
            Some(t) if t > since => Ok(()),
            _ => Err(format!("{e}")),
        }
    })
    .await;

    // A second node on the same Redis shows up as another node of the same user.
    // (Nodes do not share accounts: each has its own store.)
    let mut node2 = start_node(2, &redis, &prefix);
    node2.add_user(&alice, "pw");
    let tablet = format!("{alice}:tablet");
    let _tab = connect(node2.mqtt, &tablet, &alice).await;
    let tablet_key = conn_key(&prefix, &alice, 2, &tablet);
    wait_for("the tablet on node 2 in Redis", support::WAIT, || {
        keys_are(&mut rc, &[&tablet_key, &laptop_key], &[])
    })
    .await;
    assert_eq!(entry(&mut rc, &tablet_key).unwrap_or_default()["node"], 2);
    let listed = devices(&node1, &alice);
    let nodes: Vec<(u64, String)> = listed
        .iter()
        .map(|d| {
            (
                d["node"].as_u64().unwrap_or(0),
                d["client_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![(1, laptop.clone()), (2, tablet.clone())],
        "devices seen from node 1: {listed:?}"
    );

    // Node 2 dies without cleaning up: its entry expires; node 1 keeps refreshing its own.
    node2.kill9();
    let killed = Instant::now();
    wait_for("node 2's entry expired", Duration::from_secs(60), || {
        keys_are(&mut rc, &[&laptop_key], &[&tablet_key])
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(TTL_SECS - 2),
        "the entry vanished after {:?}, before its TTL",
        killed.elapsed()
    );
    // Several TTLs later node 1's live entry is still there.
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 2)).await;
    keys_are(&mut rc, &[&laptop_key], &[&tablet_key]).unwrap_or_else(|e| panic!("{e}"));
    let listed = devices(&node1, &alice);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["client_id"], laptop.as_str());
    assert_eq!(
        members(&mut rc, &user_key),
        vec![laptop_key.clone()],
        "expired members are dropped from the set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_and_recovers() {
    let mut redis = RedisServer::start();
    let prefix = unique("t");
    let srv = start_node(1, &redis, &prefix);
    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let mut a = connect(srv.mqtt, &alice, &alice).await;
    let mut b = connect(srv.mqtt, &bob, &bob).await;
    let (alice_key, bob_key) = (
        conn_key(&prefix, &alice, 1, &alice),
        conn_key(&prefix, &bob, 1, &bob),
    );
    {
        let mut rc = redis.conn();
        wait_for("both users in Redis", support::WAIT, || {
            keys_are(&mut rc, &[&alice_key, &bob_key], &[])
        })
        .await;
    }
    message(&mut a, &mut b, &alice, &bob).await;

    // Redis goes away: the node says so, and keeps serving.
    redis.stop();
    let degraded = wait_for("/healthz degraded", support::WAIT, || {
        let h = healthz(&srv);
        if h["status"] == "degraded" {
            Ok(h)
        } else {
            Err(h.to_string())
        }
    })
    .await;
    assert_eq!(
        degraded["connection_cache"]["backend"], "redis",
        "{degraded}"
    );
    assert_eq!(degraded["connection_cache"]["ok"], false, "{degraded}");
    assert!(
        !degraded["connection_cache"]["detail"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{degraded}"
    );
    assert_eq!(metric(&srv, "chatd_connection_cache_up"), Some(0.0));
    message(&mut a, &mut b, &alice, &bob).await;
    // A device that connects during the outage is served too (and registered later).
    let during_cid = format!("{alice}:during");
    let mut during = connect(srv.mqtt, &during_cid, &alice).await;
    message(&mut during, &mut b, &alice, &bob).await;
    // Several reconnection attempts later, the outage is still logged once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = srv.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("Redis unreachable"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage; log:\n{log}");

    // Redis is back (empty): health recovers and every live connection is registered again.
    redis.restart();
    wait_for("/healthz ok again", support::WAIT, || {
        let h = healthz(&srv);
        if h == json!({"status": "ok", "storage": {"ok": true}, "connection_cache": {"backend": "redis", "ok": true}}) {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    let during_key = conn_key(&prefix, &alice, 1, &during_cid);
    let mut rc = redis.conn();
    wait_for("live connections re-registered", support::WAIT, || {
        keys_are(&mut rc, &[&alice_key, &bob_key, &during_key], &[])
    })
    .await;
    assert!(
        srv.log().contains("Redis reachable again"),
        "the recovery is logged; log:\n{}",
        srv.log()
    );
    assert_eq!(metric(&srv, "chatd_connection_cache_up"), Some(1.0));
    message(&mut a, &mut b, &alice, &bob).await;
    // A disconnect after the recovery is written again.
    during.disconnect().await;
    wait_for("the disconnected device removed", support::WAIT, || {
        keys_are(&mut rc, &[&alice_key], &[&during_key])
    })
    .await;
}

#[test]
fn bad_redis_url_stops_the_server_naming_the_key() {
    let result = Server::try_start_custom(|dir| {
        format!(
            "{}\n[redis]\nurl = \"http://127.0.0.1:6379\"\n",
            support::base_config(dir, "")
        )
    });
    match result {
        Ok(_) => panic!("chatd started with redis.url = http://…"),
        Err(e) => assert!(e.contains("redis.url"), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_starts_degraded_when_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.stop();
    let prefix = unique("t");
    let srv = start_node(1, &redis, &prefix);
    let h = healthz(&srv);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["connection_cache"]["ok"], false, "{h}");
    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let mut a = connect(srv.mqtt, &alice, &alice).await;
    let mut b = connect(srv.mqtt, &bob, &bob).await;
    message(&mut a, &mut b, &alice, &bob).await;
    redis.restart();
    wait_for("/healthz ok once Redis is up", support::WAIT, || {
        let h = healthz(&srv);
        if h["status"] == "ok" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    let mut rc = redis.conn();
    let (alice_key, bob_key) = (
        conn_key(&prefix, &alice, 1, &alice),
        conn_key(&prefix, &bob, 1, &bob),
    );
    wait_for(
        "connections made while Redis was down registered",
        support::WAIT,
        || keys_are(&mut rc, &[&alice_key, &bob_key], &[]),
    )
    .await;
}
