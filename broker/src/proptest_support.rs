//! Shared pieces of the broker's property tests: the runner settings (case counts small so the
//! tests run in seconds; `PROPTEST_CASES` raises them, `PROPTEST_RNG_SEED` picks another seed,
//! the default seed is fixed so runs are repeatable) and the hostile JSON payloads that the
//! requests the broker answers itself (`presence.get`, typing) are fed.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use serde_json::Value;

/// Fixed seed and no failure files, unless the environment asks otherwise.
pub fn proptest_config(default_cases: u32) -> ProptestConfig {
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

/// Arbitrary JSON, with the keys and values these requests use drawn often.
pub fn any_json() -> impl Strategy<Value = Value> {
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
pub fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
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

/// The error codes of the contract.
pub const CODES: &[&str] = &[
    "bad_request",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "internal",
];

/// An `error` object of the contract: a known code and a message that says something.
pub fn check_error(e: &Value) -> Result<(), TestCaseError> {
    let code = e["code"].as_str().unwrap_or("");
    prop_assert!(CODES.contains(&code), "error code in {}", e);
    prop_assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        e
    );
    Ok(())
}
