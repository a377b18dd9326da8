//! Presence fan-out at volume, end to end: many watchers and many changes through the one
//! router subscription and the relay (`broker/src/presence_relay.rs`). Every watcher must end
//! with the true state of every user it watches — also one whose session fell behind and had
//! changes dropped — and watches must go away with their sessions.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use support::*;
use tokio::sync::Mutex;

const SECRET: &str = "presence-fanout-secret-0123456789";
/// Users whose presence changes.
const USERS: usize = 30;
/// Connect/disconnect rounds: 2 changes per user per round, 300 in all — more than a
/// session's mailbox holds (256).
const ROUNDS: usize = 5;
/// Users left online at the end.
const LEFT_ONLINE: usize = 10;

fn token(user: &str) -> String {
    let claims = json!({"sub": user, "exp": now_ms() / 1000 + 3600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a token")
}

fn user(i: usize) -> String {
    format!("p{i:03}")
}

/// A bare rumqttc connection (so the test decides when PUBACKs go out) subscribed at QoS 1 to
/// every watched user's presence; returns it with the retained states that came first (with
/// manual acks, those are acknowledged: nothing after them is).
async fn watcher(
    s: &Server,
    me: &str,
    manual_acks: bool,
) -> (AsyncClient, EventLoop, Vec<Publish>) {
    let mut o = MqttOptions::new(me, s.mqtt.ip().to_string(), s.mqtt.port());
    o.set_credentials(me, token(me));
    o.set_keep_alive(Duration::from_secs(120));
    o.set_manual_acks(manual_acks);
    let (client, mut events) = AsyncClient::new(o, 10_000);
    let filters: Vec<_> = (0..USERS)
        .map(|i| rumqttc::SubscribeFilter::new(format!("presence/{}", user(i)), QoS::AtLeastOnce))
        .collect();
    client
        .subscribe_many(filters)
        .await
        .expect("queue the subscribe");
    let mut retained = Vec::new();
    let ready = tokio::time::timeout(WAIT, async {
        while retained.len() < USERS {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    assert!(p.retain, "first state without retain: {p:?}");
                    // The states count against the session's QoS 1 window: more than it holds
                    // come only as the first ones are acknowledged.
                    if manual_acks {
                        client.ack(&p).await.expect("queue a PUBACK");
                    }
                    retained.push(p);
                }
                Ok(_) => {}
                Err(e) => panic!("{me}: {e:?}"),
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "{me}: {} of {USERS} states", retained.len());
    (client, events, retained)
}

/// Records `p` as the newest state of its user; checks it is a presence payload.
fn record(latest: &mut HashMap<String, String>, p: &Publish) {
    let v: Value = serde_json::from_slice(&p.payload).expect("presence JSON");
    let user = p.topic.strip_prefix("presence/").expect("a presence topic");
    assert_eq!(v["user"], user, "{v}");
    let status = v["status"].as_str().expect("a status").to_string();
    latest.insert(user.to_string(), status);
}

/// What every watcher must end with.
fn expected() -> HashMap<String, String> {
    (0..USERS)
        .map(|i| {
            let status = if i < LEFT_ONLINE { "online" } else { "offline" };
            (user(i), status.to_string())
        })
        .collect()
}

/// Polls `events` (acking each publish when `ack` is given) until the newest state of every
/// user is `want`, then for `settle` more to see that no older state comes after.
async fn until_states(
    events: &mut EventLoop,
    ack: Option<&AsyncClient>,
    latest: &mut HashMap<String, String>,
    want: &HashMap<String, String>,
    settle: Duration,
) {
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while latest != want {
            poll_once(events, ack, latest).await;
        }
    })
    .await;
    let wrong: Vec<_> = want
        .iter()
        .filter(|(u, s)| latest.get(*u) != Some(s))
        .collect();
    assert!(reached.is_ok(), "states still wrong: {wrong:?}");
    let _ = tokio::time::timeout(settle, async {
        loop {
            poll_once(events, ack, latest).await;
        }
    })
    .await;
    assert_eq!(latest, want, "a stale state arrived after the true one");
}

/// Handles the next event: a publish is recorded (and acknowledged when `ack` is given).
async fn poll_once(
    events: &mut EventLoop,
    ack: Option<&AsyncClient>,
    latest: &mut HashMap<String, String>,
) {
    match events.poll().await {
        Ok(Event::Incoming(Packet::Publish(p))) => {
            record(latest, &p);
            if let Some(client) = ack {
                client.ack(&p).await.expect("queue a PUBACK");
            }
        }
        Ok(_) => {}
        Err(e) => panic!("watcher connection: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_end_with_every_state_right_also_after_falling_behind() {
    let s = Server::start_with(&format!(
        "[auth]\njwt_hs256_secret = \"{SECRET}\"\n[limits]\nmax_inflight = 4\n"
    ));
    for i in 0..USERS {
        s.add_user(&user(i), "pw-unused-here");
    }
    s.add_user("carol", "pw-unused-here");
    s.add_user("dave", "pw-unused-here");

    // dave reads everything as it comes; carol takes the first states and then acknowledges
    // nothing, so her session's window (4) stays full and changes pile up for her.
    let (_dave, mut dave_events, dave_first) = watcher(&s, "dave", false).await;
    let (carol, mut carol_events, carol_first) = watcher(&s, "carol", true).await;
    let mut dave_latest = HashMap::new();
    for p in &dave_first {
        record(&mut dave_latest, p);
    }
    let mut carol_latest = HashMap::new();
    for p in &carol_first {
        record(&mut carol_latest, p);
    }
    let all_offline: HashMap<_, _> = (0..USERS).map(|i| (user(i), "offline".into())).collect();
    assert_eq!(carol_latest, all_offline);

    // dave is read while the others come and go; what he has is checked once they are done
    // (the final states also occur, for a moment, in the middle of a round).
    let dave_seen = Arc::new(Mutex::new(dave_latest));
    let dave_reader = {
        let seen = dave_seen.clone();
        tokio::spawn(async move {
            loop {
                let mut latest = seen.lock().await.clone();
                poll_once(&mut dave_events, None, &mut latest).await;
                *seen.lock().await = latest;
            }
        })
    };
    let mut stay = Vec::new();
    for round in 0..=ROUNDS {
        let mut devices = Vec::new();
        for i in 0..USERS {
            if round == ROUNDS && i >= LEFT_ONLINE {
                break;
            }
            let who = user(i);
            let c = connect(s.mqtt, &who, &who, &token(&who)).await;
            devices.push(c);
        }
        if round == ROUNDS {
            stay = devices;
        } else {
            for c in devices {
                c.disconnect().await;
            }
        }
    }
    let want = expected();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while *dave_seen.lock().await != want {
        assert!(
            !dave_reader.is_finished(),
            "dave's connection failed: {:?}",
            dave_reader.await
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "dave's states still wrong: {:?}",
            dave_seen.lock().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *dave_seen.lock().await,
        want,
        "dave: a stale state arrived after the true one"
    );
    dave_reader.abort();

    // Now carol reads again: whatever was dropped for her, she ends right.
    for p in &carol_first {
        carol.ack(p).await.expect("queue a PUBACK");
    }
    until_states(
        &mut carol_events,
        Some(&carol),
        &mut carol_latest,
        &expected(),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(stay.len(), LEFT_ONLINE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_with_unsubscribe_and_with_the_session() {
    let s = Server::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, &format!("{u}-pw"));
    }
    let watches = || s.metric("chatd_presence_watches").unwrap_or(-1.0);
    assert_eq!(watches(), 0.0);
    let mut carol = connect(s.mqtt, "carol", "carol", "carol-pw").await;
    for u in ["alice", "bob", "carol"] {
        carol
            .subscribe(&format!("presence/{u}"), QoS::AtLeastOnce)
            .await;
        carol.next_on(&format!("presence/{u}")).await;
    }
    // Subscribing again is not a second watch.
    carol.subscribe("presence/bob", QoS::AtLeastOnce).await;
    carol.next_on("presence/bob").await;
    assert_eq!(watches(), 3.0);

    carol
        .inner
        .unsubscribe("presence/alice")
        .await
        .expect("unsubscribe");
    wait_until("the unsubscribed watch is gone", || watches() == 2.0).await;
    let alice = connect(s.mqtt, "alice", "alice", "alice-pw").await;
    let bob = connect(s.mqtt, "bob", "bob", "bob-pw").await;
    let v = carol.next_on("presence/bob").await;
    assert_eq!(v["status"], "online", "{v}");
    // alice's change was published before bob's and would have come first.
    carol
        .nothing_on("presence/alice", Duration::from_millis(300))
        .await;

    carol.disconnect().await;
    wait_until("carol's watches are gone", || watches() == 0.0).await;
    drop((alice, bob));
}

/// Waits (up to [`WAIT`]) until `cond` holds.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
