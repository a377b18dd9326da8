//! Property tests ("fuzzing") of every parser in the broker that a client feeds: the MQTT decode
//! path (`wire`), the typing indicator and the `presence.get` request. Arbitrary bytes and
//! mutations of valid packets must give a packet, "need more bytes" or an error — never a panic,
//! never a loop that takes nothing off the buffer — and JSON requests must always get a reply of
//! the contract's shape.
//!
//! Case counts are small so the module runs in seconds; `PROPTEST_CASES` raises them,
//! `PROPTEST_RNG_SEED` picks another seed (the default seed is fixed: runs are repeatable).

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, BytesMut};
use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_kv::{KvStore, Op, SledStore};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::Value;

use crate::presence::parse_get;
use crate::typing::{TypingLimiter, TypingOutcome};
use crate::wire::{detect_version, Codec, Version, WireError, CODEC_PANICKED};

/// Fixed seed and no failure files, unless the environment asks otherwise.
fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x6d71_7474);
    }
    c.failure_persistence = None;
    c
}

// ---------------------------------------------------------------------------------------------
// MQTT packets
// ---------------------------------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A valid packet of some kind for `version`, built from generated fields.
fn valid_packet(version: Version) -> impl Strategy<Value = Vec<u8>> {
    let v5 = version == Version::V5;
    let topic = "[a-z/+#]{0,24}";
    let payload = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        // CONNECT with optional will, username and password.
        (
            "[a-z:]{0,12}",
            prop::option::of(("[a-z/]{1,16}", payload.clone())),
            prop::option::of("[a-z]{1,8}"),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
            any::<u16>(),
        )
            .prop_map(move |(id, will, user, pw, keep_alive)| {
                let mut body = Vec::new();
                string(&mut body, b"MQTT");
                body.push(if v5 { 5 } else { 4 });
                let mut flags = 0x02;
                if will.is_some() {
                    flags |= 0x04;
                }
                if pw.is_some() {
                    flags |= 0x40;
                }
                if user.is_some() {
                    flags |= 0x80;
                }
                body.push(flags);
                body.extend_from_slice(&keep_alive.to_be_bytes());
                if v5 {
                    body.push(0);
                }
                string(&mut body, id.as_bytes());
                if let Some((t, p)) = &will {
                    if v5 {
                        body.push(0);
                    }
                    string(&mut body, t.as_bytes());
                    string(&mut body, p);
                }
                if let Some(u) = &user {
                    string(&mut body, u.as_bytes());
                }
                if let Some(p) = &pw {
                    string(&mut body, p);
                }
                frame(0x10, &body)
            }),
        // PUBLISH at QoS 0, 1 or 2.
        (topic, payload, 0u8..3, 1u16..).prop_map(move |(t, p, qos, pkid)| {
            let mut body = Vec::new();
            string(&mut body, t.as_bytes());
            if qos > 0 {
                body.extend_from_slice(&pkid.to_be_bytes());
            }
            if v5 {
                body.push(0);
            }
            body.extend_from_slice(&p);
            frame(0x30 | (qos << 1), &body)
        }),
        // SUBSCRIBE / UNSUBSCRIBE with a few filters.
        (
            any::<bool>(),
            1u16..,
            prop::collection::vec((topic, 0u8..3), 1..4)
        )
            .prop_map(move |(sub, pkid, filters)| {
                let mut body = pkid.to_be_bytes().to_vec();
                if v5 {
                    body.push(0);
                }
                for (f, qos) in &filters {
                    string(&mut body, f.as_bytes());
                    if sub {
                        body.push(*qos);
                    }
                }
                frame(if sub { 0x82 } else { 0xa2 }, &body)
            }),
        // PUBACK, PUBREC, PUBREL, PUBCOMP.
        (prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]), 1u16..)
            .prop_map(|(first, pkid)| frame(first, &pkid.to_be_bytes())),
        Just(vec![0xc0, 0x00]),
        Just(vec![0xe0, 0x00]),
    ]
}

/// One way of damaging a packet.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    /// Rewrites the remaining length (second byte) with another value.
    Length(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<u8>().prop_map(Mutation::Length),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len();
        match *m {
            Mutation::Flip(i, b) if n > 0 => bytes[i % n] ^= b,
            Mutation::Truncate(i) => bytes.truncate(i % (n + 1)),
            Mutation::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Mutation::Remove(i) if n > 0 => {
                bytes.remove(i % n);
            }
            Mutation::Length(b) if n > 1 => bytes[1] = b,
            _ => {}
        }
    }
    bytes
}

/// Reads packets off `bytes` until the codec wants more or refuses; every packet must take
/// bytes off the buffer (no loop), and the whole must end within one step per two bytes.
fn drain(version: Version, bytes: &[u8]) -> Result<usize, TestCaseError> {
    let codec = Codec::new(version, 64 * 1024);
    let mut buf = BytesMut::from(bytes);
    let mut packets = 0;
    for _ in 0..=bytes.len() / 2 + 1 {
        let before = buf.len();
        match codec.read(&mut buf) {
            Ok(Some(_)) => {
                prop_assert!(buf.len() < before, "a packet took no bytes: {bytes:02x?}");
                packets += 1;
            }
            Err(WireError::Malformed(m)) if m == CODEC_PANICKED => {
                return Err(TestCaseError::fail(format!(
                    "the codec panicked on {bytes:02x?}"
                )))
            }
            Ok(None) | Err(_) => return Ok(packets),
        }
    }
    Err(TestCaseError::fail(format!(
        "decoding did not end: {bytes:02x?}"
    )))
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V4), Just(Version::V5)]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic_or_loop(
        v in version(),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = detect_version(&bytes);
        drain(v, &bytes)?;
    }

    #[test]
    fn valid_packets_decode_and_mutated_ones_never_panic(
        (v, packet) in version().prop_flat_map(|v| (Just(v), valid_packet(v))),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        // A complete packet is decided at once (a packet, or an error for contents the codec
        // does not accept), never "need more bytes".
        let mut buf = BytesMut::from(&packet[..]);
        let decoded = Codec::new(v, 64 * 1024).read(&mut buf);
        prop_assert!(
            !matches!(decoded, Ok(None)),
            "complete packet left waiting: {packet:02x?}"
        );
        let damaged = mutate(packet.clone(), &mutations);
        let _ = detect_version(&damaged);
        drain(v, &damaged)?;
        // Several packets back to back, the damaged one in the middle.
        let mut stream = packet.clone();
        stream.extend_from_slice(&damaged);
        stream.extend_from_slice(&packet);
        drain(v, &stream)?;
    }

    #[test]
    fn publish_round_trips(
        v in version(),
        topic in "[a-zA-Z0-9/_-]{1,64}",
        payload in prop::collection::vec(any::<u8>(), 0..2048),
        qos in 0u8..2,
        pkid in 1u16..,
    ) {
        let codec = Codec::new(v, 64 * 1024);
        let mut out = BytesMut::new();
        codec.write_publish(&topic, &payload, qos, pkid, false, &mut out);
        let incoming = codec.read(&mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let incoming = incoming.ok_or_else(|| TestCaseError::fail("incomplete"))?;
        let meta = incoming.publish.ok_or_else(|| TestCaseError::fail("no meta"))?;
        prop_assert_eq!(meta.qos, qos);
        if qos > 0 {
            prop_assert_eq!(meta.pkid, pkid);
        }
        match incoming.packet {
            rumqttd::protocol::Packet::Publish(p, _) => {
                prop_assert_eq!(&p.topic[..], topic.as_bytes());
                prop_assert_eq!(&p.payload[..], &payload[..]);
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        prop_assert!(out.is_empty());
    }
}

#[test]
fn a_huge_remaining_length_is_refused_from_the_header() {
    for v in [Version::V4, Version::V5] {
        let codec = Codec::new(v, 1024);
        let mut buf = BytesMut::new();
        buf.put_slice(&[0x30, 0xff, 0xff, 0xff, 0x7f]);
        assert!(codec.read(&mut buf).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// JSON requests the broker answers itself
// ---------------------------------------------------------------------------------------------

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        prop::sample::select(vec!["alice", "bob", "presence.get", "g1", ""]).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec!["rid", "op", "users", "to", "group", "x"])
                    .prop_map(str::to_string),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arbitrary bytes, arbitrary JSON, or a `presence.get` / typing object with arbitrary values.
fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        (any_json(), any_json(), prop::option::of(any_json())).prop_map(|(rid, users, extra)| {
            let mut o = serde_json::json!({"op": "presence.get", "rid": rid, "users": users});
            if let (Some(x), Some(obj)) = (extra, o.as_object_mut()) {
                obj.insert("x".into(), x);
            }
            o.to_string().into_bytes()
        }),
        (any_json(), any_json()).prop_map(|(to, group)| {
            serde_json::json!({"to": to, "group": group})
                .to_string()
                .into_bytes()
        }),
    ]
}

const CODES: &[&str] = &[
    "bad_request",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "internal",
];

fn check_error(e: &Value) -> Result<(), TestCaseError> {
    let code = e["code"].as_str().unwrap_or("");
    prop_assert!(CODES.contains(&code), "error code in {}", e);
    prop_assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        e
    );
    Ok(())
}

struct NoDelivery;

impl Deliver for NoDelivery {
    fn deliver(&self, _item: Outgoing) {}
    fn is_online(&self, _user: &str) -> bool {
        false
    }
}

/// A messaging service on a temporary store with users alice and bob (for typing).
struct World {
    _dir: tempfile::TempDir,
    accounts: Accounts,
    chat: Arc<Chat>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
        for user in ["alice", "bob"] {
            store
                .apply(vec![Op::Put(
                    format!("u/{user}").into_bytes(),
                    br#"{"hash":"$argon2id$unusable","created":0}"#.to_vec(),
                )])
                .expect("account");
        }
        let accounts = Accounts::new(Arc::new(chatd_embedded::accounts::EmbeddedAccounts::new(
            store.clone(),
        )));
        let chat = Chat::open(
            store,
            accounts.clone(),
            ChatConfig::default(),
            Arc::new(NoDelivery),
        )
        .expect("chat");
        World {
            _dir: dir,
            accounts,
            chat,
        }
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn presence_get_answers_in_the_contract_shape(payload in hostile_payload()) {
        let sent = serde_json::from_slice::<Value>(&payload).ok();
        match parse_get(&payload) {
            None => prop_assert!(
                sent.as_ref().and_then(|v| v.get("op")).and_then(Value::as_str)
                    != Some("presence.get"),
                "a presence.get was passed on"
            ),
            Some(Ok(get)) => {
                prop_assert!(!get.users.is_empty() && get.users.len() <= 100);
                prop_assert!((1..=128).contains(&get.rid.chars().count()));
            }
            Some(Err(reply)) => {
                let o = reply.as_object().ok_or_else(|| TestCaseError::fail("not an object"))?;
                prop_assert_eq!(o.get("ok"), Some(&Value::Bool(false)));
                if let Some(rid) = o.get("rid") {
                    prop_assert!(rid.is_string(), "rid {}", rid);
                    prop_assert_eq!(Some(rid), sent.as_ref().and_then(|v| v.get("rid")));
                }
                prop_assert!(o.keys().all(|k| ["rid", "ok", "error"].contains(&k.as_str())));
                check_error(&o["error"])?;
            }
        }
    }

    #[test]
    fn typing_answers_in_the_contract_shape(payload in hostile_payload()) {
        let w = world();
        // A fresh limiter per case: this is about parsing, not about the rate.
        let typing = TypingLimiter::new(1000);
        match typing.handle(&w.accounts, &w.chat, "alice", &payload) {
            TypingOutcome::Forward(items) => {
                for item in items {
                    prop_assert!(item.topic.ends_with("/typing"));
                    prop_assert!(serde_json::from_slice::<Value>(&item.payload).is_ok());
                }
            }
            TypingOutcome::Refuse(bytes) => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&v["typing"], &Value::Bool(true));
                check_error(&v["error"])?;
            }
        }
    }
}
