//! Property tests of `parse_get`: a `presence.get` request of any shape gets a reply of the
//! contract's shape, and anything else is passed on untouched.

use proptest::prelude::*;
use serde_json::Value;

use super::parse_get;
use crate::proptest_support::{check_error, hostile_payload, proptest_config};

proptest! {
    #![proptest_config(proptest_config(256))]

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
}
