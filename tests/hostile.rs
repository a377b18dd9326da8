//! Hostile clients against the real binary: a login brute force (limited per user and source
//! address and per source address, refused without checking the password, recovering after the
//! window), floods of CONNECTs without credentials and of silent sockets (cheap to refuse,
//! bounded per address, memory flat), and a few hundred random or mutated MQTT packets over raw TCP. After each, a
//! fresh pair of users must still log in and exchange a message.
//!
//! Several source addresses are simulated with local addresses of 127.0.0.0/8, which Linux
//! routes to the loopback interface.

use crate::support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use support::raw::{self, Connect, Raw, ReadError, V};
use support::{still_serves, unique, Server};

/// A second source address (the server listens on 127.0.0.1).
const OTHER_SOURCE: &str = "127.0.0.2";

/// CONNACK codes of the failed-login limits and of a wrong password.
const V4_RATE_LIMITED: u8 = 5;
const V5_RATE_LIMITED: u8 = 0x9f;
const V4_BAD_PASSWORD: u8 = 4;
const V5_BAD_PASSWORD: u8 = 0x86;

fn other_source() -> IpAddr {
    OTHER_SOURCE.parse().expect("address")
}

/// CONNACK code of a login from `source` (None: 127.0.0.1).
async fn login_code(srv: &Server, v: V, source: Option<IpAddr>, user: &str, pw: &str) -> u8 {
    let connect = Connect::new(v, &format!("{user}:{}", unique("d")), user, pw);
    let (mut r, code) = match source {
        Some(ip) => Raw::connect_from(srv.mqtt, ip, &connect).await,
        None => Raw::connect_with(srv.mqtt, &connect).await,
    };
    let code = code.unwrap_or_else(|e| panic!("no CONNACK for {user}: {e:?}"));
    if code == 0 {
        r.send(&raw::disconnect()).await;
    }
    code
}

/// Polls until a login gives `want`, at most `deadline`; returns how long it took.
async fn wait_login(srv: &Server, user: &str, pw: &str, want: u8, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let code = login_code(srv, V::V4, None, user, pw).await;
        if code == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "login of {user} still answered {code} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_on_one_user_is_refused_without_checking_and_recovers() {
    // 3 failures per 30 s: one attempt comes back every 10 s, far longer than the few hashes
    // below take, so the refusals checked here cannot be a refill race.
    let mut srv = Server::start_with(
        "[limits]\nlogin_failures_per_user = 3\nlogin_failures_per_ip = 1000\nlogin_failure_window_secs = 30\n",
    );
    let victim = unique("victim");
    let other = unique("other");
    srv.add_user(&victim, "right-pw");
    srv.add_user(&other, "other-pw");

    // A success costs nothing: many good logins, then the full budget of failures is still there.
    for _ in 0..4 {
        assert_eq!(login_code(&srv, V::V4, None, &victim, "right-pw").await, 0);
    }
    for i in 0..3 {
        let code = login_code(&srv, V::V4, None, &victim, &format!("guess-{i}")).await;
        assert_eq!(code, V4_BAD_PASSWORD, "guess {i}");
    }
    // Over the limit: refused with the rate-limit codes, whatever the password — even the right
    // one — from this address (the budget is the user's from this address).
    assert_eq!(
        login_code(&srv, V::V4, None, &victim, "guess-x").await,
        V4_RATE_LIMITED
    );
    assert_eq!(
        login_code(&srv, V::V5, None, &victim, "guess-y").await,
        V5_RATE_LIMITED
    );
    assert_eq!(
        login_code(&srv, V::V4, None, &victim, "right-pw").await,
        V4_RATE_LIMITED
    );
    // From another address the user gets in: failures never lock a user out everywhere
    // (issue 12; this assertion used to expect the refusal).
    assert_eq!(
        login_code(&srv, V::V4, Some(other_source()), &victim, "right-pw").await,
        0
    );
    let limited = srv
        .metric("chatd_logins_rate_limited_total")
        .expect("metric");
    assert!(
        limited >= 3.0,
        "chatd_logins_rate_limited_total = {limited}"
    );

    // Another user from the same address is not affected.
    assert_eq!(login_code(&srv, V::V4, None, &other, "other-pw").await, 0);
    assert_eq!(login_code(&srv, V::V5, None, &other, "other-pw").await, 0);

    // Refusals did not use up anything: the victim gets in once a token came back (~10 s).
    let waited = wait_login(&srv, &victim, "right-pw", 0, Duration::from_secs(90)).await;
    eprintln!("victim could log in again after {waited:?}");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_from_one_address_is_refused_for_every_user() {
    let mut srv = Server::start_with(
        "[limits]\nlogin_failures_per_user = 1000\nlogin_failures_per_ip = 4\nlogin_failure_window_secs = 40\n",
    );
    let real = unique("real");
    srv.add_user(&real, "real-pw");
    // Guesses spread over many (mostly unknown) users from one address.
    for i in 0..4 {
        let user = if i == 0 {
            real.clone()
        } else {
            unique("nobody")
        };
        let code = login_code(&srv, V::V5, None, &user, "guess").await;
        assert_eq!(code, V5_BAD_PASSWORD, "guess {i}");
    }
    // That address is now refused for any user, the right password included…
    assert_eq!(
        login_code(&srv, V::V4, None, &unique("nobody"), "guess").await,
        V4_RATE_LIMITED
    );
    assert_eq!(
        login_code(&srv, V::V4, None, &real, "real-pw").await,
        V4_RATE_LIMITED
    );
    assert_eq!(
        login_code(&srv, V::V5, None, &real, "real-pw").await,
        V5_RATE_LIMITED
    );
    // …while the same user from another address gets in.
    assert_eq!(
        login_code(&srv, V::V4, Some(other_source()), &real, "real-pw").await,
        0
    );
    // After one refill period (10 s) the address may try again.
    let waited = wait_login(&srv, &real, "real-pw", 0, Duration::from_secs(90)).await;
    eprintln!("the address could log in again after {waited:?}");
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_right_logins_at_once_from_one_address_all_get_in() {
    // A budget of 3 failures per address, and 24 users logging in at the same moment from one
    // address (a carrier NAT after a restart): the hashes queue for the hashing slots, and
    // waiting for one must not count as a failure.
    let mut srv = Server::start_with(
        "[limits]\nlogin_failures_per_user = 3\nlogin_failures_per_ip = 3\nlogin_failure_window_secs = 600\n",
    );
    let users: Vec<String> = (0..24).map(|_| unique("nat")).collect();
    for u in &users {
        srv.add_user(u, "same-pw");
    }
    let logins = users.iter().map(|u| {
        let srv = &srv;
        async move { (u.clone(), login_code(srv, V::V4, None, u, "same-pw").await) }
    });
    for (user, code) in futures_util::future::join_all(logins).await {
        assert_eq!(code, 0, "{user} was refused");
    }
    still_serves(&mut srv).await;
    // The budget is still whole: three wrong guesses are told apart from the rate limit.
    for i in 0..3 {
        let code = login_code(&srv, V::V4, None, &users[0], &format!("guess-{i}")).await;
        assert_eq!(code, V4_BAD_PASSWORD, "guess {i}");
    }
    assert_eq!(
        login_code(&srv, V::V4, None, &users[1], "same-pw").await,
        V4_RATE_LIMITED
    );
}

/// A CONNECT without username and password.
fn anonymous_connect(v: V, client_id: &str) -> Vec<u8> {
    let mut c = Connect::new(v, client_id, "", "");
    c.username = None;
    c.password = None;
    c.encode()
}

/// Sends an anonymous CONNECT and returns the CONNACK code.
async fn anonymous(srv: &Server, v: V, i: usize) -> Result<u8, ReadError> {
    let mut r = Raw::open(srv.mqtt, v).await;
    r.send(&anonymous_connect(v, &format!("flood{i}"))).await;
    r.read_packet(Duration::from_secs(20))
        .await
        .map(|p| p.connack_code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_floods_without_credentials_stay_cheap() {
    let mut srv = Server::start();
    let user = unique("fresh");
    srv.add_user(&user, "fresh-pw");
    // Warm up (first login, first session) so the baseline includes what any server holds.
    assert_eq!(login_code(&srv, V::V4, None, &user, "fresh-pw").await, 0);
    let rss_before = srv.rss_kib().expect("rss");

    // Sequential: 1500 anonymous CONNECTs, each answered "bad user name or password".
    let started = Instant::now();
    for i in 0..1500 {
        let v = if i % 2 == 0 { V::V4 } else { V::V5 };
        let code = anonymous(&srv, v, i).await;
        let want = if v == V::V4 {
            V4_BAD_PASSWORD
        } else {
            V5_BAD_PASSWORD
        };
        assert_eq!(code, Ok(want), "anonymous CONNECT {i}");
    }
    let sequential = started.elapsed();

    // Concurrent: 4 waves of 300 at once (under the per-address handshake limit of 512).
    let started = Instant::now();
    for wave in 0..4 {
        let mut tasks = Vec::new();
        for i in 0..300 {
            let addr = srv.mqtt;
            tasks.push(tokio::spawn(async move {
                let v = if i % 2 == 0 { V::V4 } else { V::V5 };
                let mut r = Raw::open(addr, v).await;
                r.send(&anonymous_connect(v, &format!("wave{wave}-{i}")))
                    .await;
                r.read_packet(Duration::from_secs(30))
                    .await
                    .map(|p| p.connack_code())
            }));
        }
        for t in tasks {
            let code = t.await.expect("task");
            assert!(
                matches!(code, Ok(V4_BAD_PASSWORD) | Ok(V5_BAD_PASSWORD)),
                "concurrent anonymous CONNECT: {code:?}"
            );
        }
    }
    let concurrent = started.elapsed();

    // Silent sockets held open: a fresh login still gets in at once.
    let mut silent = Vec::new();
    for _ in 0..400 {
        silent.push(Raw::open(srv.mqtt, V::V4).await);
    }
    let login_started = Instant::now();
    assert_eq!(login_code(&srv, V::V4, None, &user, "fresh-pw").await, 0);
    let login_during = login_started.elapsed();
    assert!(
        login_during < Duration::from_secs(15),
        "a login took {login_during:?} during the flood"
    );
    let rss_flood = srv.rss_kib().expect("rss");
    drop(silent);

    // The refusals were counted and nothing piled up.
    let refused = srv
        .metric("chatd_connections_refused_total")
        .expect("metric");
    assert!(
        refused >= 2700.0,
        "chatd_connections_refused_total = {refused}"
    );
    let rss_after = srv.rss_kib().expect("rss");
    eprintln!(
        "flood: 1500 sequential anonymous CONNECTs in {sequential:?} ({:.0}/s), 1200 concurrent \
         in {concurrent:?} ({:.0}/s); login with 400 silent sockets open: {login_during:?}; \
         RSS {rss_before} KiB before, {rss_flood} KiB with the silent sockets, {rss_after} KiB after",
        1500.0 / sequential.as_secs_f64(),
        1200.0 / concurrent.as_secs_f64(),
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over the flood"
    );
    still_serves(&mut srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_handshakes_are_bounded_per_address() {
    // A long connect timeout: the silent sockets must stay pending for the whole check.
    let mut srv =
        Server::start_with("[limits]\nmax_handshakes_per_ip = 20\nconnect_timeout_secs = 120\n");
    let user = unique("gated");
    srv.add_user(&user, "gated-pw");
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(Raw::open(srv.mqtt, V::V4).await);
    }
    // The listener may not have accepted all 20 yet: wait until a 21st is turned away at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut extra = Raw::open(srv.mqtt, V::V4).await;
        extra.send(&anonymous_connect(V::V4, "extra")).await;
        match extra.read_packet(Duration::from_secs(5)).await {
            Err(ReadError::Closed) => break,
            other => assert!(
                Instant::now() < deadline,
                "a 21st pending socket was served: {other:?}"
            ),
        }
    }
    let refused = srv
        .metric("chatd_handshakes_refused_total")
        .expect("metric");
    assert!(refused >= 1.0, "chatd_handshakes_refused_total = {refused}");
    // Another address is not affected.
    assert_eq!(
        login_code(&srv, V::V4, Some(other_source()), &user, "gated-pw").await,
        0
    );
    // Once the silent sockets are gone, this address is served again.
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connect = Connect::new(V::V4, &format!("{user}:again"), &user, "gated-pw");
        let (_r, code) = Raw::connect_with(srv.mqtt, &connect).await;
        if code == Ok(0) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {code:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    still_serves(&mut srv).await;
}

// ---------------------------------------------------------------------------------------------
// Random and mutated packets
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so every run throws the same packets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Flips, inserts, removes or truncates a few bytes, or rewrites the length byte.
    fn mutate(&mut self, mut p: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + self.below(3) {
            let n = p.len();
            match self.below(5) {
                0 if n > 0 => {
                    let i = self.below(n);
                    p[i] ^= 1 << self.below(8);
                }
                1 => {
                    let i = self.below(n + 1);
                    let b = self.next() as u8;
                    p.insert(i, b);
                }
                2 if n > 0 => {
                    let i = self.below(n);
                    p.remove(i);
                }
                3 => p.truncate(self.below(n + 1)),
                4 if n > 1 => p[1] = self.next() as u8,
                _ => {}
            }
        }
        p
    }
}

/// A packet a logged-in client might send (valid before mutation).
fn session_packet(rng: &mut Rng, v: V, me: &str, peer: &str) -> Vec<u8> {
    let json_ish = [
        format!(
            r#"{{"cid":"c{}","to":"{peer}","type":"text","text":"hi"}}"#,
            rng.next()
        ),
        r#"{"rid":"r1","op":"history","with":"x"}"#.to_string(),
        r#"{"rid":"r2","op":"group.create","name":"g","members":[]}"#.to_string(),
        r#"{"ids":["1732790000123-00001-00000"],"status":"read"}"#.to_string(),
        r#"{"rid":"r3","op":"presence.get","users":["a"]}"#.to_string(),
        format!(r#"{{"to":"{peer}"}}"#),
    ];
    let topics = [
        format!("chat/{me}/send"),
        format!("chat/{me}/rpc"),
        format!("chat/{me}/receipt"),
        format!("chat/{me}/typing"),
        format!("user/{peer}/inbox"),
        "$SYS/x".to_string(),
    ];
    let pkid = 1 + rng.below(1000) as u16;
    let own = format!("user/{me}/#");
    match rng.below(6) {
        0..=2 => {
            let topic = &topics[rng.below(topics.len())];
            let mut payload = json_ish[rng.below(json_ish.len())].clone().into_bytes();
            if rng.below(2) == 0 {
                payload = rng.mutate(payload);
            }
            raw::publish(v, topic, &payload, rng.below(3) as u8, pkid)
        }
        3 => raw::subscribe(
            v,
            pkid,
            &[(own.as_str(), 1), ("#", 0), ("presence/+", 1)][..1 + rng.below(3)],
        ),
        4 => raw::puback(pkid),
        _ => {
            let n = rng.below(64);
            rng.bytes(n)
        }
    }
}

/// Whether `bytes` is a run of whole MQTT frames (or has a broken length, which the server
/// refuses at once) rather than ending inside a frame.
fn whole_frames(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return false;
        }
        let mut len = 0usize;
        let mut header = None;
        for (i, b) in bytes[1..].iter().enumerate().take(4) {
            len |= ((b & 0x7f) as usize) << (7 * i);
            if b & 0x80 == 0 {
                header = Some(i + 2);
                break;
            }
        }
        let Some(header) = header else {
            // Four continuation bytes: malformed at once; fewer: the length is still coming.
            return bytes.len() >= 5;
        };
        if bytes.len() < header + len {
            return false;
        }
        bytes = &bytes[header + len..];
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_packets_do_not_hurt_the_server() {
    // Mutated passwords are failed logins: the login limits are off here so that they do not
    // lock this address out of the second part.
    let mut srv = Server::start_with(
        "[limits]\nconnect_timeout_secs = 3\nlogin_failures_per_user = 0\nlogin_failures_per_ip = 0\n",
    );
    let me = unique("fuzz");
    let peer = unique("peer");
    srv.add_user(&me, "fuzz-pw");
    srv.add_user(&peer, "peer-pw");
    let mut rng = Rng(0x6368_6174_6421_0007);
    let mut thrown = 0;

    // 1. Before CONNECT: mutated CONNECTs and random bytes, 120 connections in waves of 40.
    for _wave in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let v = if rng.below(2) == 0 { V::V4 } else { V::V5 };
            let first = match rng.below(3) {
                0 => {
                    let n = 1 + rng.below(200);
                    rng.bytes(n)
                }
                _ => rng.mutate(Connect::new(v, &me, &me, "fuzz-pw").encode()),
            };
            thrown += 1;
            let addr = srv.mqtt;
            tasks.push(tokio::spawn(async move {
                let mut r = Raw::open(addr, v).await;
                r.send(&first).await;
                // The server closes the connection (at the latest after the 3 s connect timeout)
                // unless the damaged CONNECT was still a good one and was accepted.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match r.read_packet(left).await {
                        Ok(p) if p.kind() == raw::CONNACK && p.connack_code() == 0 => break,
                        Ok(_) => {}
                        Err(ReadError::Closed) => break,
                        Err(e) => panic!("no close and no CONNACK after {first:02x?}: {e:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    }

    // 2. After CONNECT: 100 packets from logged-in sessions; a session closed by a bad packet
    //    is replaced by a fresh login.
    let mut session: Option<Raw> = None;
    let mut logins = 0;
    for _ in 0..100 {
        let v = if rng.below(2) == 0 { V::V4 } else { V::V5 };
        if session.is_none() {
            let client = format!("{me}:d{logins}");
            logins += 1;
            session = Some(Raw::login(srv.mqtt, v, &client, &me, "fuzz-pw").await);
        }
        let Some(r) = session.as_mut() else {
            continue;
        };
        let packet = session_packet(&mut rng, r.v, &me, &peer);
        let packet = if rng.below(3) == 0 {
            rng.mutate(packet)
        } else {
            packet
        };
        thrown += 1;
        r.send(&packet).await;
        if !whole_frames(&packet) {
            // The server waits for the rest of a cut packet (bounded by keep-alive and the
            // packet size limit); this session is out of step, so start a new one.
            session = None;
            continue;
        }
        // Whole packets are acted on at once: a ping right after is answered, or the
        // connection was closed for the bad packet — never silence.
        r.send(&raw::pingreq()).await;
        match r
            .read_until(Duration::from_secs(20), |p| p.kind() == raw::PINGRESP)
            .await
        {
            Ok(_) => {}
            Err(ReadError::Closed) => session = None,
            Err(e) => panic!("no answer after {packet:02x?}: {e:?}"),
        }
    }
    eprintln!("threw {thrown} random or mutated packets; {logins} logins were needed");
    assert!(thrown >= 200);
    still_serves(&mut srv).await;
}
