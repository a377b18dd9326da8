//! Presence end to end: `presence/{user}` (current state retained on subscribe, online when the
//! first device connects, offline when the last one goes away however it went), `last_seen`
//! across restarts and crashes, `presence.get`, and the subscribe rules for presence topics.

use crate::support;

use support::{now_ms, online};

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};
use support::raw::{Connect, Raw, V};
use support::*;

/// A server with alice, bob, carol and dave (password `{user}-pw`).
fn server_abcd() -> Server {
    let s = Server::start();
    for u in ["alice", "bob", "carol", "dave"] {
        s.add_user(u, &format!("{u}-pw"));
    }
    s
}

/// Slack for comparing server timestamps with the test's clock (same machine, but the server
/// may round or take the time a little before / after the event the test sees).
const SLACK_MS: i64 = 2_000;

/// Just connects `client_id` as `user` (a device that makes `user` online).
async fn device(s: &Server, client_id: &str, user: &str) -> Client {
    connect(s.mqtt, client_id, user, &format!("{user}-pw")).await
}

/// Checks a presence payload: exactly `{user, status, last_seen}` with the given user and status;
/// returns `last_seen` (`None` for null).
fn assert_presence(v: &Value, user: &str, status: &str) -> Option<i64> {
    assert_eq!(v["user"], user, "presence: {v}");
    assert_eq!(v["status"], status, "presence: {v}");
    let keys: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("presence is not an object: {v}"))
        .keys()
        .map(|k| k.as_str())
        .collect();
    let want: BTreeSet<&str> = ["user", "status", "last_seen"].into();
    assert_eq!(keys, want, "presence fields: {v}");
    match &v["last_seen"] {
        Value::Null => None,
        n => Some(
            n.as_i64()
                .unwrap_or_else(|| panic!("last_seen is not an integer: {v}")),
        ),
    }
}

/// Asserts `t` lies in `[from - SLACK_MS, to + SLACK_MS]`.
fn assert_between(what: &str, t: i64, from: i64, to: i64) {
    assert!(
        t >= from - SLACK_MS && t <= to + SLACK_MS,
        "{what}: {t} not within [{from}, {to}] (±{SLACK_MS} ms)"
    );
}

/// Subscribes `c` to `presence/{user}` and returns the state that arrives at once (which must
/// carry the retain flag).
async fn watch(c: &mut Client, user: &str) -> Value {
    let topic = format!("presence/{user}");
    let codes = c.subscribe(&topic, QoS::AtLeastOnce).await;
    assert!(
        matches!(codes.as_slice(), [rumqttc::SubscribeReasonCode::Success(_)]),
        "subscribe {topic}: {codes:?}"
    );
    let p = c.next_publish(&topic).await;
    assert!(
        p.retain,
        "current state on {topic} without retain flag: {p:?}"
    );
    serde_json::from_slice(&p.payload).unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {p:?}"))
}

/// A watcher connection (as `user`, device `watch-{n}`) subscribed to `presence/{target}`;
/// returns it with the state it got on subscribe.
async fn watcher(s: &Server, user: &str, target: &str) -> (Client, Value) {
    let mut c = device(s, &format!("{user}:{}", unique("w")), user).await;
    let state = watch(&mut c, target).await;
    (c, state)
}

/// The next presence change for `user` seen by `c`.
async fn next_presence(c: &mut Client, user: &str) -> Value {
    c.next_on(&format!("presence/{user}")).await
}

async fn presence_get(c: &mut Client, me: &str, users: Value) -> Value {
    let rid = unique("pg");
    let reply = c
        .rpc(
            me,
            json!({"rid": rid, "op": "presence.get", "users": users}),
        )
        .await;
    assert_eq!(reply["rid"], rid.as_str(), "{reply}");
    reply
}

fn assert_rpc_bad_request(reply: &Value, what: &str) {
    assert_eq!(reply["ok"], false, "{what}: {reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{what}: {reply}");
    assert!(
        reply["error"]["message"].is_string(),
        "{what}: error without message: {reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_gets_retained_state_then_changes() {
    let s = server_abcd();

    // Never seen: offline, last_seen null, retained.
    let (mut carol, state) = watcher(&s, "carol", "bob").await;
    assert_eq!(assert_presence(&state, "bob", "offline"), None, "{state}");

    // First device connects: online, last_seen about now.
    let before = now_ms();
    let bob = device(&s, "bob", "bob").await;
    let change = next_presence(&mut carol, "bob").await;
    let seen = assert_presence(&change, "bob", "online")
        .unwrap_or_else(|| panic!("online without last_seen: {change}"));
    assert_between("online last_seen", seen, before, now_ms());

    // A later subscriber gets "online" at once, retained, with last_seen about now.
    let before = now_ms();
    let (mut alice, state) = watcher(&s, "alice", "bob").await;
    let seen = assert_presence(&state, "bob", "online")
        .unwrap_or_else(|| panic!("online without last_seen: {state}"));
    assert_between("online last_seen on subscribe", seen, before, now_ms());

    // Clean DISCONNECT of the only device: offline for every watcher, last_seen about now.
    let before = now_ms();
    bob.disconnect().await;
    let off_c = next_presence(&mut carol, "bob").await;
    let after = now_ms();
    let last = assert_presence(&off_c, "bob", "offline")
        .unwrap_or_else(|| panic!("offline without last_seen: {off_c}"));
    assert_between("offline last_seen", last, before, after);
    let off_a = next_presence(&mut alice, "bob").await;
    assert_eq!(off_a, off_c, "watchers disagree");

    // A new subscriber now gets the same offline state, retained.
    let (_dave, state) = watcher(&s, "dave", "bob").await;
    assert_eq!(state, off_c, "state on subscribe after going offline");

    // MQTT 5 subscriber: same state with the retain flag.
    let dave5 = connect5(s.mqtt, "dave:five", "dave", "dave-pw").await;
    let codes = dave5.subscribe("presence/bob", QoS5::AtLeastOnce).await;
    assert!(
        matches!(
            codes.as_slice(),
            [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)]
        ),
        "{codes:?}"
    );
    let mut dave5 = dave5;
    let p = dave5.next_publish("presence/bob").await;
    assert!(p.retain, "v5: state without retain flag: {p:?}");
    let v: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(v, off_c, "v5 state");

    // Back online: watchers hear it.
    let _bob = device(&s, "bob:tablet", "bob").await;
    let on = next_presence(&mut carol, "bob").await;
    assert_presence(&on, "bob", "online");
    let on = next_presence(&mut alice, "bob").await;
    assert_presence(&on, "bob", "online");
    let on = dave5.next_on("presence/bob").await;
    assert_presence(&on, "bob", "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_may_watch_several_and_itself() {
    let s = server_abcd();
    let mut carol = device(&s, "carol", "carol").await;
    let _alice = device(&s, "alice", "alice").await;
    let a = watch(&mut carol, "alice").await;
    assert_presence(&a, "alice", "online");
    let b = watch(&mut carol, "bob").await;
    assert_eq!(assert_presence(&b, "bob", "offline"), None);
    let me = watch(&mut carol, "carol").await;
    assert_presence(&me, "carol", "online");

    // Only the user that changed is announced, on its own topic.
    let bob = device(&s, "bob", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    carol
        .nothing_on("presence/alice", Duration::from_millis(300))
        .await;
    drop(bob);
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "offline");
    carol
        .nothing_on("presence/alice", Duration::from_millis(300))
        .await;
    carol
        .nothing_on("presence/carol", Duration::from_millis(100))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_and_other_topics_are_refused() {
    let s = server_abcd();
    let carol = device(&s, "carol", "carol").await;
    for filter in ["presence/+", "presence/#", "+/bob", "#", "presence/+/x"] {
        let codes = carol.subscribe(filter, QoS::AtLeastOnce).await;
        assert_eq!(
            codes,
            vec![rumqttc::SubscribeReasonCode::Failure],
            "subscribe {filter}"
        );
    }
    // v5: 0x87 not authorized.
    let c5 = connect5(s.mqtt, "carol:five", "carol", "carol-pw").await;
    let codes = c5.subscribe("presence/+", QoS5::AtLeastOnce).await;
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::NotAuthorized]
    );
    // A client may not publish presence itself (v5: PUBACK 0x87, nothing announced).
    let (mut watcher_c, state) = watcher(&s, "alice", "bob").await;
    assert_presence(&state, "bob", "offline");
    let mut c5 = c5;
    let reason = c5
        .publish_result(
            "presence/bob",
            json!({"user":"bob","status":"online","last_seen":1}).to_string(),
        )
        .await;
    assert_eq!(
        reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
    );
    watcher_c
        .nothing_on("presence/bob", Duration::from_millis(500))
        .await;
    // The mixed SUBSCRIBE: the allowed filter is granted, the wildcard refused.
    let codes = carol
        .subscribe_many(&[
            ("presence/bob", QoS::AtLeastOnce),
            ("presence/+", QoS::AtLeastOnce),
        ])
        .await;
    assert!(
        matches!(codes[0], rumqttc::SubscribeReasonCode::Success(_)),
        "{codes:?}"
    );
    assert_eq!(codes[1], rumqttc::SubscribeReasonCode::Failure, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_while_any_device_is_connected() {
    let s = server_abcd();
    let (mut carol, state) = watcher(&s, "carol", "bob").await;
    assert_presence(&state, "bob", "offline");

    let phone = device(&s, "bob:phone", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");

    // A second device: at most a repeated "online", never "offline".
    let laptop = device(&s, "bob:laptop", "bob").await;
    let five = connect5(s.mqtt, "bob:five", "bob", "bob-pw").await;
    if let Ok(p) = carol
        .next_publish_within("presence/bob", Duration::from_millis(500))
        .await
    {
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_presence(&v, "bob", "online");
    }
    // Drain any other repeated online.
    while let Ok(p) = carol
        .next_publish_within("presence/bob", Duration::from_millis(200))
        .await
    {
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_presence(&v, "bob", "online");
    }

    // One device leaving (clean DISCONNECT), another dropping its socket: no offline.
    phone.disconnect().await;
    drop(laptop);
    carol
        .nothing_on("presence/bob", Duration::from_millis(1000))
        .await;
    // A new subscriber still sees online.
    let (_alice, state) = watcher(&s, "alice", "bob").await;
    assert_presence(&state, "bob", "online");

    // The last device goes: offline.
    let before = now_ms();
    five.disconnect().await;
    let off = next_presence(&mut carol, "bob").await;
    let last = assert_presence(&off, "bob", "offline")
        .unwrap_or_else(|| panic!("offline without last_seen: {off}"));
    assert_between("offline last_seen", last, before, now_ms());
    carol
        .nothing_on("presence/bob", Duration::from_millis(500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_does_not_go_offline() {
    let s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;
    let mut first = device(&s, "bob:phone", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");

    let second = device(&s, "bob:phone", "bob").await;
    assert!(first.closed().await, "the first connection stayed open");
    // Repeated "online" would be tolerable, "offline" is not.
    while let Ok(p) = carol
        .next_publish_within("presence/bob", Duration::from_millis(1000))
        .await
    {
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        assert_presence(&v, "bob", "online");
    }
    let (_alice, state) = watcher(&s, "alice", "bob").await;
    assert_presence(&state, "bob", "online");

    // Same with MQTT 5 (the first is told 0x8E).
    let mut first5 = connect5(s.mqtt, "bob:five", "bob", "bob-pw").await;
    let second5 = connect5(s.mqtt, "bob:five", "bob", "bob-pw").await;
    assert!(first5.closed().await, "the first v5 connection stayed open");
    drop(second);
    // bob:five (the second) is still there.
    carol
        .nothing_on("presence/bob", Duration::from_millis(1000))
        .await;

    second5.disconnect().await;
    let off = next_presence(&mut carol, "bob").await;
    assert_presence(&off, "bob", "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_goes_offline() {
    let s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;

    // rumqttc client dropped without DISCONNECT.
    let bob = device(&s, "bob:phone", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    let before = now_ms();
    let start = Instant::now();
    drop(bob);
    let off = next_presence(&mut carol, "bob").await;
    let took = start.elapsed();
    let last = assert_presence(&off, "bob", "offline")
        .unwrap_or_else(|| panic!("offline without last_seen: {off}"));
    assert_between("offline last_seen", last, before, now_ms());
    eprintln!("presence: dropped socket (3.1.1, rumqttc) seen offline after {took:?}");

    // Raw socket closed without DISCONNECT, MQTT 5.
    let raw = Raw::login(s.mqtt, V::V5, "bob:raw", "bob", "bob-pw").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    let start = Instant::now();
    drop(raw);
    let off = next_presence(&mut carol, "bob").await;
    eprintln!(
        "presence: dropped socket (5.0, raw TCP close) seen offline after {:?}",
        start.elapsed()
    );
    assert_presence(&off, "bob", "offline");

    // Raw DISCONNECT packet, 3.1.1.
    let mut raw = Raw::login(s.mqtt, V::V4, "bob:raw4", "bob", "bob-pw").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    raw.send(&support::raw::disconnect()).await;
    let off = next_presence(&mut carol, "bob").await;
    assert_presence(&off, "bob", "offline");
    drop(raw);
    carol
        .nothing_on("presence/bob", Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_goes_offline() {
    let s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;
    for v in [V::V4, V::V5] {
        let connect = Connect::new(v, &format!("bob:ka-{v:?}"), "bob", "bob-pw").keep_alive(2);
        let mut silent = Raw::login_with(s.mqtt, &connect).await;
        let start = Instant::now();
        assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
        // The client stays silent (no PINGREQ); the socket stays open on our side.
        let off = next_presence(&mut carol, "bob").await;
        let took = start.elapsed();
        let last = assert_presence(&off, "bob", "offline")
            .unwrap_or_else(|| panic!("offline without last_seen: {off}"));
        assert_between(
            "keep-alive offline last_seen",
            last,
            now_ms() - 1000,
            now_ms(),
        );
        eprintln!(
            "presence: {v:?} keep-alive 2 s, silent client seen offline {took:?} after CONNACK \
             (1.5 x keep-alive = 3 s)"
        );
        // The server did close that connection.
        silent
            .expect_closed(WAIT, "silent client after keep-alive expiry")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_last_seen() {
    let mut s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;
    let bob = device(&s, "bob", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    bob.disconnect().await;
    let off = next_presence(&mut carol, "bob").await;
    let bob_last = assert_presence(&off, "bob", "offline").expect("last_seen");

    // dave is online when the server stops.
    let dave_connected = now_ms();
    let dave = device(&s, "dave", "dave").await;
    let (_w, state) = watcher(&s, "alice", "dave").await;
    assert_presence(&state, "dave", "online");

    drop(carol);
    assert!(s.stop().success(), "graceful stop failed");
    drop(dave);
    s.restart();
    let restarted = now_ms();

    // Nobody is online; last_seen survives exactly for bob.
    let (mut alice, state) = watcher(&s, "alice", "bob").await;
    assert_eq!(
        assert_presence(&state, "bob", "offline"),
        Some(bob_last),
        "bob's last_seen after a graceful restart: {state}"
    );
    let d = watch(&mut alice, "dave").await;
    let dave_last = assert_presence(&d, "dave", "offline")
        .unwrap_or_else(|| panic!("dave was online at the stop but has no last_seen: {d}"));
    assert_between("dave's last_seen", dave_last, dave_connected, restarted);
    // carol was connected before the restart (as a watcher): offline with a last_seen.
    let c = watch(&mut alice, "carol").await;
    assert_presence(&c, "carol", "offline");
    assert!(c["last_seen"].is_i64(), "carol's last_seen lost: {c}");

    // presence.get agrees (alice is online: she is connected).
    let mut me = online(&s, "alice:rpc", "alice").await;
    let r = presence_get(&mut me, "alice", json!(["bob", "dave", "alice"])).await;
    assert_eq!(r["ok"], true, "{r}");
    let users = r["result"]["users"].as_array().unwrap();
    assert_eq!(users[0], state, "{r}");
    assert_eq!(users[1], d, "{r}");
    assert_presence(&users[2], "alice", "online");

    // Coming back works as before.
    let _bob = device(&s, "bob:phone", "bob").await;
    assert_presence(&next_presence(&mut alice, "bob").await, "bob", "online");

    // And a normal send still works.
    let ack = me.send("alice", "bob", "after-restart", "hi").await;
    assert_eq!(ack["status"], "sent", "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_restart_shows_offline() {
    let mut s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;
    let bob = device(&s, "bob", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    let _dave = device(&s, "dave:phone", "dave").await;
    s.kill9();
    drop(bob);
    drop(carol);
    s.restart();

    let (mut alice, state) = watcher(&s, "alice", "bob").await;
    let bob_last = assert_presence(&state, "bob", "offline");
    let d = watch(&mut alice, "dave").await;
    let dave_last = assert_presence(&d, "dave", "offline");
    eprintln!(
        "presence: after kill -9 + restart bob last_seen={bob_last:?}, dave last_seen={dave_last:?} \
         (now {})",
        now_ms()
    );
    for t in [bob_last, dave_last].into_iter().flatten() {
        assert!(t <= now_ms() + SLACK_MS, "last_seen in the future: {t}");
    }
    let _bob = device(&s, "bob", "bob").await;
    assert_presence(&next_presence(&mut alice, "bob").await, "bob", "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_get_in_request_order() {
    let s = server_abcd();
    let mut alice = online(&s, "alice", "alice").await;
    let bob = device(&s, "bob", "bob").await;
    let (mut w, _) = watcher(&s, "dave", "bob").await;

    let before = now_ms();
    let r = presence_get(&mut alice, "alice", json!(["carol", "bob", "alice"])).await;
    let after = now_ms();
    assert_eq!(r["ok"], true, "{r}");
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["ok", "result", "rid"].into(), "{r}");
    let users = r["result"]["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users array: {r}"));
    assert_eq!(users.len(), 3, "{r}");
    assert_eq!(assert_presence(&users[0], "carol", "offline"), None, "{r}");
    let t = assert_presence(&users[1], "bob", "online").expect("online last_seen");
    assert_between("bob online last_seen", t, before, after);
    assert_presence(&users[2], "alice", "online");

    // After bob leaves, get shows exactly the announced offline state.
    bob.disconnect().await;
    let off = next_presence(&mut w, "bob").await;
    assert_presence(&off, "bob", "offline");
    let r = presence_get(&mut alice, "alice", json!(["bob"])).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["users"], json!([off]), "{r}");

    // Users without an account (valid ids) and repeated ones: offline / never seen, in order.
    let r = presence_get(&mut alice, "alice", json!(["nobody", "bob", "nobody"])).await;
    assert_eq!(r["ok"], true, "{r}");
    let users = r["result"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{r}");
    assert_eq!(assert_presence(&users[0], "nobody", "offline"), None);
    assert_eq!(users[1], off, "{r}");
    assert_eq!(users[2], users[0], "{r}");

    // 100 users is the maximum and is fine.
    let many: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let r = presence_get(&mut alice, "alice", json!(many)).await;
    assert_eq!(r["ok"], true, "{r}");
    let got: Vec<&str> = r["result"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(got, many, "order of 100 users");

    // Over MQTT 5 as well.
    let mut carol5 = connect5(s.mqtt, "carol:five", "carol", "carol-pw").await;
    carol5.subscribe("user/carol/rpc", QoS5::AtLeastOnce).await;
    let r = carol5
        .rpc(
            "carol",
            json!({"rid":"g5","op":"presence.get","users":["alice","carol"]}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_presence(&r["result"]["users"][0], "alice", "online");
    assert_presence(&r["result"]["users"][1], "carol", "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_get_refusals_and_nothing_crashes() {
    let s = server_abcd();
    let mut alice = online(&s, "alice", "alice").await;
    let mut bob = online(&s, "bob", "bob").await;

    let too_many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let cases = [
        ("missing users", json!({"rid":"e1","op":"presence.get"})),
        (
            "empty users",
            json!({"rid":"e2","op":"presence.get","users":[]}),
        ),
        (
            "101 users",
            json!({"rid":"e3","op":"presence.get","users":too_many}),
        ),
        (
            "invalid user id",
            json!({"rid":"e4","op":"presence.get","users":["bob","not a user!"]}),
        ),
        (
            "empty user id",
            json!({"rid":"e5","op":"presence.get","users":[""]}),
        ),
        (
            "unknown field",
            json!({"rid":"e6","op":"presence.get","users":["bob"],"extra":1}),
        ),
        (
            "users not a list",
            json!({"rid":"e7","op":"presence.get","users":"bob"}),
        ),
        (
            "user not a string",
            json!({"rid":"e8","op":"presence.get","users":[42]}),
        ),
    ];
    for (what, req) in cases {
        let reply = alice.rpc("alice", req).await;
        assert_rpc_bad_request(&reply, what);
        assert!(reply.get("result").is_none(), "{what}: {reply}");
    }
    // Too long user id (65 characters).
    let reply = alice
        .rpc(
            "alice",
            json!({"rid":"e9","op":"presence.get","users":["x".repeat(65)]}),
        )
        .await;
    assert_rpc_bad_request(&reply, "65-character user id");

    // Garbage on the rpc topic does not hurt either.
    alice
        .publish_bytes("chat/alice/rpc", QoS::AtLeastOnce, b"{nope".to_vec())
        .await;

    // Still working: a good request, and a normal send.
    let r = presence_get(&mut alice, "alice", json!(["bob"])).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_presence(&r["result"]["users"][0], "bob", "online");
    let ack = alice.send("alice", "bob", "still-ok", "fine").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let m = bob.next_on("user/bob/inbox").await;
    assert_eq!(m["text"], "fine", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_last_seen_of_users_gone_well_before() {
    let mut s = server_abcd();
    let (mut carol, _) = watcher(&s, "carol", "bob").await;
    let bob = device(&s, "bob", "bob").await;
    assert_presence(&next_presence(&mut carol, "bob").await, "bob", "online");
    let dave = device(&s, "dave", "dave").await;
    bob.disconnect().await;
    let off = next_presence(&mut carol, "bob").await;
    let bob_last = assert_presence(&off, "bob", "offline").expect("last_seen");
    // Setup, not a check: let more than the ~1 s persistence window pass before the crash.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = now_ms();
    s.kill9();
    drop(dave);
    drop(carol);
    s.restart();

    let (mut alice, state) = watcher(&s, "alice", "bob").await;
    let after = assert_presence(&state, "bob", "offline").unwrap_or_else(|| {
        panic!("bob went offline 3 s before kill -9 but lost last_seen: {state}")
    });
    assert!(
        after <= bob_last && after >= bob_last - 1_000 - SLACK_MS,
        "bob's last_seen after kill -9: {after}, announced {bob_last}"
    );
    let d = watch(&mut alice, "dave").await;
    let dave_last = assert_presence(&d, "dave", "offline");
    eprintln!(
        "presence: kill -9: bob announced {bob_last}, after restart {after}; dave (online for 3 s \
         at the kill at {killed}) last_seen={dave_last:?}"
    );
}
