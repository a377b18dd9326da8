//! A first login with a JWT creates an account without a password hash (issue 13 item 7): no
//! argon2 run for it, password logins to it fail until an administrator sets a password, and
//! removed ids and look-alikes stay refused.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::raw::{Connect, Raw, V};
use support::*;

const SECRET: &str = "jwt-first-login-secret-0123456789";

fn jwt(sub: &str) -> String {
    hs256_jwt(SECRET, sub)
}

fn jwt_server() -> Server {
    Server::start_with(&format!("[auth]\njwt_hs256_secret = \"{SECRET}\"\n"))
}

/// CONNACK code of a 3.1.1 login (0 = accepted, 4 = bad credentials, 5 = not authorized).
async fn login_code(s: &Server, user: &str, password: &str) -> u8 {
    let connect = Connect::new(V::V4, &format!("{user}:probe"), user, password);
    let (mut raw, code) = Raw::connect_with(s.mqtt, &connect).await;
    let code = code.unwrap_or_else(|e| panic!("no CONNACK for {user}: {e:?}"));
    raw.send(&support::raw::disconnect()).await;
    code
}

/// The stored account record of `user` (the server must be stopped: the store is locked).
fn account_record(s: &Server, user: &str) -> Value {
    let store = s.open_store();
    let bytes = store
        .get(format!("u/{user}").as_bytes())
        .expect("read")
        .unwrap_or_else(|| panic!("no account record for {user}"));
    serde_json::from_slice(&bytes).expect("account record is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_account_has_no_password_until_an_administrator_sets_one() {
    let mut s = jwt_server();
    s.add_user("alice", "alice-pw");
    let tok = unique("tok");
    assert_eq!(login_code(&s, &tok, &jwt(&tok)).await, 0, "first JWT login");
    // The account exists as a recipient.
    let mut alice = online(&s, "alice", "alice").await;
    let ack = alice.send("alice", &tok, &unique("c"), "hello").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    // No password opens it: not the empty one, not a guessed one.
    for guess in [
        "",
        "password",
        "0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(
            login_code(&s, &tok, guess).await,
            4,
            "password login {guess:?} to a token account"
        );
    }
    // A token cannot create a look-alike of it.
    let look_alike = tok.to_uppercase();
    assert_eq!(
        login_code(&s, &look_alike, &jwt(&look_alike)).await,
        5,
        "JWT login of a look-alike"
    );
    drop(alice);
    s.stop();
    let record = account_record(&s, &tok);
    assert!(
        record.get("hash").is_none(),
        "a token login stored a password hash: {record}"
    );
    assert!(record.get("removed").is_none(), "{record}");
    s.restart();
    assert_eq!(login_code(&s, &tok, "").await, 4, "after a restart");
    assert_eq!(login_code(&s, &tok, &jwt(&tok)).await, 0, "JWT login again");
    // `chatd user passwd` gives it a password; then both ways work.
    let out = s.cli(&["user", "passwd", &tok, "--password", "tok-pw-123"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(login_code(&s, &tok, "tok-pw-123").await, 0, "password set");
    assert_eq!(
        login_code(&s, &tok, "wrong-pw-1").await,
        4,
        "wrong password"
    );
    assert_eq!(login_code(&s, &tok, &jwt(&tok)).await, 0, "JWT still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_token_account_stays_removed() {
    let s = jwt_server();
    let tok = unique("gone");
    assert_eq!(login_code(&s, &tok, &jwt(&tok)).await, 0, "first JWT login");
    let (status, body) = s.admin("GET", "/admin/users", None);
    assert_eq!(status, 200);
    assert!(body.contains(&tok), "token account not listed: {body}");
    let (status, body) = s.admin("DELETE", &format!("/admin/users/{tok}"), None);
    assert_eq!(status, 204, "remove: {body}");
    assert_eq!(
        login_code(&s, &tok, &jwt(&tok)).await,
        5,
        "JWT login of a removed user"
    );
    let (_, body) = s.admin("GET", "/admin/users", None);
    assert!(!body.contains(&tok), "re-created by a JWT: {body}");
}

/// Not a check: prints how many first JWT logins of new users the server accepts per second
/// (`cargo test -p chatd --test e2e jwt_first_login:: -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_first_token_logins_per_second() {
    let s = jwt_server();
    let n = 400usize;
    let concurrency = 16usize;
    let users: Vec<String> = (0..n).map(|i| format!("{}n{i}", unique("m"))).collect();
    let tokens: Vec<(String, String)> = users.iter().map(|u| (u.clone(), jwt(u))).collect();
    let rss_before = s.rss_kib();
    let started = Instant::now();
    let mut chunks = tokens.chunks(n / concurrency);
    let mut tasks = Vec::new();
    for chunk in chunks.by_ref() {
        let chunk = chunk.to_vec();
        let mqtt = s.mqtt;
        tasks.push(tokio::spawn(async move {
            for (user, token) in chunk {
                let connect = Connect::new(V::V4, &user, &user, &token);
                let (mut raw, code) = Raw::connect_with(mqtt, &connect).await;
                assert_eq!(code.expect("CONNACK"), 0, "{user}");
                raw.send(&support::raw::disconnect()).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "{n} first JWT logins in {secs:.2} s: {:.0} accounts/s; RSS {:?} KiB -> {:?} KiB",
        n as f64 / secs,
        rss_before,
        s.rss_kib()
    );
}
