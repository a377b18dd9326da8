//! Property tests ("fuzzing") of every JSON request the messaging service parses: sends,
//! receipts and each rpc op (history, conversations, group.*, and the ops other services
//! answer). Whatever the payload — arbitrary bytes, arbitrary JSON, or objects built from the
//! contract's own field names with arbitrary values — the service must not panic and must answer
//! with a reply of the contract's shape: a send ack or ack error, a receipt refusal (or nothing),
//! an rpc success or `{"rid"?, "ok": false, "error": {"code", "message"}}`.
//!
//! Case counts are small so the file runs in seconds; `PROPTEST_CASES` raises them for a longer
//! run, `PROPTEST_RNG_SEED` picks another seed (the default seed is fixed, so a run is repeatable
//! and CI cannot flake on a case nobody has seen before).

mod common;

use std::sync::OnceLock;

use common::Env;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::{Map, Value};

/// The error codes of the contract.
const CODES: &[&str] = &[
    "bad_request",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "internal",
];

/// Every rpc op of the contract, plus near misses.
const OPS: &[&str] = &[
    "history",
    "conversations",
    "group.create",
    "group.add",
    "group.remove",
    "group.promote",
    "group.demote",
    "group.leave",
    "group.rename",
    "group.info",
    "presence.get",
    "media.upload",
    "media.download",
    "push.register",
    "push.unregister",
    "group.",
    "History",
    "",
];

/// Field names that requests of any kind carry.
const FIELDS: &[&str] = &[
    "rid", "op", "cid", "to", "group", "type", "text", "reply_to", "media", "from", "with",
    "before", "after", "limit", "name", "members", "users", "message", "ids", "status", "x",
];

/// Field names of a send (`cid`, `to` and `group` are added separately).
const SEND_FIELDS: &[&str] = &["type", "text", "reply_to", "media"];

/// Field names of a receipt.
const RECEIPT_FIELDS: &[&str] = &["ids", "status"];

/// Users that exist in the test store.
const USERS: &[&str] = &["alice", "bob", "carol"];

/// The proptest settings: fixed seed and no failure files unless the environment says otherwise.
fn config(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x6368_6174);
    }
    c.failure_persistence = None;
    c
}

/// One service for all cases (a store per case would make the run slow), with a group so that
/// group ops get past "no such group" now and then.
struct World {
    rt: tokio::runtime::Runtime,
    env: Env,
    group: String,
    message: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let env = Env::new(USERS);
        let (group, message) = rt.block_on(async {
            let reply = env
                .rpc(
                    "alice",
                    serde_json::json!({"rid":"g","op":"group.create","name":"fuzz",
                        "members":["bob","carol"]}),
                )
                .await;
            let group = reply["result"]["group"]
                .as_str()
                .unwrap_or_else(|| panic!("group.create failed: {reply}"))
                .to_string();
            let message = env.text("alice", "bob", "seed-1", "hello").await;
            (group, message)
        });
        World {
            rt,
            env,
            group,
            message,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Reply shapes
// ---------------------------------------------------------------------------------------------

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, TestCaseError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        other => Err(TestCaseError::fail(format!(
            "{what} reply is not a JSON object: {other:?} from {:?}",
            String::from_utf8_lossy(bytes)
        ))),
    }
}

fn check_error(v: Option<&Value>, what: &str) -> Result<(), TestCaseError> {
    let Some(Value::Object(e)) = v else {
        return Err(TestCaseError::fail(format!(
            "{what}: no error object: {v:?}"
        )));
    };
    let code = e.get("code").and_then(Value::as_str).unwrap_or("");
    prop_assert!(CODES.contains(&code), "{what}: unknown error code in {e:?}");
    prop_assert!(
        e.get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message in {e:?}"
    );
    prop_assert_eq!(e.len(), 2, "{}: extra fields in {:?}", what, e);
    Ok(())
}

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), TestCaseError> {
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(TestCaseError::fail(format!(
            "{what}: unexpected field {k} in {o:?}"
        )));
    }
    Ok(())
}

/// `{"cid","id","ts","status":"sent"}` or `{"cid"?, "error":{…}}`.
fn check_ack(bytes: &[u8]) -> Result<(), TestCaseError> {
    let o = object(bytes, "send")?;
    if o.contains_key("error") {
        only_keys(&o, &["cid", "error"], "send error")?;
        if let Some(cid) = o.get("cid") {
            prop_assert!(cid.is_string(), "cid {:?}", cid);
        }
        return check_error(o.get("error"), "send");
    }
    only_keys(&o, &["cid", "id", "ts", "status"], "send ack")?;
    prop_assert_eq!(o.get("status"), Some(&Value::from("sent")));
    prop_assert!(o.get("id").is_some_and(Value::is_string));
    prop_assert!(o.get("ts").is_some_and(Value::is_u64));
    Ok(())
}

/// Nothing, or `{"receipt":[…],"error":{…}}`.
fn check_receipt(reply: Option<&[u8]>) -> Result<(), TestCaseError> {
    let Some(bytes) = reply else {
        return Ok(());
    };
    let o = object(bytes, "receipt")?;
    only_keys(&o, &["receipt", "error"], "receipt")?;
    prop_assert!(
        o.get("receipt")
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().all(Value::is_string)),
        "receipt ids in {:?}",
        o
    );
    check_error(o.get("error"), "receipt")
}

/// `{"rid","ok":true,"result"}` or `{"rid"?,"ok":false,"error":{…}}`.
fn check_rpc(bytes: &[u8], sent_rid: Option<&Value>) -> Result<(), TestCaseError> {
    let o = object(bytes, "rpc")?;
    match o.get("ok") {
        Some(Value::Bool(true)) => {
            only_keys(&o, &["rid", "ok", "result"], "rpc ok")?;
            prop_assert!(o.contains_key("result"));
            prop_assert_eq!(o.get("rid"), sent_rid, "rpc ok with another rid");
        }
        Some(Value::Bool(false)) => {
            only_keys(&o, &["rid", "ok", "error"], "rpc error")?;
            check_error(o.get("error"), "rpc")?;
            if let Some(rid) = o.get("rid") {
                // A rid is echoed only when it was a usable one.
                prop_assert_eq!(Some(rid), sent_rid, "rpc error with another rid");
            }
        }
        other => {
            return Err(TestCaseError::fail(format!(
                "rpc reply without a boolean ok: {other:?} in {o:?}"
            )))
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop::sample::select(USERS).prop_map(Value::from),
        prop::sample::select(OPS).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(FIELDS).prop_map(str::to_string),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The fields each op accepts (so that generated requests get past "unknown field").
fn fields_of(op: &str) -> &'static [&'static str] {
    match op {
        "history" => &["with", "group", "before", "after", "limit"],
        "group.create" => &["name", "members"],
        "group.add" | "group.remove" | "group.promote" | "group.demote" => &["group", "users"],
        "group.leave" => &["group"],
        "group.rename" => &["group", "name"],
        "group.info" => &["group", "message"],
        "presence.get" => &["users"],
        _ => &[],
    }
}

/// A value for field `name`: mostly one that fits (real users, the real group and message ids,
/// statuses, small numbers, lists of those), sometimes a near miss, sometimes anything.
fn value_for(name: &'static str) -> BoxedStrategy<Value> {
    let w = world();
    let user = prop::sample::select(USERS).prop_map(Value::from);
    let fitting: BoxedStrategy<Value> = match name {
        "to" | "with" => user.boxed(),
        "users" | "members" => prop::collection::vec(user, 0..5)
            .prop_map(Value::from)
            .boxed(),
        "group" => prop::sample::select(vec![
            Value::from(w.group.clone()),
            Value::from("g_0000000000000000000000"),
            Value::from("g/1"),
        ])
        .boxed(),
        "before" | "after" | "message" | "reply_to" => prop::sample::select(vec![
            Value::from(w.message.clone()),
            Value::from("1732790000123-00001-00000"),
            Value::from("not-an-id"),
        ])
        .boxed(),
        "ids" => prop::collection::vec(
            prop::sample::select(vec![
                Value::from(w.message.clone()),
                Value::from("1732790000123-00001-00000"),
                Value::from("x"),
            ]),
            0..4,
        )
        .prop_map(Value::from)
        .boxed(),
        "status" => prop::sample::select(vec!["delivered", "read", "sent", "READ"])
            .prop_map(Value::from)
            .boxed(),
        "type" => prop::sample::select(vec!["text", "text", "text", "image", "sticker"])
            .prop_map(Value::from)
            .boxed(),
        "limit" => (0u64..120).prop_map(Value::from).boxed(),
        "text" | "name" => "[ -~]{0,24}".prop_map(Value::from).boxed(),
        "media" => "[a-z0-9_]{0,12}".prop_map(Value::from).boxed(),
        _ => any_json().boxed(),
    };
    prop_oneof![4 => fitting, 1 => any_json()].boxed()
}

/// An object with the given fields (each present with probability 3/4) and values for them.
fn object_of(fields: &'static [&'static str]) -> BoxedStrategy<Map<String, Value>> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .iter()
        .map(|&f| {
            prop::option::weighted(0.75, value_for(f).prop_map(move |v| (f.to_string(), v))).boxed()
        })
        .collect();
    parts
        .prop_map(|kv| kv.into_iter().flatten().collect::<Map<String, Value>>())
        .boxed()
}

/// A request for one of the ops with that op's fields, now and then a stray field, and a usable
/// `rid` most of the time.
fn request_like() -> BoxedStrategy<Value> {
    let built = prop::sample::select(OPS).prop_flat_map(|op| {
        (
            object_of(fields_of(op)),
            prop::option::weighted(0.1, (prop::sample::select(FIELDS), any_json())),
            prop::option::weighted(0.9, "[a-z0-9-]{1,10}"),
        )
            .prop_map(move |(mut o, stray, rid)| {
                o.insert("op".into(), Value::from(op));
                if let Some(rid) = rid {
                    o.insert("rid".into(), Value::from(rid));
                }
                if let Some((k, v)) = stray {
                    o.insert(k.to_string(), v);
                }
                Value::Object(o)
            })
    });
    prop_oneof![built, valid_request().prop_flat_map(perturbed)].boxed()
}

/// A send with the send fields, a target (mostly one of `to` and `group`), now and then a stray
/// field, and a cid most of the time.
fn send_like() -> BoxedStrategy<Value> {
    let target = prop_oneof![
        5 => value_for("to").prop_map(|v| vec![("to", v)]),
        3 => value_for("group").prop_map(|v| vec![("group", v)]),
        1 => (value_for("to"), value_for("group")).prop_map(|(t, g)| vec![("to", t), ("group", g)]),
        1 => Just(Vec::new()),
    ];
    (
        object_of(SEND_FIELDS),
        target,
        prop::option::weighted(0.1, (prop::sample::select(FIELDS), any_json())),
        prop::option::weighted(0.9, "[a-z0-9-]{1,10}"),
    )
        .prop_map(|(mut o, target, stray, cid)| {
            for (k, v) in target {
                o.insert(k.to_string(), v);
            }
            if let Some(cid) = cid {
                o.insert("cid".into(), Value::from(cid));
            }
            if let Some((k, v)) = stray {
                o.insert(k.to_string(), v);
            }
            Value::Object(o)
        })
        .boxed()
        .prop_union(valid_send().prop_flat_map(perturbed).boxed())
        .boxed()
}

/// `base` unchanged or with one change: a field removed, a field's value replaced (by a value
/// that fits another field, or by anything), or a stray field added. Starting from valid
/// requests this reaches the checks that come after the first ones.
fn perturbed(base: Map<String, Value>) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = base.keys().cloned().collect();
    let n = keys.len().max(1);
    (
        0u8..4,
        0..n,
        prop::sample::select(FIELDS),
        prop::sample::select(FIELDS).prop_flat_map(value_for),
    )
        .prop_map(move |(how, i, field, value)| {
            let mut o = base.clone();
            let key = keys.get(i).cloned().unwrap_or_default();
            match how {
                0 => {}
                1 => {
                    o.remove(&key);
                }
                2 => {
                    o.insert(key, value);
                }
                _ => {
                    o.insert(field.to_string(), value);
                }
            }
            Value::Object(o)
        })
}

/// A valid request of each op, to be perturbed.
fn valid_request() -> impl Strategy<Value = Map<String, Value>> {
    let w = world();
    let (group, message) = (w.group.clone(), w.message.clone());
    let requests: Vec<Value> = vec![
        serde_json::json!({"op":"history","with":"bob","limit":5}),
        serde_json::json!({"op":"history","group":group,"before":message}),
        serde_json::json!({"op":"conversations"}),
        serde_json::json!({"op":"group.create","name":"n","members":["bob"]}),
        serde_json::json!({"op":"group.add","group":group,"users":["carol"]}),
        serde_json::json!({"op":"group.remove","group":group,"users":["carol"]}),
        serde_json::json!({"op":"group.promote","group":group,"users":["bob"]}),
        serde_json::json!({"op":"group.demote","group":group,"users":["bob"]}),
        serde_json::json!({"op":"group.rename","group":group,"name":"new"}),
        serde_json::json!({"op":"group.info","group":group,"message":message}),
        serde_json::json!({"op":"presence.get","users":["bob"]}),
    ];
    (prop::sample::select(requests), "[a-z0-9-]{1,10}").prop_map(|(r, rid)| {
        let mut o = r.as_object().cloned().unwrap_or_default();
        o.insert("rid".into(), Value::from(rid));
        o
    })
}

/// A valid send (text to a user or to the group, maybe a reply), to be perturbed.
fn valid_send() -> impl Strategy<Value = Map<String, Value>> {
    let w = world();
    let (group, message) = (w.group.clone(), w.message.clone());
    (
        "[a-z0-9-]{1,10}",
        prop::option::of(prop::sample::select(USERS)),
        "[ -~]{1,24}",
        any::<bool>(),
    )
        .prop_map(move |(cid, to, text, reply)| {
            let mut o = Map::new();
            o.insert("cid".into(), Value::from(cid));
            match to {
                Some(to) => o.insert("to".into(), Value::from(to)),
                None => o.insert("group".into(), Value::from(group.clone())),
            };
            o.insert("type".into(), Value::from("text"));
            o.insert("text".into(), Value::from(text));
            if reply {
                o.insert("reply_to".into(), Value::from(message.clone()));
            }
            o
        })
}

/// A receipt with its fields, now and then a stray one.
fn receipt_like() -> impl Strategy<Value = Value> {
    (
        object_of(RECEIPT_FIELDS),
        prop::option::weighted(0.1, (prop::sample::select(FIELDS), any_json())),
    )
        .prop_map(|(mut o, stray)| {
            if let Some((k, v)) = stray {
                o.insert(k.to_string(), v);
            }
            Value::Object(o)
        })
}

/// Bytes that are often almost JSON: arbitrary bytes, or JSON with a few bytes flipped or cut.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (request_like(), any::<u64>(), 1usize..4).prop_map(|(v, seed, flips)| {
            let mut bytes = v.to_string().into_bytes();
            let mut x = seed | 1;
            for _ in 0..flips {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if !bytes.is_empty() {
                    let i = (x as usize) % bytes.len();
                    bytes[i] = (x >> 32) as u8;
                }
            }
            if x % 3 == 0 {
                bytes.truncate((x as usize >> 8) % (bytes.len() + 1));
            }
            bytes
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn exercise(payload: &[u8]) -> Result<(), TestCaseError> {
    let w = world();
    let rid = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("rid").cloned())
        .filter(|r| {
            r.as_str()
                .is_some_and(|s| (1..=128).contains(&s.chars().count()))
        });
    let (ack, receipt, rpc) = w.rt.block_on(async {
        (
            w.env.chat.send("alice", payload).await,
            w.env.chat.receipt("bob", payload).await,
            w.env.chat.rpc("carol", payload).await,
        )
    });
    check_ack(&ack)?;
    check_receipt(receipt.as_deref())?;
    check_rpc(&rpc, rid.as_ref())
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn arbitrary_bytes_get_well_formed_replies(payload in hostile_bytes()) {
        exercise(&payload)?;
    }

    #[test]
    fn arbitrary_json_gets_well_formed_replies(value in any_json()) {
        exercise(value.to_string().as_bytes())?;
    }

    #[test]
    fn every_rpc_op_answers_in_the_contract_shape(request in request_like()) {
        let w = world();
        let rid = request.get("rid").cloned();
        let reply = w.rt.block_on(w.env.chat.rpc("alice", request.to_string().as_bytes()));
        check_rpc(&reply, rid.as_ref())?;
        // The same request from a user outside the group.
        let reply = w.rt.block_on(w.env.chat.rpc("carol", request.to_string().as_bytes()));
        check_rpc(&reply, rid.as_ref())?;
    }

    #[test]
    fn sends_and_receipts_answer_in_the_contract_shape(
        send in send_like(),
        receipt in receipt_like(),
    ) {
        let w = world();
        let ack = w.rt.block_on(w.env.chat.send("alice", send.to_string().as_bytes()));
        check_ack(&ack)?;
        let reply = w.rt.block_on(w.env.chat.receipt("bob", receipt.to_string().as_bytes()));
        check_receipt(reply.as_deref())?;
    }
}

#[test]
fn oversized_payloads_are_refused_too_large() {
    let w = world();
    let big = format!(
        r#"{{"rid":"r","op":"history","with":"bob","x":"{}"}}"#,
        "a".repeat(64 * 1024)
    );
    let reply = w.rt.block_on(w.env.chat.rpc("alice", big.as_bytes()));
    let v: Value = serde_json::from_slice(&reply).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "too_large", "{v}");
    let ack = w.rt.block_on(w.env.chat.send("alice", big.as_bytes()));
    check_ack(&ack).expect("ack shape");
    let receipt = w.rt.block_on(w.env.chat.receipt("bob", big.as_bytes()));
    check_receipt(receipt.as_deref()).expect("receipt shape");
}
