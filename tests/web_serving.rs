//! The HTTP listener as a web client's one origin: MQTT over WebSocket at `/mqtt` (not counted
//! against the HTTP connection caps), the client's files at `/` with their security headers,
//! from the bundle built into the binary or from `web.dir`, and `web.enabled = false`.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rumqttc::Transport;
use serde_json::json;
use support::{unique, Server, WAIT};

/// Sends `request` as it is and reads the whole answer: `(head, body)`.
fn raw_http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> (String, String) {
    raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n"),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn ws_options(port: u16, client_id: &str, user: &str) -> rumqttc::MqttOptions {
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    let mut o = rumqttc::MqttOptions::new(client_id, url, port);
    o.set_transport(Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(user, "pw");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket_on_the_http_listener_is_outside_the_http_caps() {
    // Two HTTP connections per address at most: three MQTT sessions on the same port must
    // still connect, and HTTP must still answer beside them.
    let srv = Server::start_with("[limits]\nhttp_connections_per_ip = 2\n");
    let (alice, bob) = (unique("alice"), unique("bob"));
    srv.add_user(&alice, "pw");
    srv.add_user(&bob, "pw");
    let port = srv.http.port();
    let mut a = support::connect_opts(ws_options(port, &format!("{alice}:w1"), &alice))
        .await
        .expect("MQTT over WebSocket on the HTTP port");
    let mut a2 = support::connect_opts(ws_options(port, &format!("{alice}:w2"), &alice))
        .await
        .expect("a second session on the HTTP port");
    let mut b = support::connect_opts(ws_options(port, &format!("{bob}:w1"), &bob))
        .await
        .expect("a third session on the HTTP port");
    let q1 = rumqttc::QoS::AtLeastOnce;
    a.subscribe(&format!("user/{alice}/#"), q1).await;
    a2.subscribe(&format!("user/{alice}/#"), q1).await;
    b.subscribe(&format!("user/{bob}/#"), q1).await;
    let text = unique("over-http-port");
    let ack = b.send(&bob, &alice, &unique("c"), &text).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    for c in [&mut a, &mut a2] {
        let got = c.next_on(&format!("user/{alice}/inbox")).await;
        assert_eq!(got["text"], text.as_str(), "{got}");
    }
    let reply = a
        .rpc(
            &alice,
            json!({"rid": "r1", "op": "presence.get", "users": [bob]}),
        )
        .await;
    assert_eq!(reply["result"]["users"][0]["status"], "online", "{reply}");
    let (status, body) = support::http_get(srv.http, "/healthz");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_head_that_arrives_in_pieces_is_still_mqtt() {
    let srv = Server::start();
    let mut s = TcpStream::connect(srv.http).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /mq").expect("first piece");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(
        b"tt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    )
    .expect("second piece");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
        .expect("last piece");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert_eq!(header(&answer, "sec-websocket-protocol"), Some("mqtt"));
    // A plain GET of /mqtt is told to upgrade, not served a page.
    let (head, _) = get(srv.http, "/mqtt", "");
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_served_from_web_dir_with_its_security_headers() {
    let site = tempfile::tempdir().expect("tempdir");
    let page = "<!doctype html><script src=\"app.js\" type=\"module\"></script>";
    std::fs::write(site.path().join("index.html"), page).expect("index");
    std::fs::write(site.path().join("app.js"), "console.log(1)").expect("app");
    let dir = support::toml_string(&site.path().to_string_lossy());
    let srv = Server::start_with(&format!("[web]\ndir = {dir}\n"));

    let (head, body) = get(srv.http, "/", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, page);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&head, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));

    let (head, body) = get(srv.http, "/app.js", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "console.log(1)");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let tag = header(&head, "etag").expect("an ETag").to_string();
    let (head, _) = get(srv.http, "/app.js", &format!("If-None-Match: {tag}\r\n"));
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");

    // A changed file shows at once: read from the folder at each request.
    std::fs::write(site.path().join("app.js"), "console.log(2)").expect("app");
    let (_, body) = get(srv.http, "/app.js", "");
    assert_eq!(body, "console.log(2)");

    for path in ["/nothing.js", "/..%2fchatd.toml", "/.hidden", "/a/b"] {
        let (head, _) = get(srv.http, path, "");
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
    // The other routes are still theirs.
    let (status, _) = support::http_get(srv.http, "/healthz");
    assert_eq!(status, 200);
    let (status, _) = support::http_request(srv.http, "POST", "/", None, Some("{}"));
    assert_eq!(status, 404, "only GET and HEAD serve files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_client_is_served_at_the_root() {
    let srv = Server::start();
    let (head, body) = get(srv.http, "/", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    assert!(body.contains("app.js"), "the page loads its bundle: {body}");
    let (head, body) = get(srv.http, "/app.js", "");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.len() > 1000, "a bundle of {} bytes", body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_enabled_false_serves_no_client_but_keeps_mqtt_on_http() {
    let srv = Server::start_with("[web]\nenabled = false\n");
    let (head, _) = get(srv.http, "/", "");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let user = unique("alice");
    srv.add_user(&user, "pw");
    let port = srv.http.port();
    support::connect_opts(ws_options(port, &user, &user))
        .await
        .expect("MQTT at /mqtt does not depend on web.enabled");
}
