//! Per-user limits against the real binary over raw sockets: failed logins from one address (or
//! a few) never lock the user out elsewhere, a valid JWT is never refused by them; sends,
//! receipts and requests over the user's rate get `rate_limited` answers of the contract's shape
//! (the budget is the user's, over all connections); a user's connections are capped, takeovers
//! excepted.
//!
//! Several source addresses are simulated with local addresses of 127.0.0.0/8, which Linux
//! routes to the loopback interface.

use crate::support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::raw::{self, Connect, Raw, V};
use support::{hs256_jwt, still_serves, unique, Server};

const V4_RATE_LIMITED: u8 = 5;
const V4_BAD_PASSWORD: u8 = 4;
const V4_UNAVAILABLE: u8 = 3;
const V5_QUOTA_EXCEEDED: u8 = 0x97;

const JWT_SECRET: &str = "user-limits-test-secret";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn jwt(user: &str) -> String {
    hs256_jwt(JWT_SECRET, user)
}

/// CONNACK code of a 3.1.1 login of `user` from `source` with a fresh device id.
async fn login_code(srv: &Server, source: &str, user: &str, pw: &str) -> u8 {
    let connect = Connect::new(V::V4, &format!("{user}:{}", unique("d")), user, pw);
    let (mut r, code) = Raw::connect_from(srv.mqtt, ip(source), &connect).await;
    let code = code.unwrap_or_else(|e| panic!("no CONNACK for {user}: {e:?}"));
    if code == 0 {
        r.send(&raw::disconnect()).await;
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_do_not_lock_the_user_out() {
    // The default budgets (10 failures per user and address, 30 per address, per 60 s).
    let mut srv = Server::start_with(&format!("[auth]\njwt_hs256_secret = \"{JWT_SECRET}\"\n"));
    let victim = unique("victim");
    let bystander = unique("bystander");
    srv.add_user(&victim, "right-pw");
    srv.add_user(&bystander, "by-pw");
    let attacker = "127.0.0.2";
    for i in 0..10 {
        let code = login_code(&srv, attacker, &victim, &format!("guess-{i}")).await;
        assert_eq!(code, V4_BAD_PASSWORD, "guess {i}");
    }
    // The eleventh guess from that address is refused unchecked, the right password too.
    assert_eq!(
        login_code(&srv, attacker, &victim, "guess-10").await,
        V4_RATE_LIMITED
    );
    assert_eq!(
        login_code(&srv, attacker, &victim, "right-pw").await,
        V4_RATE_LIMITED
    );
    // The victim from any other address gets in at once: the attacker has no lockout switch.
    assert_eq!(login_code(&srv, "127.0.0.1", &victim, "right-pw").await, 0);
    assert_eq!(login_code(&srv, "127.0.0.3", &victim, "right-pw").await, 0);
    // A valid JWT is never refused by password failures, even from the attacker's address
    // (a carrier NAT the victim shares); a forged one still is.
    assert_eq!(login_code(&srv, attacker, &victim, &jwt(&victim)).await, 0);
    let mut forged = jwt(&victim);
    forged.push('x');
    assert_eq!(
        login_code(&srv, attacker, &victim, &forged).await,
        V4_RATE_LIMITED
    );
    // The address's own budget (30) is not used up: other users from it are not affected.
    assert_eq!(login_code(&srv, attacker, &bystander, "by-pw").await, 0);
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_addresses_slow_down_only_those_addresses() {
    // 2 failures per user and address; the user-wide budget is twice that (4).
    let mut srv = Server::start_with(
        "[limits]\nlogin_failures_per_user = 2\nlogin_failures_per_ip = 100\nlogin_failure_window_secs = 600\n",
    );
    let victim = unique("spread");
    srv.add_user(&victim, "right-pw");
    let bots = ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"];
    for bot in bots {
        assert_eq!(
            login_code(&srv, bot, &victim, "guess").await,
            V4_BAD_PASSWORD,
            "first guess from {bot}"
        );
    }
    // The user-wide budget is used up: an address that failed gets no second guess within the
    // window (it would have one left of its own)…
    for bot in bots {
        assert_eq!(
            login_code(&srv, bot, &victim, "guess-2").await,
            V4_RATE_LIMITED,
            "second guess from {bot}"
        );
    }
    // …while addresses that did not fail are not refused: the user logs in from home.
    assert_eq!(login_code(&srv, "127.0.0.20", &victim, "right-pw").await, 0);
    assert_eq!(login_code(&srv, "127.0.0.1", &victim, "right-pw").await, 0);
    still_serves(&mut srv).await;
}

/// Subscribes `r` to `user/{me}/#` and waits for the SUBACK.
async fn subscribe_all(r: &mut Raw, me: &str) {
    let codes = r.subscribe(1, &[(&format!("user/{me}/#"), 1)]).await;
    assert_eq!(codes, vec![1], "SUBACK");
}

/// The next `n` JSON payloads on `topic`.
async fn collect(r: &mut Raw, topic: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(r.next_json_on(topic).await);
    }
    out
}

/// Asserts `v` is exactly `{<id_key>: …, "error": {"code": "rate_limited", "message": …}}` plus
/// `extra` keys.
fn assert_rate_limited(v: &Value, id_key: &str, extra: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut want: BTreeSet<&str> = [id_key, "error"].into_iter().collect();
    want.extend(extra);
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, want, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(v["error"].as_object().map(|e| e.len()), Some(2), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_user_rate_get_rate_limited_acks_on_every_connection() {
    let mut srv = Server::start_with("[limits]\nsends_per_sec = 1\nsends_burst = 3\n");
    let me = unique("sender");
    let peer = unique("peer");
    srv.add_user(&me, "pw");
    srv.add_user(&peer, "pw");
    let ack_topic = format!("user/{me}/ack");
    let send_topic = format!("chat/{me}/send");
    let mut a = Raw::login(srv.mqtt, V::V4, &format!("{me}:a"), &me, "pw").await;
    subscribe_all(&mut a, &me).await;
    let mut b = Raw::login(srv.mqtt, V::V5, &format!("{me}:b"), &me, "pw").await;
    let send =
        |cid: &str| json!({"cid": cid, "to": peer, "type": "text", "text": "hi"}).to_string();

    // 12 sends as fast as the socket takes them on connection a.
    let started = Instant::now();
    for i in 0..12u16 {
        let cid = format!("a-{i}");
        a.send(&raw::publish(
            V::V4,
            &send_topic,
            send(&cid).as_bytes(),
            1,
            i + 10,
        ))
        .await;
    }
    let acks = collect(&mut a, &ack_topic, 12).await;
    let burst_secs = started.elapsed().as_secs_f64();
    let sent = acks.iter().filter(|v| v["status"] == "sent").count();
    let refused: Vec<&Value> = acks.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!(sent + refused.len(), 12, "{acks:?}");
    // The burst (3) plus what refilled meanwhile (1 per second), never more.
    assert!(sent >= 3, "only {sent} of 12 accepted: {acks:?}");
    assert!(
        sent as f64 <= 3.0 + burst_secs.ceil() + 1.0,
        "{sent} accepted in {burst_secs:.1}s: {acks:?}"
    );
    for ack in &refused {
        assert_rate_limited(ack, "cid", &[]);
    }

    // The budget is the user's: connection b, a fresh MQTT 5 session, gets no burst of its own.
    let b_started = Instant::now();
    for i in 0..6u16 {
        let cid = format!("b-{i}");
        b.send(&raw::publish(
            V::V5,
            &send_topic,
            send(&cid).as_bytes(),
            1,
            i + 10,
        ))
        .await;
    }
    // a sees b's acks too (replies go to every connection of the user subscribed to them).
    let b_acks = collect(&mut a, &ack_topic, 6).await;
    let b_sent = b_acks.iter().filter(|v| v["status"] == "sent").count();
    let since_burst = started.elapsed().as_secs_f64();
    assert!(
        (b_sent as f64) <= since_burst.ceil() + 1.0,
        "{b_sent} of b's sends accepted {:.1}s after a used the budget: {b_acks:?}",
        b_started.duration_since(started).as_secs_f64()
    );
    assert!(
        b_acks.iter().any(|v| v.get("error").is_some()),
        "{b_acks:?}"
    );
    let limited = srv
        .metric("chatd_writes_rate_limited_total")
        .expect("metric");
    assert!(
        limited >= 1.0,
        "chatd_writes_rate_limited_total = {limited}"
    );

    // A refused send stored nothing: the same cid is accepted once the budget refilled.
    let retry_cid = refused[0]["cid"].as_str().expect("cid").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pkid = 100;
    loop {
        pkid += 1;
        a.send(&raw::publish(
            V::V4,
            &send_topic,
            send(&retry_cid).as_bytes(),
            1,
            pkid,
        ))
        .await;
        let ack = a.next_json_on(&ack_topic).await;
        assert_eq!(ack["cid"], retry_cid.as_str(), "{ack}");
        if ack["status"] == "sent" {
            break;
        }
        assert_rate_limited(&ack, "cid", &[]);
        assert!(Instant::now() < deadline, "still refused: {ack}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_requests_share_their_own_rate() {
    let mut srv = Server::start_with(
        "[limits]\nrequests_per_sec = 1\nrequests_burst = 3\nsends_per_sec = 100\nsends_burst = 100\n",
    );
    let me = unique("reader");
    let peer = unique("peer");
    srv.add_user(&me, "pw");
    srv.add_user(&peer, "pw");
    let mut a = Raw::login(srv.mqtt, V::V5, &format!("{me}:a"), &me, "pw").await;
    subscribe_all(&mut a, &me).await;
    let rpc_topic = format!("chat/{me}/rpc");
    let started = Instant::now();
    for i in 0..10u16 {
        let req = json!({"rid": format!("r-{i}"), "op": "conversations"}).to_string();
        a.send(&raw::publish(V::V5, &rpc_topic, req.as_bytes(), 1, i + 10))
            .await;
    }
    let replies = collect(&mut a, &format!("user/{me}/rpc"), 10).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = replies.iter().filter(|v| v["ok"] == true).count();
    assert!(ok >= 3, "{replies:?}");
    assert!(
        ok as f64 <= 3.0 + elapsed.ceil() + 1.0,
        "{ok} in {elapsed:.1}s: {replies:?}"
    );
    let refused: Vec<&Value> = replies.iter().filter(|v| v["ok"] == false).collect();
    assert!(!refused.is_empty(), "{replies:?}");
    for reply in refused {
        assert_rate_limited(reply, "rid", &["ok"]);
        assert!(reply["rid"].as_str().is_some_and(|r| r.starts_with("r-")));
    }
    // A receipt right after takes from the same budget: refused, listing its ids.
    let id = "1732790000123-00001-00000";
    let receipt = json!({"ids": [id], "status": "read"}).to_string();
    a.send(&raw::publish(
        V::V5,
        &format!("chat/{me}/receipt"),
        receipt.as_bytes(),
        1,
        50,
    ))
    .await;
    let ack = a.next_json_on(&format!("user/{me}/ack")).await;
    assert_rate_limited(&ack, "receipt", &[]);
    assert_eq!(ack["receipt"], json!([id]));
    // Sends have their own budget: still accepted.
    let send = json!({"cid": "c-1", "to": peer, "type": "text", "text": "hi"}).to_string();
    a.send(&raw::publish(
        V::V5,
        &format!("chat/{me}/send"),
        send.as_bytes(),
        1,
        51,
    ))
    .await;
    let ack = a.next_json_on(&format!("user/{me}/ack")).await;
    assert_eq!(ack["status"], "sent", "{ack}");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connections_are_capped_but_takeovers_are_not() {
    let mut srv = Server::start_with("[limits]\nmax_sessions_per_user = 3\n");
    let me = unique("devices");
    let other = unique("other");
    srv.add_user(&me, "pw");
    srv.add_user(&other, "pw");
    // Many distinct devices at once: exactly 3 get in, the others are refused with the quota
    // codes (3.1.1: 3 server unavailable).
    let attempts = (0..24).map(|i| {
        let connect = Connect::new(V::V4, &format!("{me}:d{i}"), &me, "pw");
        let addr = srv.mqtt;
        async move { (i, Raw::connect_with(addr, &connect).await) }
    });
    let mut held = Vec::new();
    let mut refused = 0;
    for (i, (r, code)) in futures_util::future::join_all(attempts).await {
        match code {
            Ok(0) => held.push((i, r)),
            Ok(c) => {
                assert_eq!(c, V4_UNAVAILABLE, "device {i}");
                refused += 1;
            }
            Err(e) => panic!("device {i}: no CONNACK: {e:?}"),
        }
    }
    assert_eq!(
        held.len(),
        3,
        "devices in: {:?}",
        held.iter().map(|h| h.0).collect::<Vec<_>>()
    );
    assert_eq!(refused, 21);
    // MQTT 5 gets 0x97 quota exceeded.
    let connect = Connect::new(V::V5, &format!("{me}:v5"), &me, "pw");
    let (_r, code) = Raw::connect_with(srv.mqtt, &connect).await;
    assert_eq!(code, Ok(V5_QUOTA_EXCEEDED));
    // A connected device reconnecting (same client id) takes over and is not refused.
    let again = Connect::new(V::V5, &format!("{me}:d{}", held[0].0), &me, "pw");
    let (mut taken_over, code) = Raw::connect_with(srv.mqtt, &again).await;
    assert_eq!(code, Ok(0), "takeover refused");
    assert!(taken_over.ping().await);
    // Still 3 places in use: a new device is refused.
    let connect = Connect::new(V::V4, &format!("{me}:new"), &me, "pw");
    assert_eq!(
        Raw::connect_with(srv.mqtt, &connect).await.1,
        Ok(V4_UNAVAILABLE)
    );
    // Other users are not affected.
    assert_eq!(
        Raw::connect_with(srv.mqtt, &Connect::new(V::V4, &other, &other, "pw"))
            .await
            .1,
        Ok(0)
    );
    // A device that leaves gives its place back.
    let (_, mut leaving) = held.pop().expect("a held device");
    leaving.send(&raw::disconnect()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_r, code) = Raw::connect_with(srv.mqtt, &connect).await;
        if code == Ok(0) {
            break;
        }
        assert_eq!(code, Ok(V4_UNAVAILABLE));
        assert!(Instant::now() < deadline, "the place was not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quota = srv
        .metric("chatd_sessions_quota_refused_total")
        .expect("metric");
    assert!(
        quota >= 23.0,
        "chatd_sessions_quota_refused_total = {quota}"
    );
    drop(held);
    still_serves(&mut srv).await;
}
