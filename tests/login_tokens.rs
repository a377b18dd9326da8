//! `POST /auth/token` (issue 18's server side): a login token for a user name and password,
//! accepted as the MQTT password of that user until it expires, under the same failed-login
//! limits as MQTT, and refused once the account is gone.

use crate::support;

use serde_json::{json, Value};
use support::raw::{Connect, Raw, V};
use support::{http_request, now_ms, Server};

/// `POST /auth/token` with `body`: (status, JSON answer).
fn token_request(srv: &Server, body: &str) -> (u16, Value) {
    let (status, text) = http_request(srv.http, "POST", "/auth/token", None, Some(body));
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    (status, value)
}

/// A token for `user` with `password`; panics unless issued.
fn token(srv: &Server, user: &str, password: &str) -> String {
    let body = json!({"user": user, "password": password}).to_string();
    let (status, answer) = token_request(srv, &body);
    assert_eq!(status, 200, "{answer}");
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string()
}

/// The CONNACK code of a login of `client_id` as `user` with `password`.
async fn login_code(srv: &Server, v: V, client_id: &str, user: &str, password: &str) -> u8 {
    let (mut raw, code) =
        Raw::connect_with(srv.mqtt, &Connect::new(v, client_id, user, password)).await;
    let code = code.expect("a CONNACK");
    raw.send(&support::raw::disconnect()).await;
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_is_the_mqtt_password_of_its_user_until_the_account_goes() {
    let mut srv = Server::start();
    srv.add_user("alice", "alice-pw");
    srv.add_user("bob", "bob-pw");
    let before = now_ms();
    let body = json!({"user": "alice", "password": "alice-pw"}).to_string();
    let (status, answer) = token_request(&srv, &body);
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().expect("token").to_string();
    let expires = answer["expires"].as_i64().expect("expires");
    let day = 24 * 3600 * 1000;
    assert!(
        (before + day - 5_000..=now_ms() + day + 5_000).contains(&expires),
        "expires {expires}: a day from now (auth.login_token_ttl_secs)"
    );

    // The token is alice's password, in both versions, for any of her devices.
    assert_eq!(
        login_code(&srv, V::V4, "alice:web", "alice", &token).await,
        0
    );
    assert_eq!(
        login_code(&srv, V::V5, "alice:tab2", "alice", &token).await,
        0
    );
    // Not bob's; and not with one character of its signature changed.
    assert_eq!(login_code(&srv, V::V4, "bob", "bob", &token).await, 4);
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    assert_eq!(
        login_code(&srv, V::V4, "alice:web", "alice", &forged).await,
        4
    );

    // Wrong or missing credentials, and a body that is not a login.
    for body in [
        json!({"user": "alice", "password": "wrong"}).to_string(),
        json!({"user": "nobody", "password": "alice-pw"}).to_string(),
        json!({"user": "not an id!", "password": "x"}).to_string(),
    ] {
        let (status, answer) = token_request(&srv, &body);
        assert_eq!(
            (status, &answer["error"]),
            (401, &json!("unauthorized")),
            "{body}"
        );
        assert!(answer.get("token").is_none());
    }
    for body in [
        "",
        "{",
        r#"{"user":"alice"}"#,
        r#"{"user":"alice","password":"alice-pw","x":1}"#,
    ] {
        let (status, answer) = token_request(&srv, body);
        assert_eq!(status, 400, "{body:?}: {answer}");
    }

    // The key is kept in the data directory: the token outlives a restart.
    let key = srv.data_dir().join("login.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("login.key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "login.key is private");
    srv.stop();
    srv.restart();
    assert_eq!(
        login_code(&srv, V::V4, "alice:web", "alice", &token).await,
        0
    );

    // A token never brings back a removed account.
    let (status, text) = srv.admin("DELETE", "/admin/users/alice", None);
    assert!((200..300).contains(&status), "{status} {text}");
    assert_eq!(
        login_code(&srv, V::V4, "alice:web", "alice", &token).await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_requests_count_against_the_mqtt_login_limits() {
    let srv = Server::start_with("[limits]\nlogin_failures_per_user = 3\n");
    srv.add_user("alice", "alice-pw");
    let issued = token(&srv, "alice", "alice-pw");
    let wrong = json!({"user": "alice", "password": "guess"}).to_string();
    for _ in 0..3 {
        let (status, _) = token_request(&srv, &wrong);
        assert_eq!(status, 401);
    }
    // The budget is spent: even the right password is not checked, over HTTP or MQTT.
    let right = json!({"user": "alice", "password": "alice-pw"}).to_string();
    let (status, answer) = token_request(&srv, &right);
    assert_eq!(
        (status, &answer["error"]),
        (429, &json!("rate_limited")),
        "{answer}"
    );
    assert_eq!(
        login_code(&srv, V::V4, "alice", "alice", "alice-pw").await,
        5
    );
    // A token issued before cannot be guessed: password failures never refuse it.
    assert_eq!(
        login_code(&srv, V::V4, "alice:web", "alice", &issued).await,
        0
    );
}
