//! Transports and connection lifetime: MQTT over WebSocket (path /mqtt), MQTT over TLS and
//! WebSocket over TLS, keep-alive expiry, and session takeover by a second CONNECT with the same
//! client id.

use crate::support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{TlsConfiguration, Transport};
use serde_json::Value;
use support::raw::{self, Connect, Raw, V};
use support::{unique, Server};

fn ws_options(
    url: &str,
    port: u16,
    client_id: &str,
    user: &str,
    pw: &str,
    transport: Transport,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, url, port);
    o.set_transport(transport);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, pw);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

fn ws_options5(
    url: &str,
    port: u16,
    client_id: &str,
    user: &str,
    pw: &str,
    transport: Transport,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, url, port);
    o.set_transport(transport);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, pw);
    o.set_connection_timeout(support::WAIT.as_secs());
    o
}

/// Two users with password `pw`.
fn two_users(srv: &Server) -> (String, String) {
    let (a, b) = (unique("alice"), unique("bob"));
    srv.add_user(&a, "pw");
    srv.add_user(&b, "pw");
    (a, b)
}

const Q1: rumqttc::QoS = rumqttc::QoS::AtLeastOnce;
const Q1_5: rumqttc::v5::mqttbytes::QoS = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;

/// `a` (3.1.1) and `b` (5.0), connected over any transports, exchange one message each way.
async fn talk(a: &mut support::Client, an: &str, b: &mut support::Client5, bn: &str) {
    a.subscribe(&format!("user/{an}/#"), Q1).await;
    b.subscribe(&format!("user/{bn}/#"), Q1_5).await;
    let text = unique("a-to-b");
    let ack = a.send(an, bn, &unique("c"), &text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let got = b.next_on(&format!("user/{bn}/inbox")).await;
    assert_eq!(got["text"], text.as_str());
    assert_eq!(got["from"], an);
    let text = unique("b-to-a");
    let ack = b.send(bn, an, &unique("c"), &text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    let got = a.next_on(&format!("user/{an}/inbox")).await;
    assert_eq!(got["text"], text.as_str());
    assert_eq!(got["from"], bn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket() {
    let srv = Server::start();
    let (alice, bob) = two_users(&srv);
    let port = srv.ws.port();
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    let mut a = support::connect_opts(ws_options(&url, port, &alice, &alice, "pw", Transport::Ws))
        .await
        .expect("3.1.1 over WebSocket");
    let mut b = support::connect(srv.mqtt, &bob, &bob, "pw").await;
    let mut b5 = support::connect5_opts(ws_options5(
        &url,
        port,
        &format!("{bob}:ws5"),
        &bob,
        "pw",
        Transport::Ws,
    ))
    .await
    .expect("5.0 over WebSocket");
    b.subscribe(&format!("user/{bob}/inbox"), Q1).await;
    talk(&mut a, &alice, &mut b5, &bob).await;
    // bob's TCP device, subscribed too, got alice's message as well.
    let copy: Value = b.next_on(&format!("user/{bob}/inbox")).await;
    assert_eq!(copy["from"], alice.as_str());
    // Credentials are checked on WebSocket as on TCP.
    let refused = support::connect_opts(ws_options(
        &url,
        port,
        &alice,
        &alice,
        "wrong",
        Transport::Ws,
    ))
    .await;
    match refused {
        Err(e) => assert!(e.contains("BadUserNamePassword"), "{e}"),
        Ok(_) => panic!("wrong password accepted over WebSocket"),
    }
}

/// Sends a WebSocket upgrade request for `path` and returns the status line and headers.
fn upgrade(addr: SocketAddr, path: &str, protocol: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only_on_mqtt_path() {
    let srv = Server::start();
    let (alice, _) = two_users(&srv);
    let ok = upgrade(srv.ws, "/mqtt", Some("mqtt"));
    assert!(ok.starts_with("HTTP/1.1 101"), "upgrade on /mqtt: {ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "the subprotocol mqtt must be confirmed: {ok}"
    );
    let legacy = upgrade(srv.ws, "/mqtt", Some("mqttv3.1"));
    assert!(
        legacy.starts_with("HTTP/1.1 101"),
        "subprotocol mqttv3.1: {legacy}"
    );
    for path in ["/", "/other", "/mqtt/x", "/MQTT", "/mqttx"] {
        let answer = upgrade(srv.ws, path, Some("mqtt"));
        assert!(
            !answer.starts_with("HTTP/1.1 101"),
            "WebSocket upgrade on {path} accepted: {answer}"
        );
    }
    let port = srv.ws.port();
    let url = format!("ws://127.0.0.1:{port}/wrong");
    let res =
        support::connect_opts(ws_options(&url, port, &alice, &alice, "pw", Transport::Ws)).await;
    assert!(res.is_err(), "rumqttc connected on a wrong WebSocket path");
    // Raw MQTT bytes on the WebSocket port are not MQTT over WebSocket.
    let mut r = Raw::open(srv.ws, V::V4).await;
    r.send(&Connect::new(V::V4, &alice, &alice, "pw").encode())
        .await;
    let seen = r
        .expect_closed(Duration::from_secs(20), "raw MQTT on the WebSocket port")
        .await;
    assert!(
        !seen.iter().any(|p| p.kind() == raw::CONNACK),
        "CONNACK without WebSocket framing: {seen:?}"
    );
}

struct Tls {
    _dir: tempfile::TempDir,
    cert_pem: Vec<u8>,
    listen: String,
    section: String,
}

fn tls_material() -> Tls {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("self-signed certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    Tls {
        cert_pem: ck.cert.pem().into_bytes(),
        listen: "mqtts = \"127.0.0.1:0\"\nwss = \"127.0.0.1:0\"\n".into(),
        section: format!(
            "[tls]\ncert_file = {}\nkey_file = {}\n",
            support::toml_string(&cert.to_string_lossy()),
            support::toml_string(&key.to_string_lossy())
        ),
        _dir: dir,
    }
}

fn trusting(ca: &[u8]) -> TlsConfiguration {
    TlsConfiguration::Simple {
        ca: ca.to_vec(),
        alpn: None,
        client_auth: None,
    }
}

/// Reads `key` from the server's listen.json.
fn listen_addr(srv: &Server, key: &str) -> SocketAddr {
    let text = std::fs::read_to_string(srv.data_dir().join("listen.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("listen.json has no {key}: {text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_and_wss() {
    let tls = tls_material();
    let srv = Server::start_with_listen(&tls.listen, &tls.section);
    let mqtts = listen_addr(&srv, "mqtts");
    let wss = listen_addr(&srv, "wss");
    assert_eq!(srv.mqtts, Some(mqtts));
    assert_eq!(srv.wss, Some(wss));
    let (alice, bob) = two_users(&srv);

    let mut o = ws_options(
        "localhost",
        mqtts.port(),
        &alice,
        &alice,
        "pw",
        Transport::tls_with_config(trusting(&tls.cert_pem)),
    );
    o.set_keep_alive(Duration::from_secs(30));
    let mut a = support::connect_opts(o).await.expect("3.1.1 over TLS");
    let url = format!("wss://localhost:{}/mqtt", wss.port());
    let mut b = support::connect5_opts(ws_options5(
        &url,
        wss.port(),
        &bob,
        &bob,
        "pw",
        Transport::wss_with_config(trusting(&tls.cert_pem)),
    ))
    .await
    .expect("5.0 over WebSocket over TLS");
    talk(&mut a, &alice, &mut b, &bob).await;

    // 5.0 over mqtts and 3.1.1 over wss work as well.
    let mut a5 = support::connect5_opts(ws_options5(
        "localhost",
        mqtts.port(),
        &format!("{alice}:tls5"),
        &alice,
        "pw",
        Transport::tls_with_config(trusting(&tls.cert_pem)),
    ))
    .await
    .expect("5.0 over TLS");
    let mut b4 = support::connect_opts(ws_options(
        &url,
        wss.port(),
        &format!("{bob}:wss4"),
        &bob,
        "pw",
        Transport::wss_with_config(trusting(&tls.cert_pem)),
    ))
    .await
    .expect("3.1.1 over WebSocket over TLS");
    talk(&mut b4, &bob, &mut a5, &alice).await;

    // A client that does not trust the certificate does not get in.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let res = support::connect_opts(ws_options(
        "localhost",
        mqtts.port(),
        &format!("{alice}:x"),
        &alice,
        "pw",
        Transport::tls_with_config(trusting(other.cert.pem().as_bytes())),
    ))
    .await;
    assert!(res.is_err(), "TLS connection with an untrusted certificate");
    // Plain MQTT on the TLS port gets no CONNACK.
    let mut r = Raw::open(mqtts, V::V4).await;
    r.send(&Connect::new(V::V4, &alice, &alice, "pw").encode())
        .await;
    let seen = r
        .expect_closed(Duration::from_secs(30), "plain MQTT on the mqtts port")
        .await;
    assert!(
        !seen.iter().any(|p| p.kind() == raw::CONNACK),
        "plain CONNACK on a TLS port: {seen:?}"
    );
    // The plain listeners keep working next to the TLS ones.
    let mut c = support::connect(srv.mqtt, &format!("{alice}:plain"), &alice, "pw").await;
    c.subscribe(&format!("user/{alice}/#"), Q1).await;
    let ack = c.send(&alice, &bob, &unique("c"), "plain").await;
    assert_eq!(ack["status"], "sent");
}

/// Logs in with keep-alive `secs`, then sends nothing; returns how long after CONNACK the server
/// closed the connection and the packets it sent before.
async fn idle_until_closed(
    addr: SocketAddr,
    v: V,
    cid: &str,
    user: &str,
) -> (Duration, Vec<raw::Packet>) {
    let connect = Connect::new(v, cid, user, "pw").keep_alive(2);
    let mut r = Raw::login_with(addr, &connect).await;
    let start = Instant::now();
    let seen = r
        .expect_closed(
            Duration::from_secs(10),
            &format!("{v:?} keep-alive 2 s, silent client"),
        )
        .await;
    (start.elapsed(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry() {
    let srv = Server::start();
    let (alice, bob) = two_users(&srv);
    let (ka4, ka5) = (format!("{alice}:ka4"), format!("{alice}:ka5"));
    let (v4, v5) = tokio::join!(
        idle_until_closed(srv.mqtt, V::V4, &ka4, &alice),
        idle_until_closed(srv.mqtt, V::V5, &ka5, &alice),
    );
    for (v, (took, seen)) in [(V::V4, v4), (V::V5, v5)] {
        assert!(
            took >= Duration::from_millis(2500),
            "{v:?}: closed {took:?} after CONNACK, before 1.5 x keep-alive"
        );
        if v == V::V5 {
            let last = seen
                .iter()
                .rev()
                .find(|p| p.kind() == raw::DISCONNECT)
                .unwrap_or_else(|| panic!("no DISCONNECT before the keep-alive close: {seen:?}"));
            assert_eq!(
                last.disconnect_reason(),
                0x8D,
                "keep-alive DISCONNECT reason"
            );
        }
    }

    // A client that pings in time stays connected past several keep-alive periods.
    let connect = Connect::new(V::V4, &format!("{alice}:pinger"), &alice, "pw").keep_alive(2);
    let mut pinger = Raw::login_with(srv.mqtt, &connect).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            pinger.ping().await,
            "a client pinging every second was dropped"
        );
    }

    // Traffic from the server does not keep a silent client alive: messages keep arriving at
    // QoS 0 (no PUBACK from the client), and it is still disconnected.
    let connect = Connect::new(V::V4, &format!("{bob}:quiet"), &bob, "pw").keep_alive(2);
    let mut quiet = Raw::login_with(srv.mqtt, &connect).await;
    assert_eq!(
        quiet
            .subscribe(1, &[(&format!("user/{bob}/inbox"), 0)])
            .await,
        vec![0]
    );
    let start = Instant::now();
    let mut sender = support::connect(srv.mqtt, &format!("{alice}:sender"), &alice, "pw").await;
    sender.subscribe(&format!("user/{alice}/#"), Q1).await;
    let feeder = tokio::spawn({
        let (alice, bob) = (alice.clone(), bob.clone());
        async move {
            for i in 0..40 {
                let _ = sender
                    .send(&alice, &bob, &unique("f"), &format!("tick {i}"))
                    .await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while Instant::now() < deadline {
        match quiet.read_packet(Duration::from_millis(500)).await {
            Err(raw::ReadError::Closed) => {
                closed = true;
                break;
            }
            _ => continue,
        }
    }
    feeder.abort();
    assert!(
        closed,
        "a client that only receives was not disconnected after 1.5 x keep-alive"
    );
    assert!(start.elapsed() >= Duration::from_millis(2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_with_same_client_id_takes_over() {
    let srv = Server::start();
    let (alice, bob) = two_users(&srv);
    // (first, second) protocol versions
    for (i, (v1, v2)) in [
        (V::V4, V::V4),
        (V::V5, V::V5),
        (V::V5, V::V4),
        (V::V4, V::V5),
    ]
    .into_iter()
    .enumerate()
    {
        let cid = format!("{alice}:dev{i}");
        let mut first = Raw::login(srv.mqtt, v1, &cid, &alice, "pw").await;
        let mut other = Raw::login(srv.mqtt, v1, &format!("{alice}:other{i}"), &alice, "pw").await;
        let mut second = Raw::login(srv.mqtt, v2, &cid, &alice, "pw").await;
        let seen = first
            .expect_closed(
                Duration::from_secs(20),
                &format!("{v1:?} session taken over by {v2:?}"),
            )
            .await;
        if v1 == V::V5 {
            let last = seen
                .iter()
                .rev()
                .find(|p| p.kind() == raw::DISCONNECT)
                .unwrap_or_else(|| panic!("no DISCONNECT for a taken-over session: {seen:?}"));
            assert_eq!(last.disconnect_reason(), 0x8E, "takeover DISCONNECT reason");
        }
        assert!(second.ping().await, "the new connection must be usable");
        assert!(
            other.ping().await,
            "another device of the same user must stay connected"
        );
    }
    // The new connection gets the user's messages.
    let cid = alice.clone();
    let mut first = Raw::login(srv.mqtt, V::V4, &cid, &alice, "pw").await;
    assert_eq!(
        first.subscribe(1, &[(&format!("user/{alice}/#"), 1)]).await,
        vec![1]
    );
    let mut second = Raw::login(srv.mqtt, V::V4, &cid, &alice, "pw").await;
    first
        .expect_closed(Duration::from_secs(20), "takeover of the bare user id")
        .await;
    assert_eq!(
        second
            .subscribe(1, &[(&format!("user/{alice}/#"), 1)])
            .await,
        vec![1]
    );
    let mut b = support::connect(srv.mqtt, &bob, &bob, "pw").await;
    b.subscribe(&format!("user/{bob}/#"), Q1).await;
    let ack = b.send(&bob, &alice, &unique("c"), "after takeover").await;
    assert_eq!(ack["status"], "sent");
    let got = second.next_json_on(&format!("user/{alice}/inbox")).await;
    assert_eq!(got["text"], "after takeover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_rsa_key_from_openssl() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("the openssl command is needed for this test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // An RSA key in PKCS#1 form ("BEGIN RSA PRIVATE KEY") and a certificate for localhost.
    run(&["genrsa", "-traditional", "-out", "key.pem", "2048"]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    let key_text = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    assert!(key_text.contains("BEGIN RSA PRIVATE KEY"), "{key_text}");
    let cert_pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
    let section = format!(
        "[tls]\ncert_file = {}\nkey_file = {}\n",
        support::toml_string(&dir.path().join("cert.pem").to_string_lossy()),
        support::toml_string(&dir.path().join("key.pem").to_string_lossy())
    );
    let srv = Server::start_with_listen("mqtts = \"127.0.0.1:0\"\n", &section);
    let mqtts = listen_addr(&srv, "mqtts");
    let (alice, bob) = two_users(&srv);
    let mut a = support::connect_opts(ws_options(
        "localhost",
        mqtts.port(),
        &alice,
        &alice,
        "pw",
        Transport::tls_with_config(trusting(&cert_pem)),
    ))
    .await
    .expect("3.1.1 over TLS with an RSA key");
    let mut b = support::connect5(srv.mqtt, &bob, &bob, "pw").await;
    talk(&mut a, &alice, &mut b, &bob).await;
}

#[test]
fn tls_listener_with_missing_certificate_does_not_start() {
    let missing = "/nonexistent/chatd-test-cert.pem";
    let res = Server::try_start_custom(|dir| {
        format!(
            "{}\n[tls]\ncert_file = \"{missing}\"\nkey_file = \"/nonexistent/chatd-test-key.pem\"\n",
            support::base_config(dir, "mqtts = \"127.0.0.1:0\"\n")
        )
    });
    match res {
        Ok(_) => panic!("chatd started with a missing TLS certificate"),
        Err(e) => assert!(
            e.contains("chatd-test-cert.pem") || e.contains("cert_file"),
            "the error must name the certificate file or key: {e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_connection_wins_a_quick_reconnect() {
    // A device that drops its connection right after CONNACK and reconnects at once (a flaky
    // network) must end up connected: an older connection may never take over a newer one.
    // JWT logins keep the reconnect fast, which is when the order matters.
    let secret = "transport-test-secret-0123456789";
    let srv = Server::start_with(&format!("[auth]\njwt_hs256_secret = \"{secret}\"\n"));
    let alice = unique("alice");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": alice, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut failures = Vec::new();
    for i in 0..40 {
        let cid = format!("{alice}:flaky{i}");
        for v in [V::V4, V::V5] {
            let old = Raw::login(srv.mqtt, v, &cid, &alice, &token).await;
            drop(old);
        }
        let mut new = Raw::login(srv.mqtt, V::V5, &cid, &alice, &token).await;
        if let Ok(seen) = new.wait_closed(Duration::from_millis(300)).await {
            failures.push(format!(
                "round {i}: newest connection closed after {seen:?}"
            ));
        } else if !new.ping().await {
            failures.push(format!("round {i}: newest connection closed"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
