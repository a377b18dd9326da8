//! The operator interface (docs/operations-spec.md): health and metrics, the admin HTTP API, the
//! `chatd user …` commands with the server stopped and running, the admin token file,
//! configuration errors, and graceful shutdown.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::raw::{self, Connect, Raw, V};
use support::{http_get, http_request, unique, Server};

fn body_json(status: u16, body: &str) -> Value {
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("HTTP {status} body is not JSON ({e}): {body:?}"))
}

/// The value of a Prometheus sample `name` (without labels) in `text`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|first| first == name || first.starts_with(&format!("{name}{{")))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn metrics(srv: &Server) -> String {
    let (status, text) = http_get(srv.http, "/metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    text
}

/// Polls `metric` until `ok(value)` holds; returns the last value seen.
async fn wait_metric(srv: &Server, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let value = metric(&metrics(srv), name).unwrap_or_else(|| panic!("no {name} in /metrics"));
        if ok(value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CONNACK code of a 3.1.1 password login.
async fn login_code(srv: &Server, user: &str, pw: &str) -> u8 {
    // A device id of its own, so that a probe never takes over a test's real connection.
    let cid = format!("{user}:probe");
    let (mut r, code) =
        Raw::connect_with(srv.mqtt, &raw::Connect::new(V::V4, &cid, user, pw)).await;
    let code = code.unwrap_or_else(|e| panic!("no CONNACK for {user}: {e:?}"));
    r.send(&raw::disconnect()).await;
    code
}

fn users(srv: &Server) -> Vec<String> {
    let (status, body) = srv.admin("GET", "/admin/users", None);
    assert_eq!(status, 200, "GET /admin/users: {body}");
    body_json(status, &body)["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users array: {body}"))
        .iter()
        .map(|u| u.as_str().expect("user ids are strings").to_string())
        .collect()
}

fn assert_error_body(status: u16, body: &str, what: &str) {
    let v = body_json(status, body);
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: expected {{\"error\": …}}, got {body}"
    );
}

/// alice (3.1.1) and bob (5.0) exchange a message.
async fn exchange(srv: &Server, alice: &str, apw: &str, bob: &str, bpw: &str) -> Value {
    let mut a = support::connect(srv.mqtt, alice, alice, apw).await;
    let mut b = support::connect5(srv.mqtt, bob, bob, bpw).await;
    a.subscribe(&format!("user/{alice}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    b.subscribe(
        &format!("user/{bob}/#"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    )
    .await;
    let text = unique("text");
    let ack = a.send(alice, bob, &unique("c"), &text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let msg = b.next_on(&format!("user/{bob}/inbox")).await;
    assert_eq!(msg["text"], text.as_str());
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics() {
    let srv = Server::start();
    let (status, body) = http_get(srv.http, "/healthz");
    assert_eq!(status, 200, "/healthz: {body}");
    assert_eq!(
        body_json(status, &body),
        json!({"status": "ok", "storage": {"ok": true}, "connection_cache": {"backend": "memory", "ok": true}})
    );

    let text = metrics(&srv);
    for name in [
        "chatd_connections",
        "chatd_messages_stored_total",
        "chatd_store_batches_total",
        "chatd_connections_refused_total",
    ] {
        assert!(
            metric(&text, name).is_some(),
            "/metrics lacks {name}:\n{text}"
        );
    }
    let stored_before = metric(&text, "chatd_messages_stored_total").unwrap();
    let refused_before = metric(&text, "chatd_connections_refused_total").unwrap();

    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let watcher = support::connect(srv.mqtt, &alice, &alice, "pw").await;
    let n = wait_metric(&srv, "chatd_connections", |v| v >= 1.0).await;
    assert!(n >= 1.0, "chatd_connections is {n} with a client connected");
    exchange(&srv, &alice, "pw", &bob, "pw").await;
    let stored = wait_metric(&srv, "chatd_messages_stored_total", |v| {
        v >= stored_before + 1.0
    })
    .await;
    assert!(
        stored >= stored_before + 1.0,
        "chatd_messages_stored_total did not grow after a send ({stored_before} -> {stored})"
    );
    assert_eq!(login_code(&srv, &alice, "wrong").await, 4);
    let refused = wait_metric(&srv, "chatd_connections_refused_total", |v| {
        v >= refused_before + 1.0
    })
    .await;
    assert!(
        refused >= refused_before + 1.0,
        "refused connections not counted"
    );
    watcher.disconnect().await;
    // The exchange's clients are dropped too: the gauge goes back to 0.
    let n = wait_metric(&srv, "chatd_connections", |v| v == 0.0).await;
    assert_eq!(n, 0.0, "chatd_connections after every client left");
    let (status, _) = http_get(srv.http, "/nope");
    assert_eq!(status, 404);
}

/// A message for an offline device is held in memory, not written as a record, until it is
/// acknowledged or a second has passed: `/metrics` shows how many are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_queue_entries_are_a_gauge() {
    let srv = Server::start();
    assert_eq!(
        metric(&metrics(&srv), "chatd_queue_entries_held"),
        Some(0.0)
    );
    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let mut a = support::connect(srv.mqtt, &alice, &alice, "pw").await;
    a.subscribe(&format!("user/{alice}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let ack = a.send(&alice, &bob, &unique("c"), "for later").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    // Nothing else commits, so the entry stays held until bob acknowledges it.
    let held = wait_metric(&srv, "chatd_queue_entries_held", |v| v == 1.0).await;
    assert_eq!(held, 1.0, "bob's entry is held");
    let mut b = support::connect(srv.mqtt, &bob, &bob, "pw").await;
    b.subscribe(&format!("user/{bob}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let msg = b.next_on(&format!("user/{bob}/inbox")).await;
    assert_eq!(msg["text"], "for later");
    let held = wait_metric(&srv, "chatd_queue_entries_held", |v| v == 0.0).await;
    assert_eq!(held, 0.0, "bob's PUBACK dequeued the held entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token() {
    let srv = Server::start();
    assert!(!srv.token.is_empty());
    let victim = unique("victim");
    srv.add_user(&victim, "pw");
    let new_user = unique("intruder");
    let add = json!({"user": new_user, "password": "pw"}).to_string();
    let pw = json!({"password": "hacked"}).to_string();
    let wrong = format!("{}x", srv.token);
    let prefix = &srv.token[..srv.token.len() - 1];
    let requests: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", "/admin/users".into(), None),
        ("POST", "/admin/users".into(), Some(add.as_str())),
        (
            "PUT",
            format!("/admin/users/{victim}/password"),
            Some(pw.as_str()),
        ),
        ("DELETE", format!("/admin/users/{victim}"), None),
    ];
    for (method, path, body) in &requests {
        for token in [
            None,
            Some("wrong-token-0123456789"),
            Some(wrong.as_str()),
            Some(prefix),
            Some(""),
        ] {
            let (status, text) = http_request(srv.http, method, path, token, *body);
            assert_eq!(status, 401, "{method} {path} with token {token:?}: {text}");
            assert_error_body(status, &text, "401");
        }
        // The right token in another scheme is not accepted either.
        let (status, _) = basic_auth(&srv, method, path, *body);
        assert_eq!(status, 401, "{method} {path} with Basic auth");
    }
    // Nothing happened.
    let list = users(&srv);
    assert!(list.contains(&victim), "{list:?}");
    assert!(!list.contains(&new_user), "{list:?}");
    assert_eq!(login_code(&srv, &victim, "pw").await, 0);
    assert_eq!(login_code(&srv, &victim, "hacked").await, 4);
}

fn basic_auth(srv: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(srv.http).unwrap();
    s.set_read_timeout(Some(support::WAIT)).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        srv.token,
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_users() {
    let srv = Server::start();
    let (alice, bob) = (unique("alice"), unique("bob"));
    // add
    let (status, body) = srv.admin(
        "POST",
        "/admin/users",
        Some(&json!({"user": alice, "password": "pw-1"}).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body_json(status, &body), json!({"user": alice}));
    srv.add_user(&bob, "pw-bob");
    // duplicate
    let (status, body) = srv.admin(
        "POST",
        "/admin/users",
        Some(&json!({"user": alice, "password": "other"}).to_string()),
    );
    assert_eq!(status, 409, "duplicate: {body}");
    assert_error_body(status, &body, "duplicate");
    assert_eq!(
        login_code(&srv, &alice, "pw-1").await,
        0,
        "a 409 must not change the password"
    );
    // invalid
    let long = "u".repeat(65);
    for bad in [
        "",
        "a b",
        "al/ice",
        "alice:phone",
        "é",
        "a+b",
        "#",
        long.as_str(),
    ] {
        let (status, body) = srv.admin(
            "POST",
            "/admin/users",
            Some(&json!({"user": bad, "password": "pw"}).to_string()),
        );
        assert_eq!(status, 400, "user id {bad:?}: {body}");
        assert_error_body(status, &body, "invalid id");
    }
    let max = "u".repeat(64);
    let (status, body) = srv.admin(
        "POST",
        "/admin/users",
        Some(&json!({"user": max, "password": "pw"}).to_string()),
    );
    assert_eq!(status, 201, "64-character id: {body}");
    for bad_body in [
        "not json",
        "{}",
        r#"{"user":"x1"}"#,
        r#"{"password":"x"}"#,
        r#"{"user":5,"password":"x"}"#,
    ] {
        let (status, body) = srv.admin("POST", "/admin/users", Some(bad_body));
        assert_eq!(status, 400, "body {bad_body}: {body}");
    }
    // list, sorted
    let list = users(&srv);
    for u in [&alice, &bob, &max] {
        assert!(list.contains(u), "{u} missing from {list:?}");
    }
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted, "GET /admin/users must be sorted");
    assert!(!list.iter().any(|u| u.contains(' ')), "{list:?}");

    // passwd: old password refused, new one works, live sessions closed.
    let mut live = support::connect(srv.mqtt, &alice, &alice, "pw-1").await;
    let mut live5 = support::connect5(srv.mqtt, &format!("{alice}:five"), &alice, "pw-1").await;
    let mut other = support::connect(srv.mqtt, &bob, &bob, "pw-bob").await;
    let (status, body) = srv.admin(
        "PUT",
        &format!("/admin/users/{alice}/password"),
        Some(&json!({"password": "pw-2"}).to_string()),
    );
    assert_eq!(status, 204, "passwd: {body}");
    assert!(
        live.closed().await,
        "3.1.1 session survived a password change"
    );
    assert!(
        live5.closed().await,
        "5.0 session survived a password change"
    );
    assert_eq!(
        login_code(&srv, &alice, "pw-1").await,
        4,
        "old password after passwd"
    );
    assert_eq!(
        login_code(&srv, &alice, "pw-2").await,
        0,
        "new password after passwd"
    );
    let (status, body) = srv.admin(
        "PUT",
        &format!("/admin/users/{}/password", unique("ghost")),
        Some(&json!({"password": "x"}).to_string()),
    );
    assert_eq!(status, 404, "passwd of an unknown user: {body}");
    let (status, _) = srv.admin(
        "PUT",
        &format!("/admin/users/{alice}/password"),
        Some("nope"),
    );
    assert_eq!(status, 400, "passwd with a bad body");
    assert_eq!(login_code(&srv, &alice, "pw-2").await, 0);

    // remove: live session closed, login refused, second remove 404.
    let mut live = support::connect(srv.mqtt, &alice, &alice, "pw-2").await;
    let (status, body) = srv.admin("DELETE", &format!("/admin/users/{alice}"), None);
    assert_eq!(status, 204, "remove: {body}");
    assert!(live.closed().await, "session of a removed user survived");
    assert_eq!(
        login_code(&srv, &alice, "pw-2").await,
        4,
        "removed user logs in"
    );
    let (status, body) = srv.admin("DELETE", &format!("/admin/users/{alice}"), None);
    assert_eq!(status, 404, "second remove: {body}");
    assert_error_body(status, &body, "404");
    let (status, _) = srv.admin("DELETE", &format!("/admin/users/{}", unique("ghost")), None);
    assert_eq!(status, 404);
    assert!(!users(&srv).contains(&alice));
    // Other users are untouched; messages to the removed user are refused.
    assert!(
        !other.closed_within(Duration::from_secs(1)).await,
        "bob was disconnected"
    );
    other
        .subscribe(&format!("user/{bob}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let ack = other.send(&bob, &alice, &unique("c"), "gone?").await;
    assert_eq!(
        ack["error"]["code"], "not_found",
        "send to a removed user: {ack}"
    );
    // The id stays reserved until an administrator gives it out again explicitly.
    let (status, body) = srv.admin(
        "POST",
        "/admin/users",
        Some(&json!({"user": alice, "password": "pw-3"}).to_string()),
    );
    assert_eq!(status, 409, "add of a removed id: {body}");
    let (status, body) = srv.admin(
        "POST",
        "/admin/users",
        Some(&json!({"user": alice, "password": "pw-3", "reclaim": true}).to_string()),
    );
    assert_eq!(status, 201, "reclaim: {body}");
    assert_eq!(login_code(&srv, &alice, "pw-3").await, 0);
}

fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the user commands against `srv` (stopped or running) and checks their results.
fn cli_user_commands(srv: &Server, carol: &str, dave: &str) {
    let out = srv.cli(&["user", "add", carol, "--password", "pw-c1"]);
    assert_exit(&out, 0, "user add");
    assert_eq!(stdout(&out).trim(), format!("added {carol}"));
    let out = srv.cli(&["user", "add", dave, "--password", "pw-d"]);
    assert_exit(&out, 0, "user add");

    let out = srv.cli(&["user", "add", carol, "--password", "x"]);
    assert_exit(&out, 1, "user add of an existing user");
    assert!(
        !stderr(&out).trim().is_empty(),
        "no message for an existing user"
    );
    for bad in ["a b", "bad/id", ""] {
        let out = srv.cli(&["user", "add", bad, "--password", "x"]);
        assert_exit(&out, 1, &format!("user add {bad:?}"));
        assert!(
            !stderr(&out).trim().is_empty(),
            "no message for invalid id {bad:?}"
        );
    }

    let out = srv.cli(&["user", "list"]);
    assert_exit(&out, 0, "user list");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert!(lines.contains(&carol.to_string()), "{lines:?}");
    assert!(lines.contains(&dave.to_string()), "{lines:?}");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "user list must be sorted");

    let out = srv.cli(&["user", "passwd", carol, "--password", "pw-c2"]);
    assert_exit(&out, 0, "user passwd");
    let out = srv.cli(&["user", "passwd", &unique("ghost"), "--password", "x"]);
    assert!(!out.status.success(), "passwd of an unknown user succeeded");
    assert!(!stderr(&out).trim().is_empty());

    let out = srv.cli(&["user", "remove", dave]);
    assert_exit(&out, 0, "user remove");
    let out = srv.cli(&["user", "remove", dave]);
    assert!(!out.status.success(), "second remove succeeded");
    assert!(!stderr(&out).trim().is_empty());

    let out = srv.cli(&["user", "list"]);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert!(lines.contains(&carol.to_string()), "{lines:?}");
    assert!(!lines.contains(&dave.to_string()), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_with_server_stopped() {
    let mut srv = Server::start();
    let status = srv.stop();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let (carol, dave) = (unique("carol"), unique("dave"));
    cli_user_commands(&srv, &carol, &dave);
    srv.restart();
    assert_eq!(
        login_code(&srv, &carol, "pw-c2").await,
        0,
        "password set offline"
    );
    assert_eq!(login_code(&srv, &carol, "pw-c1").await, 4);
    assert_eq!(
        login_code(&srv, &dave, "pw-d").await,
        4,
        "user removed offline"
    );
    let list = users(&srv);
    assert!(list.contains(&carol) && !list.contains(&dave), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_with_server_running() {
    let srv = Server::start();
    let (carol, dave, erin) = (unique("carol"), unique("dave"), unique("erin"));
    srv.add_user(&erin, "pw-e");
    let mut live = support::connect(srv.mqtt, &erin, &erin, "pw-e").await;
    cli_user_commands(&srv, &carol, &dave);
    // The running server saw every change at once.
    assert_eq!(
        login_code(&srv, &carol, "pw-c2").await,
        0,
        "password set online"
    );
    assert_eq!(login_code(&srv, &carol, "pw-c1").await, 4);
    assert_eq!(
        login_code(&srv, &dave, "pw-d").await,
        4,
        "user removed online"
    );
    let list = users(&srv);
    assert!(list.contains(&carol) && !list.contains(&dave), "{list:?}");
    // Removing a connected user through the CLI closes its session.
    let out = srv.cli(&["user", "remove", &erin]);
    assert_exit(&out, 0, "user remove of a connected user");
    assert_eq!(stdout(&out).trim(), format!("removed {erin}"));
    assert!(live.closed().await, "session survived `chatd user remove`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_admin_token_is_used_by_api_and_cli() {
    let token = "configured-admin-token-0123456789";
    let srv = Server::start_with(&format!("[auth]\nadmin_token = \"{token}\"\n"));
    assert_eq!(srv.token, token);
    let (status, body) = http_request(srv.http, "GET", "/admin/users", Some(token), None);
    assert_eq!(status, 200, "{body}");
    let user = unique("tok");
    let out = srv.cli(&["user", "add", &user, "--password", "pw"]);
    assert_exit(&out, 0, "user add with a configured token");
    assert!(users(&srv).contains(&user));
    // A generated token file, if any, is not an alternative credential.
    if let Ok(file) = std::fs::read_to_string(srv.data_dir().join("admin.token")) {
        let file = file.trim();
        if !file.is_empty() && file != token {
            let (status, _) = http_request(srv.http, "GET", "/admin/users", Some(file), None);
            assert_eq!(
                status, 401,
                "admin.token accepted although admin_token is configured"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_file_is_private() {
    let mut srv = Server::start();
    let path = srv.data_dir().join("admin.token");
    let meta = std::fs::metadata(&path).expect("admin.token exists");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin.token mode {:o}",
        meta.permissions().mode() & 0o777
    );
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.len() >= 16, "admin token too short: {token:?}");
    assert_eq!(token, srv.token);
    let (status, _) = http_request(srv.http, "GET", "/admin/users", Some(&token), None);
    assert_eq!(status, 200);
    // The token survives a restart (the CLI and operators rely on the file).
    assert!(srv.stop().success());
    srv.restart();
    assert_eq!(srv.token, token, "admin token changed across a restart");
    let (status, _) = http_request(srv.http, "GET", "/admin/users", Some(&token), None);
    assert_eq!(status, 200);
}

/// Runs `chatd --config <text>` and returns its output; kills it if it is still running after
/// `limit` (a bad config must make it exit quickly).
fn run_with_config(dir: &Path, name: &str, text: &str, limit: Duration) -> (Output, Duration) {
    let config = dir.join(name);
    std::fs::write(&config, text).unwrap();
    let start = Instant::now();
    let mut child = Command::new(support::chatd_bin())
        .arg("--config")
        .arg(&config)
        .current_dir(dir)
        .env_remove("CHATD_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chatd");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "chatd still running {limit:?} after start with config {name}:\n{text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    (child.wait_with_output().unwrap(), took)
}

#[test]
fn config_errors_stop_the_server_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = support::toml_string(&dir.path().join("data").to_string_lossy());
    let listen = "[listen]\nmqtt = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n";
    let storage = format!("[storage]\npath = {data}\n");
    // (file name, config text, words the message must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key.toml",
            format!("{listen}mqqt = \"127.0.0.1:0\"\n{storage}"),
            vec!["mqqt"],
        ),
        (
            "unknown-section.toml",
            format!("{listen}{storage}[bogus]\nx = 1\n"),
            vec!["bogus"],
        ),
        (
            "unknown-limit.toml",
            format!("{listen}{storage}[limits]\nmax_conections = 5\n"),
            vec!["max_conections"],
        ),
        (
            "bad-address.toml",
            format!(
                "[listen]\nmqtt = \"nowhere\"\nws = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n{storage}"
            ),
            vec!["mqtt"],
        ),
        (
            "bad-port.toml",
            format!(
                "[listen]\nmqtt = \"127.0.0.1:0\"\nws = \"127.0.0.1:99999\"\nhttp = \"127.0.0.1:0\"\n{storage}"
            ),
            vec!["ws"],
        ),
        (
            "wrong-type.toml",
            format!("{listen}{storage}[limits]\nmax_inflight = \"many\"\n"),
            vec!["max_inflight"],
        ),
        (
            "wrong-type-address.toml",
            format!(
                "[listen]\nmqtt = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\nhttp = 8080\n{storage}"
            ),
            vec!["http"],
        ),
        (
            "node-id-range.toml",
            format!("{listen}{storage}[node]\nid = 70000\n"),
            vec!["id"],
        ),
        (
            "packet-size.toml",
            format!("{listen}{storage}[limits]\nmax_packet_size = 10\n"),
            vec!["max_packet_size"],
        ),
        (
            "tls-missing.toml",
            format!("{listen}mqtts = \"127.0.0.1:0\"\n{storage}"),
            vec!["tls"],
        ),
        (
            "syntax.toml",
            format!("{listen}{storage}[limits\n"),
            vec![],
        ),
    ];
    for (name, text, words) in cases {
        let (out, took) = run_with_config(dir.path(), name, &text, Duration::from_secs(20));
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{name}: chatd exited successfully with a bad config\n{err}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{name}: took {took:?} to fail"
        );
        for word in words {
            assert!(
                err.contains(word),
                "{name}: the message must name `{word}`; stderr: {err}"
            );
        }
        assert!(
            !dir.path().join("data").join("listen.json").exists(),
            "{name}: listen.json written for a bad config"
        );
    }
    // A missing config file is an error too.
    let out = Command::new(support::chatd_bin())
        .args(["--config", "/nonexistent/chatd.toml", "user", "list"])
        .env_remove("CHATD_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/chatd.toml"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_graceful_and_keeps_messages() {
    let mut srv = Server::start();
    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let acked = exchange(&srv, &alice, "pw", &bob, "pw").await;
    let acked_id = acked["id"].as_str().unwrap().to_string();

    // One more message goes out right before SIGTERM; if its ack arrives, it must survive too.
    let mut r = Raw::login(srv.mqtt, V::V4, &format!("{alice}:last"), &alice, "pw").await;
    assert_eq!(
        r.subscribe(1, &[(&format!("user/{alice}/ack"), 1)]).await,
        vec![1]
    );
    let last = json!({"cid": unique("last"), "to": bob, "type": "text", "text": "last words"});
    r.send(&raw::publish(
        V::V4,
        &format!("chat/{alice}/send"),
        last.to_string().as_bytes(),
        1,
        2,
    ))
    .await;
    let status = srv.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    assert!(
        !srv.data_dir().join("listen.json").exists(),
        "listen.json left behind after a clean exit"
    );
    let seen = r.publishes_for(Duration::from_secs(5)).await;
    let last_id = seen
        .iter()
        .filter(|p| p.topic == format!("user/{alice}/ack"))
        .map(|p| p.json())
        .find(|a| a["cid"] == last["cid"])
        .and_then(|a| a["id"].as_str().map(str::to_string));

    srv.restart();
    let mut a = support::connect(srv.mqtt, &alice, &alice, "pw").await;
    a.subscribe(&format!("user/{alice}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let reply = a
        .rpc(
            &alice,
            json!({"rid": "h1", "op": "history", "with": bob, "limit": 100}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let ids: Vec<&str> = reply["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&acked_id.as_str()),
        "acked message lost: {reply}"
    );
    if let Some(id) = &last_id {
        assert!(
            ids.contains(&id.as_str()),
            "message acked during shutdown lost: {reply}"
        );
    }
    // SIGINT is graceful too.
    let status = srv.interrupt();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGINT: {status:?}"
    );
    assert!(!srv.data_dir().join("listen.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_listener_is_absent_from_listen_json() {
    let srv = Server::try_start_custom(|dir| {
        format!(
            "[listen]\nmqtt = \"127.0.0.1:0\"\nws = \"\"\nhttp = \"127.0.0.1:0\"\n[storage]\npath = {}\n",
            support::toml_string(&dir.join("data").to_string_lossy())
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(srv.data_dir().join("listen.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v.get("ws").is_none(),
        "disabled ws listener in listen.json: {text}"
    );
    assert!(v.get("mqtts").is_none() && v.get("wss").is_none(), "{text}");
    for key in ["mqtt", "http"] {
        let addr: std::net::SocketAddr = v[key].as_str().unwrap().parse().unwrap();
        assert_ne!(addr.port(), 0, "{key} in listen.json: {text}");
    }
    let (status, _) = http_get(srv.http, "/healthz");
    assert_eq!(status, 200);
}

/// Waits for `dir/listen.json` to hold an `http` address other than `not`.
fn wait_listen_json(dir: &Path, not: &str, child: &mut std::process::Child) -> Value {
    let deadline = Instant::now() + support::SERVER_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("listen.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["http"].as_str().is_some_and(|h| h != not) {
                    return v;
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("chatd exited early: {status:?}");
        }
        assert!(Instant::now() < deadline, "no fresh listen.json");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Kills a child process that a failing test leaves behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_subcommand_env_config_and_stale_listen_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let stale = r#"{"mqtt":"127.0.0.1:1","ws":"127.0.0.1:2","http":"127.0.0.1:3"}"#;
    std::fs::write(data.join("listen.json"), stale).unwrap();
    let config = dir.path().join("env.toml");
    std::fs::write(&config, support::base_config(dir.path(), "")).unwrap();
    // The configuration comes from CHATD_CONFIG; `serve` is explicit.
    let mut guard = KillOnDrop(
        Command::new(support::chatd_bin())
            .arg("serve")
            .env("CHATD_CONFIG", &config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let v = wait_listen_json(&data, "127.0.0.1:3", child);
    // Every listener in the file is bound once the file exists.
    for key in ["mqtt", "ws", "http"] {
        let addr: std::net::SocketAddr = v[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {v}"))
            .parse()
            .unwrap();
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{key} {addr}: {e}"));
    }
    let http: std::net::SocketAddr = v["http"].as_str().unwrap().parse().unwrap();
    assert_eq!(http_get(http, "/healthz").0, 200);
    // The CLI finds the running server through CHATD_CONFIG as well.
    let user = unique("envuser");
    let out = Command::new(support::chatd_bin())
        .args(["user", "add", &user, "--password", "pw"])
        .env("CHATD_CONFIG", &config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_exit(&out, 0, "user add with CHATD_CONFIG");
    let ok = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + support::SERVER_WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chatd did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!data.join("listen.json").exists());
    // Offline, through CHATD_CONFIG, the user is there.
    let out = Command::new(support::chatd_bin())
        .args(["user", "list"])
        .env("CHATD_CONFIG", &config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_exit(&out, 0, "user list offline with CHATD_CONFIG");
    assert!(stdout(&out).lines().any(|l| l == user), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_during_logins_leaves_no_session_open() {
    // Devices log in while the account is removed or its password changed. Whatever the order
    // in which the server handles them, no connection that got CONNACK 0 may stay open after
    // the change: either it was refused, or it was connected and then closed by the change.
    let srv = Server::start();
    let mut failures = Vec::new();
    for round in 0..6 {
        let user = unique("rev");
        srv.add_user(&user, "pw");
        let mut logins = Vec::new();
        for k in 0..12 {
            let (addr, user) = (srv.mqtt, user.clone());
            logins.push(tokio::spawn(async move {
                let cid = format!("{user}:d{k}");
                let (raw, code) =
                    Raw::connect_with(addr, &Connect::new(V::V4, &cid, &user, "pw")).await;
                (raw, code, Instant::now())
            }));
        }
        let (http, token, user2) = (srv.http, srv.token.clone(), user.clone());
        let change = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(5 * round as u64));
            if round % 2 == 0 {
                http_request(
                    http,
                    "DELETE",
                    &format!("/admin/users/{user2}"),
                    Some(&token),
                    None,
                )
            } else {
                let body = json!({"password": "changed"}).to_string();
                let path = format!("/admin/users/{user2}/password");
                http_request(http, "PUT", &path, Some(&token), Some(&body))
            }
        });
        let (status, body) = change.await.unwrap();
        let changed_at = Instant::now();
        assert_eq!(status, 204, "{body}");
        let what = if round % 2 == 0 {
            "DELETE"
        } else {
            "PUT password"
        };
        for (k, login) in logins.into_iter().enumerate() {
            let (mut r, code, connack_at) = login.await.unwrap();
            if code == Ok(0) && r.wait_closed(Duration::from_secs(10)).await.is_err() {
                let when = if connack_at > changed_at {
                    format!("{:?} after", connack_at - changed_at)
                } else {
                    format!("{:?} before", changed_at - connack_at)
                };
                failures.push(format!(
                    "round {round} ({what}): device d{k} got CONNACK 0 {when} the 204 and is \
                     still connected 10 s after the change"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
