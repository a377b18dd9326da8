//! Property tests of `parse_get`: a `presence.get` request of any shape gets a reply of the
//! contract's shape (the router's envelope checks first, then the op's own).

use chatd_wire::request::{self, Answer};
use proptest::prelude::*;
use serde_json::Value;

use super::parse_get;
use crate::proptest_support::{check_error, hostile_payload, proptest_config};

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn presence_get_answers_in_the_contract_shape(payload in hostile_payload()) {
        let sent = serde_json::from_slice::<Value>(&payload).ok();
        let reply = match request::parse(&payload) {
            Err(refusal) => refusal,
            Ok(req) if req.op != "presence.get" => return Ok(()),
            Ok(req) => {
                let users = parse_get(&req.obj);
                if let Ok(users) = &users {
                    prop_assert!(!users.is_empty() && users.len() <= 100);
                }
                request::reply(&req, &users.and_then(|users| Answer::of(&users)))
            }
        };
        let reply: Value = serde_json::from_slice(&reply).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let o = reply.as_object().ok_or_else(|| TestCaseError::fail("not an object"))?;
        if let Some(rid) = o.get("rid") {
            prop_assert!(rid.is_string(), "rid {}", rid);
            prop_assert!((1..=128).contains(&rid.as_str().unwrap_or_default().chars().count()));
            prop_assert_eq!(Some(rid), sent.as_ref().and_then(|v| v.get("rid")));
        }
        match o.get("ok") {
            Some(Value::Bool(true)) => {
                prop_assert!(o.keys().all(|k| ["rid", "ok", "result"].contains(&k.as_str())));
            }
            _ => {
                prop_assert_eq!(o.get("ok"), Some(&Value::Bool(false)));
                prop_assert!(o.keys().all(|k| ["rid", "ok", "error"].contains(&k.as_str())));
                check_error(&o["error"])?;
            }
        }
    }
}
