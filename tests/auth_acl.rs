//! Authentication and authorization at the MQTT edge, MQTT 3.1.1 and 5.0: passwords, JWTs
//! (HS256, RS256), client id rules, wills, and which topics a client may subscribe and publish to.
//! See PROTOCOL.md "Connecting" and docs/protocol.md "Authorization".

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::raw::{Connect, Raw, ReadError, V};
use support::{unique, Server};

const BOTH: [V; 2] = [V::V4, V::V5];
const HS_SECRET: &str = "test-secret-0123456789-abcdef";

/// CONNACK codes of the contract for each refusal.
fn bad_credentials(v: V) -> u8 {
    match v {
        V::V4 => 4,
        V::V5 => 0x86,
    }
}

fn bad_client_id(v: V) -> u8 {
    match v {
        V::V4 => 2,
        V::V5 => 0x85,
    }
}

fn not_authorized(v: V) -> u8 {
    match v {
        V::V4 => 5,
        V::V5 => 0x87,
    }
}

fn sub_refused(v: V) -> u8 {
    match v {
        V::V4 => 0x80,
        V::V5 => 0x87,
    }
}

/// Sends `connect` on a fresh socket and returns the CONNACK code. A refused connection must
/// also be closed by the server.
async fn connack(addr: SocketAddr, connect: &Connect) -> u8 {
    let (mut raw, code) = Raw::connect_with(addr, connect).await;
    let code = code.unwrap_or_else(|e| {
        panic!(
            "no CONNACK for client id {:?} user {:?}: {e:?}",
            connect.client_id, connect.username
        )
    });
    if code != 0 {
        raw.expect_closed(
            Duration::from_secs(20),
            &format!("after CONNACK {code:#x} for {:?}", connect.client_id),
        )
        .await;
    }
    code
}

async fn code_for(addr: SocketAddr, v: V, client_id: &str, user: &str, pw: &str) -> u8 {
    connack(addr, &Connect::new(v, client_id, user, pw)).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn rs256(private_pem: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(private_pem).expect("RSA private key"),
    )
    .unwrap()
}

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with `"alg":"none"` and the given signature segment.
fn alg_none(claims: &Value, signature: &str) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(claims.to_string().as_bytes());
    format!("{header}.{body}.{signature}")
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "iat": now()})
}

/// The failed-login limits off: these tests make many failed logins in a row to check refusal
/// codes, which the limits (tested in `tests/hostile.rs`) would otherwise answer first.
const NO_LOGIN_LIMITS: &str = "login_failures_per_user = 0\nlogin_failures_per_ip = 0\n";

/// A server with users alice and bob (passwords `pw-alice`, `pw-bob`) and `extra` config, with
/// the failed-login limits off.
fn server_with_users(extra: &str) -> (Server, String, String) {
    let extra = if extra.contains("[limits]\n") {
        extra.replacen("[limits]\n", &format!("[limits]\n{NO_LOGIN_LIMITS}"), 1)
    } else {
        format!("{extra}\n[limits]\n{NO_LOGIN_LIMITS}")
    };
    let srv = Server::start_with(&extra);
    let alice = unique("alice");
    let bob = unique("bob");
    srv.add_user(&alice, "pw-alice");
    srv.add_user(&bob, "pw-bob");
    (srv, alice, bob)
}

/// `bob` receives a message from `alice` through the harness clients (3.1.1).
async fn exchange(srv: &Server, alice: &str, alice_pw: &str, bob: &str, bob_pw: &str) {
    let mut a = support::connect(srv.mqtt, &format!("{alice}:ex"), alice, alice_pw).await;
    let mut b = support::connect(srv.mqtt, &format!("{bob}:ex"), bob, bob_pw).await;
    a.subscribe(&format!("user/{alice}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    b.subscribe(&format!("user/{bob}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let cid = unique("c");
    let ack = a.send(alice, bob, &cid, "hello there").await;
    assert_eq!(ack["status"], "sent", "ack: {ack}");
    let msg = b.next_on(&format!("user/{bob}/inbox")).await;
    assert_eq!(msg["from"], alice);
    assert_eq!(msg["text"], "hello there");
    assert_eq!(msg["id"], ack["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_works_for_user_and_devices() {
    let (srv, alice, bob) = server_with_users("");
    for v in BOTH {
        assert_eq!(
            code_for(srv.mqtt, v, &alice, &alice, "pw-alice").await,
            0,
            "{v:?}"
        );
    }
    // Several devices of one user at once; both stay connected.
    let mut phone = Raw::login(
        srv.mqtt,
        V::V4,
        &format!("{alice}:phone"),
        &alice,
        "pw-alice",
    )
    .await;
    let mut laptop = Raw::login(
        srv.mqtt,
        V::V5,
        &format!("{alice}:laptop-2.x_y"),
        &alice,
        "pw-alice",
    )
    .await;
    assert!(phone.ping().await, "phone connection must stay usable");
    assert!(laptop.ping().await, "laptop connection must stay usable");
    // The harness clients see success too.
    let c = support::connect(srv.mqtt, &format!("{alice}:lib"), &alice, "pw-alice").await;
    assert_eq!(c.connack.code, rumqttc::ConnectReturnCode::Success);
    let c5 = support::connect5(srv.mqtt, &format!("{bob}:lib"), &bob, "pw-bob").await;
    assert_eq!(
        c5.connack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    drop((c, c5));
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused() {
    let (srv, alice, _bob) = server_with_users("");
    let stranger = unique("nobody");
    for v in BOTH {
        let want = bad_credentials(v);
        assert_eq!(
            code_for(srv.mqtt, v, &alice, &alice, "wrong").await,
            want,
            "{v:?} wrong password"
        );
        assert_eq!(
            code_for(srv.mqtt, v, &alice, &alice, "").await,
            want,
            "{v:?} empty password"
        );
        assert_eq!(
            code_for(srv.mqtt, v, &alice, &alice, "PW-ALICE").await,
            want,
            "{v:?} password case"
        );
        assert_eq!(
            code_for(srv.mqtt, v, &stranger, &stranger, "pw-alice").await,
            want,
            "{v:?} unknown user"
        );
        let mut no_password = Connect::new(v, &alice, &alice, "x");
        no_password.password = None;
        assert_eq!(
            connack(srv.mqtt, &no_password).await,
            want,
            "{v:?} username without password"
        );
        let mut anonymous = Connect::new(v, &alice, &alice, "x");
        anonymous.password = None;
        anonymous.username = None;
        assert_eq!(
            connack(srv.mqtt, &anonymous).await,
            want,
            "{v:?} no username and no password"
        );
    }
    // Through the client libraries as well.
    match support::try_connect(srv.mqtt, &alice, &alice, "wrong").await {
        Err(code) => assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword),
        Ok(_) => panic!("3.1.1 login with a wrong password accepted"),
    }
    match support::try_connect5(srv.mqtt, &alice, &alice, "wrong").await {
        Err(code) => assert_eq!(
            code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword
        ),
        Ok(_) => panic!("5.0 login with a wrong password accepted"),
    }
    // The right password still works after all the failures.
    assert_eq!(
        code_for(srv.mqtt, V::V4, &alice, &alice, "pw-alice").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_must_belong_to_the_user() {
    let (srv, alice, bob) = server_with_users("");
    let long_device = "d".repeat(65);
    let max_device = "d".repeat(64);
    let refused = [
        bob.clone(),
        format!("{bob}:x"),
        format!("{alice}:"),
        format!("{alice}:a:b"),
        format!("al ice{alice}"),
        format!("{alice} "),
        String::new(),
        format!(":{alice}"),
        format!("{alice}:ph one"),
        format!("{alice}:ph/one"),
        format!("{alice}:{long_device}"),
        format!("{alice}x"),
        format!("{alice}/x"),
        format!("{alice}:é"),
    ];
    for v in BOTH {
        for cid in &refused {
            assert_eq!(
                code_for(srv.mqtt, v, cid, &alice, "pw-alice").await,
                bad_client_id(v),
                "{v:?} client id {cid:?} with username {alice}"
            );
        }
        // bob's own credentials do not let him use alice's client id either.
        assert_eq!(
            code_for(srv.mqtt, v, &alice, &bob, "pw-bob").await,
            bad_client_id(v),
            "{v:?} client id {alice} with username {bob}"
        );
        assert_eq!(
            code_for(
                srv.mqtt,
                v,
                &format!("{alice}:{max_device}"),
                &alice,
                "pw-alice"
            )
            .await,
            0,
            "{v:?} 64-character device id"
        );
    }
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_hs256_login() {
    let (srv, alice, bob) =
        server_with_users(&format!("[auth]\njwt_hs256_secret = \"{HS_SECRET}\"\n"));
    let addr = srv.mqtt;
    for v in BOTH {
        let ok = hs256(HS_SECRET, &claims(&alice));
        assert_eq!(
            code_for(addr, v, &alice, &alice, &ok).await,
            0,
            "{v:?} valid token"
        );
        assert_eq!(
            code_for(addr, v, &format!("{alice}:tab"), &alice, &ok).await,
            0,
            "{v:?} valid token, device client id"
        );
        let want = bad_credentials(v);
        let cases = [
            ("token for another user", hs256(HS_SECRET, &claims(&bob))),
            (
                "expired token",
                hs256(
                    HS_SECRET,
                    &json!({"sub": alice, "exp": now() - 600, "iat": now() - 4000}),
                ),
            ),
            (
                "nbf in the future",
                hs256(
                    HS_SECRET,
                    &json!({"sub": alice, "nbf": now() + 3600, "exp": now() + 7200}),
                ),
            ),
            ("no exp", hs256(HS_SECRET, &json!({"sub": alice}))),
            ("no sub", hs256(HS_SECRET, &json!({"exp": now() + 3600}))),
            (
                "wrong secret",
                hs256("another-secret-0123456789", &claims(&alice)),
            ),
            ("alg none, empty signature", alg_none(&claims(&alice), "")),
            (
                "alg none, fake signature",
                alg_none(&claims(&alice), "c2lnbmF0dXJl"),
            ),
            ("tampered payload", {
                let good = hs256(HS_SECRET, &claims(&bob));
                let parts: Vec<&str> = good.split('.').collect();
                let body = b64url(claims(&alice).to_string().as_bytes());
                format!("{}.{}.{}", parts[0], body, parts[2])
            }),
        ];
        for (what, token) in &cases {
            assert_eq!(
                code_for(addr, v, &alice, &alice, token).await,
                want,
                "{v:?} {what}"
            );
        }
    }
    // The account password keeps working next to JWT login.
    assert_eq!(code_for(addr, V::V4, &alice, &alice, "pw-alice").await, 0);

    // A user without an account logs in with a token and can then be messaged.
    let carol = unique("carol");
    let carol_token = hs256(HS_SECRET, &claims(&carol));
    for v in BOTH {
        assert_eq!(
            code_for(addr, v, &carol, &carol, &carol_token).await,
            0,
            "{v:?} token of a user with no account"
        );
    }
    let mut c = support::connect(addr, &format!("{carol}:app"), &carol, &carol_token).await;
    c.subscribe(&format!("user/{carol}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let mut a = support::connect(
        addr,
        &format!("{alice}:app"),
        &alice,
        &hs256(HS_SECRET, &claims(&alice)),
    )
    .await;
    a.subscribe(&format!("user/{alice}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let ack = a
        .send(&alice, &carol, &unique("c"), "to a token user")
        .await;
    assert_eq!(ack["status"], "sent", "message to a JWT-only user: {ack}");
    let msg = c.next_on(&format!("user/{carol}/inbox")).await;
    assert_eq!(msg["text"], "to a token user");
    // Its account has no usable password.
    assert_eq!(code_for(addr, V::V4, &carol, &carol, "").await, 4);
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed to make RSA test keys");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes an RSA key pair in `dir`: (PKCS#1 private key PEM, public key PEM path).
fn rsa_keypair(dir: &Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let private = format!("{name}.key.pem");
    let public = format!("{name}.pub.pem");
    openssl(dir, &["genrsa", "-traditional", "-out", &private, "2048"]);
    openssl(dir, &["rsa", "-in", &private, "-pubout", "-out", &public]);
    (std::fs::read(dir.join(&private)).unwrap(), dir.join(public))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rs256_login() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = rsa_keypair(keys.path(), "jwt");
    let (other_private, _) = rsa_keypair(keys.path(), "other");
    let public_pem = std::fs::read(&public).unwrap();
    let (srv, alice, bob) = server_with_users(&format!(
        "[auth]\njwt_rs256_public_key_file = {}\n",
        support::toml_string(&public.to_string_lossy())
    ));
    let addr = srv.mqtt;
    for v in BOTH {
        let ok = rs256(&private, &claims(&alice));
        assert_eq!(
            code_for(addr, v, &alice, &alice, &ok).await,
            0,
            "{v:?} valid RS256"
        );
        let want = bad_credentials(v);
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(&alice),
            &EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        let cases = [
            (
                "signed with another key",
                rs256(&other_private, &claims(&alice)),
            ),
            ("token for another user", rs256(&private, &claims(&bob))),
            (
                "expired",
                rs256(&private, &json!({"sub": alice, "exp": now() - 600})),
            ),
            (
                "nbf in the future",
                rs256(
                    &private,
                    &json!({"sub": alice, "nbf": now() + 3600, "exp": now() + 7200}),
                ),
            ),
            ("HS256 signed with the public key", confused),
            (
                "HS256 while only RS256 is configured",
                hs256(HS_SECRET, &claims(&alice)),
            ),
            ("alg none", alg_none(&claims(&alice), "c2ln")),
        ];
        for (what, token) in &cases {
            assert_eq!(
                code_for(addr, v, &alice, &alice, token).await,
                want,
                "{v:?} {what}"
            );
        }
    }
    let dave = unique("dave");
    let token = rs256(&private, &claims(&dave));
    let mut d = support::connect5(addr, &dave, &dave, &token).await;
    d.subscribe(
        &format!("user/{dave}/#"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    )
    .await;
    let ack = d.send(&dave, &alice, &unique("c"), "from rs256").await;
    assert_eq!(ack["status"], "sent", "{ack}");
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_only_on_own_chat_topics() {
    let (srv, alice, bob) = server_with_users("");
    for v in BOTH {
        for topic in [
            format!("presence/{alice}"),
            format!("user/{alice}/inbox"),
            format!("user/{bob}/inbox"),
            format!("chat/{bob}/send"),
            format!("presence/{bob}"),
            "$SYS/x".to_string(),
        ] {
            let connect = Connect::new(v, &alice, &alice, "pw-alice").will(&topic, b"{}");
            assert_eq!(
                connack(srv.mqtt, &connect).await,
                not_authorized(v),
                "{v:?} will on {topic}"
            );
        }
        let connect = Connect::new(v, &alice, &alice, "pw-alice")
            .will(&format!("chat/{alice}/typing"), br#"{"to":"nobody"}"#);
        assert_eq!(
            connack(srv.mqtt, &connect).await,
            0,
            "{v:?} will on chat/{alice}/typing"
        );
    }
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

fn denied_filters(me: &str, other: &str) -> Vec<String> {
    vec![
        "#".into(),
        "+/+/#".into(),
        "user/+/inbox".into(),
        format!("user/{other}/#"),
        format!("user/{other}/inbox"),
        "$SYS/#".into(),
        "presence/+".into(),
        "presence/#".into(),
        format!("chat/{me}/send"),
        "user/#".into(),
        "user/+/#".into(),
        format!("+/{me}/inbox"),
        format!("chat/{me}/#"),
        format!("presence/{other}/#"),
    ]
}

fn allowed_filters(me: &str, other: &str) -> Vec<String> {
    vec![
        format!("user/{me}/#"),
        format!("user/{me}/inbox"),
        format!("user/{me}/+"),
        format!("presence/{other}"),
        format!("presence/{me}"),
    ]
}

async fn check_subscribe_acl(v: V) {
    let (srv, alice, bob) = server_with_users("");
    let mut raw = Raw::login(srv.mqtt, v, &alice, &alice, "pw-alice").await;
    let mut pkid = 1;
    for filter in denied_filters(&alice, &bob) {
        let codes = raw.subscribe(pkid, &[(&filter, 1)]).await;
        pkid += 1;
        assert_eq!(codes, vec![sub_refused(v)], "{v:?} SUBSCRIBE {filter}");
    }
    for filter in allowed_filters(&alice, &bob) {
        let codes = raw.subscribe(pkid, &[(&filter, 1)]).await;
        pkid += 1;
        assert_eq!(codes, vec![1], "{v:?} SUBSCRIBE {filter} at QoS 1");
    }
    // QoS 2 is granted as at most 1, QoS 0 as 0.
    let codes = raw
        .subscribe(
            pkid,
            &[
                (&format!("user/{alice}/ack"), 2),
                (&format!("user/{alice}/rpc"), 0),
            ],
        )
        .await;
    pkid += 1;
    assert_eq!(codes, vec![1, 0], "{v:?} granted QoS");
    // One SUBSCRIBE mixing both: each filter gets its own code.
    let mixed = [
        (format!("user/{bob}/inbox"), 1u8),
        (format!("user/{alice}/inbox"), 1),
        ("#".to_string(), 1),
        (format!("presence/{bob}"), 0),
    ];
    let list: Vec<(&str, u8)> = mixed.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    let codes = raw.subscribe(pkid, &list).await;
    assert_eq!(
        codes,
        vec![sub_refused(v), 1, sub_refused(v), 0],
        "{v:?} mixed SUBSCRIBE"
    );
    assert!(
        raw.ping().await,
        "{v:?} refused subscriptions must not close the connection"
    );
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_acl_v311() {
    check_subscribe_acl(V::V4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_acl_v5() {
    check_subscribe_acl(V::V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscriptions_receive_nothing() {
    let (srv, alice, bob) = server_with_users("");
    let carol = unique("carol");
    srv.add_user(&carol, "pw-carol");
    let mut spies = Vec::new();
    for (i, v) in BOTH.into_iter().enumerate() {
        let mut spy = Raw::login(srv.mqtt, v, &format!("{alice}:spy{i}"), &alice, "pw-alice").await;
        for (n, filter) in [
            format!("user/{bob}/#"),
            "#".to_string(),
            "user/+/inbox".to_string(),
            format!("user/{bob}/inbox"),
            "+/+/#".to_string(),
        ]
        .iter()
        .enumerate()
        {
            let codes = spy.subscribe(n as u16 + 1, &[(filter, 1)]).await;
            assert_eq!(codes, vec![sub_refused(v)], "{v:?} {filter}");
        }
        spies.push(spy);
    }
    // carol writes to bob; bob gets it, the spies get nothing.
    exchange(&srv, &carol, "pw-carol", &bob, "pw-bob").await;
    for spy in &mut spies {
        let got = spy.publishes_for(Duration::from_secs(3)).await;
        assert!(
            got.is_empty(),
            "{:?} refused subscriber received {got:?}",
            spy.v
        );
        assert!(spy.ping().await);
    }
}

/// Topics alice may not publish to (bob is another user).
fn forbidden_topics(alice: &str, bob: &str) -> Vec<String> {
    vec![
        format!("user/{bob}/inbox"),
        format!("chat/{bob}/send"),
        format!("presence/{bob}"),
        format!("chat/{alice}/unknown"),
        format!("user/{alice}/inbox"),
        format!("presence/{alice}"),
        format!("chat/{alice}/send/x"),
        format!("chat/{alice}"),
    ]
}

/// A send payload that, if the server acted on it, would reach bob; `marker` identifies it.
fn marked_payload(bob: &str, marker: &str) -> Vec<u8> {
    json!({"cid": marker, "to": bob, "type": "text", "text": marker, "from": bob,
           "user": bob, "status": "online"})
    .to_string()
    .into_bytes()
}

/// bob listens on everything he may; returns his raw connection.
async fn observer(srv: &Server, bob: &str) -> Raw {
    let mut b = Raw::login(srv.mqtt, V::V4, &format!("{bob}:watch"), bob, "pw-bob").await;
    let codes = b
        .subscribe(
            1,
            &[
                (&format!("user/{bob}/#"), 1),
                (&format!("presence/{bob}"), 1),
            ],
        )
        .await;
    assert_eq!(codes, vec![1, 1]);
    b
}

fn assert_no_marker(got: &[support::raw::Pub], marker: &str) {
    for p in got {
        assert!(
            !String::from_utf8_lossy(&p.payload).contains(marker),
            "a refused publish had an effect: {} {}",
            p.topic,
            String::from_utf8_lossy(&p.payload)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_publish_closes_v311_connection() {
    let (srv, alice, bob) = server_with_users("");
    let mut watch = observer(&srv, &bob).await;
    let marker = unique("leak");
    for (i, topic) in forbidden_topics(&alice, &bob).iter().enumerate() {
        for qos in [1u8, 0] {
            let mut a = Raw::login(srv.mqtt, V::V4, &alice, &alice, "pw-alice").await;
            a.send(&support::raw::publish(
                V::V4,
                topic,
                &marked_payload(&bob, &marker),
                qos,
                i as u16 + 1,
            ))
            .await;
            let seen = a
                .expect_closed(
                    Duration::from_secs(20),
                    &format!("3.1.1 QoS {qos} publish on {topic}"),
                )
                .await;
            assert!(
                seen.iter().all(|p| p.kind() != support::raw::PUBACK),
                "a forbidden publish on {topic} was acknowledged: {seen:?}"
            );
        }
    }
    let got = watch.publishes_for(Duration::from_secs(3)).await;
    assert_no_marker(&got, &marker);
    assert!(watch.ping().await);
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_publish_v5_gets_puback_not_authorized() {
    let (srv, alice, bob) = server_with_users("");
    let mut watch = observer(&srv, &bob).await;
    let marker = unique("leak");
    let mut a = Raw::login(srv.mqtt, V::V5, &alice, &alice, "pw-alice").await;
    let topics = forbidden_topics(&alice, &bob);
    for (i, topic) in topics.iter().enumerate() {
        let code = a
            .publish_qos1(topic, &marked_payload(&bob, &marker), i as u16 + 1)
            .await;
        assert_eq!(code, 0x87, "5.0 PUBACK reason for a publish on {topic}");
    }
    assert!(
        a.ping().await,
        "5.0 connection must stay open after refused publishes"
    );
    // The rumqttc view of the same thing.
    let mut c5 = support::connect5(srv.mqtt, &format!("{alice}:lib"), &alice, "pw-alice").await;
    let reason = c5
        .publish_result(&format!("user/{bob}/inbox"), marked_payload(&bob, &marker))
        .await;
    assert_eq!(
        reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
    );
    let got = watch.publishes_for(Duration::from_secs(3)).await;
    assert_no_marker(&got, &marker);
    // The same connection still sends normally afterwards.
    a.subscribe(100, &[(&format!("user/{alice}/ack"), 1)]).await;
    let cid = unique("ok");
    let code = a
        .publish_qos1(
            &format!("chat/{alice}/send"),
            json!({"cid": cid, "to": bob, "type": "text", "text": "fine"})
                .to_string()
                .as_bytes(),
            200,
        )
        .await;
    assert_eq!(code, 0);
    let ack = a.next_json_on(&format!("user/{alice}/ack")).await;
    assert_eq!(ack["cid"], cid.as_str());
    assert_eq!(ack["status"], "sent", "{ack}");
    let inbox = watch
        .next_publish_on(&format!("user/{bob}/inbox"), Duration::from_secs(30))
        .await
        .expect("bob receives the allowed message")
        .json();
    assert_eq!(inbox["text"], "fine");
    match watch.read_packet(Duration::from_millis(10)).await {
        Ok(_) | Err(ReadError::Timeout) => {}
        Err(e) => panic!("observer connection broke: {e:?}"),
    }
    exchange(&srv, &alice, "pw-alice", &bob, "pw-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_server_busy() {
    let (srv, alice, bob) = server_with_users("[limits]\nmax_connections = 2\n");
    let mut first = Raw::login(srv.mqtt, V::V4, &format!("{alice}:1"), &alice, "pw-alice").await;
    let second = Raw::login(srv.mqtt, V::V5, &format!("{alice}:2"), &alice, "pw-alice").await;
    assert_eq!(
        code_for(srv.mqtt, V::V4, &format!("{alice}:3"), &alice, "pw-alice").await,
        3,
        "3.1.1 CONNECT beyond max_connections"
    );
    assert_eq!(
        code_for(srv.mqtt, V::V5, &format!("{alice}:3"), &alice, "pw-alice").await,
        0x89,
        "5.0 CONNECT beyond max_connections"
    );
    assert!(first.ping().await, "existing connections are not affected");
    // When one leaves, there is room again.
    drop(second);
    let mut ok = false;
    for _ in 0..100 {
        if code_for(srv.mqtt, V::V4, &format!("{bob}:1"), &bob, "pw-bob").await == 0 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "no room after a connection closed");
}
