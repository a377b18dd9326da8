//! Shared by the push end-to-end tests (`tests/push.rs`, `tests/push_tokens.rs`,
//! `tests/group_defects.rs`; the fake servers are the root's `mod fake`): chatd with `[push]`
//! pointing at the fake FCM and APNs servers, token registration over MQTT, and waits on devices
//! and metrics.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake::{FakeApns, FakeFcm, KEY_ID, TEAM_ID, TOPIC};
use crate::support::*;

/// `[push]` with both services pointing at the fakes; the credential files are written into
/// the server's directory.
pub fn push_config(dir: &Path, fcm: &FakeFcm, apns: &FakeApns, push_extra: &str) -> String {
    format!(
        "{}\n{}",
        base_config(dir, ""),
        push_section(dir, fcm, apns, push_extra)
    )
}

/// The `[push]` tables alone (for configurations built elsewhere, like a cluster node's).
pub fn push_section(dir: &Path, fcm: &FakeFcm, apns: &FakeApns, push_extra: &str) -> String {
    let sa = dir.join("service-account.json");
    std::fs::write(&sa, fcm.service_account_json()).unwrap();
    let p8 = dir.join("AuthKey.p8");
    std::fs::write(&p8, &apns.key_pem).unwrap();
    format!(
        "[push]\nretry_base_ms = 100\nscan_interval_ms = 200\n{push_extra}\n\
         [push.fcm]\nservice_account = {}\nendpoint = {}\n\n\
         [push.apns]\nkey_file = {}\nkey_id = \"{KEY_ID}\"\nteam_id = \"{TEAM_ID}\"\n\
         topic = \"{TOPIC}\"\nenvironment = \"sandbox\"\nendpoint = {}\n",
        toml_string(&sa.to_string_lossy()),
        toml_string(&fcm.uri()),
        toml_string(&p8.to_string_lossy()),
        toml_string(&apns.uri()),
    )
}

/// chatd with the fakes as its push services and users alice, bob and carol.
pub fn start(fcm: &FakeFcm, apns: &FakeApns, push_extra: &str) -> Server {
    let s = Server::try_start_custom(|dir| push_config(dir, fcm, apns, push_extra))
        .unwrap_or_else(|e| panic!("chatd did not start: {e}"));
    for user in ["alice", "bob", "carol"] {
        s.add_user(user, &format!("{user}-pw"));
    }
    s
}

/// Registers `token` for `platform` from `client_id` of `user` and expects success.
pub async fn register(s: &Server, user: &str, client_id: &str, platform: &str, token: &str) {
    let mut c = online(s, client_id, user).await;
    let rid = unique("r");
    let reply = c
        .rpc(
            user,
            json!({"rid": rid, "op": "push.register", "platform": platform, "token": token}),
        )
        .await;
    assert_eq!(reply, json!({"rid": rid, "ok": true, "result": {}}));
    c.disconnect().await;
    wait_offline(s, user);
}

/// Waits up to [`WAIT`] until no device of `user` is connected (the server has finished the
/// sessions, so messages to `user` now write push jobs).
pub fn wait_offline(s: &Server, user: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = s.admin("GET", &format!("/admin/users/{user}/devices"), None);
        assert_eq!(status, 200, "devices of {user}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["devices"].as_array().is_some_and(|d| d.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} still online: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alice sends `text` to `to` and waits for the ack.
pub async fn send(alice: &mut Client, to: &str, text: &str) -> String {
    let ack = alice.send("alice", to, &unique("c"), text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    ack["id"].as_str().unwrap().to_string()
}

/// alice, connected and subscribed to her acks.
pub async fn alice(s: &Server) -> Client {
    let c = connect(s.mqtt, "alice", "alice", "alice-pw").await;
    c.subscribe("user/alice/ack", rumqttc::QoS::AtLeastOnce)
        .await;
    c
}

/// The current value of counter `name` on `/metrics`.
pub fn metric(s: &Server, name: &str) -> u64 {
    let (status, body) = http_get(s.http, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

/// Waits up to [`WAIT`] for a metric to reach `want`.
pub fn wait_metric(s: &Server, name: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    while metric(s, name) < want {
        assert!(Instant::now() < deadline, "{name} stayed below {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
