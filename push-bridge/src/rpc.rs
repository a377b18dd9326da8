//! `push.register` and `push.unregister` on `chat/{me}/rpc`, answered in the contract's reply
//! shape. Every other payload is left to the messaging plugin (the answer is `None`), including
//! payloads that are not JSON at all, so its error for those stays the one clients know.

use bytes::Bytes;
use chatd_wire::json;
use chatd_wire::reply::{rpc_err, rpc_ok, ErrorCode, Failure};
use serde_json::json as json_value;

use crate::tokens::{Platform, TokenError, Tokens};

/// Largest request payload looked at (the messaging plugin's request limit).
pub const MAX_RPC_BYTES: usize = 16 * 1024;

/// Answers `payload` when it is a push request of `user` (connected as `device`); `None` for
/// anything else.
pub fn answer(tokens: &Tokens, user: &str, device: Option<&str>, payload: &[u8]) -> Option<Bytes> {
    let obj = json::parse_object(payload, MAX_RPC_BYTES).ok()?;
    let op = obj.get("op")?.as_str()?;
    if op != "push.register" && op != "push.unregister" {
        return None;
    }
    let rid = match json::correlation_id(&obj, "rid") {
        Ok(rid) => rid,
        Err(f) => return Some(rpc_err(None, &f)),
    };
    let done = if op == "push.register" {
        register(tokens, user, device, &obj)
    } else {
        unregister(tokens, user, &obj)
    };
    Some(match done {
        Ok(()) => rpc_ok(rid, json_value!({})),
        Err(f) => rpc_err(Some(rid), &f),
    })
}

fn register(
    tokens: &Tokens,
    user: &str,
    device: Option<&str>,
    obj: &json::Object,
) -> Result<(), Failure> {
    json::only_fields(obj, &["rid", "op", "platform", "token"])?;
    let name = json::required_str(obj, "platform")?;
    let platform = Platform::parse(name).ok_or_else(|| {
        Failure::bad(format!(
            "`platform` must be \"fcm\" or \"apns\", not {name:?}"
        ))
    })?;
    let token = json::required_str(obj, "token")?;
    tokens
        .register(user, device, platform, token)
        .map_err(failure)
}

fn unregister(tokens: &Tokens, user: &str, obj: &json::Object) -> Result<(), Failure> {
    json::only_fields(obj, &["rid", "op", "token"])?;
    let token = json::required_str(obj, "token")?;
    // Unknown tokens and other users' tokens get the same answer as one's own: unregistering
    // is idempotent, and nobody learns whether someone else holds a token.
    tokens.unregister(user, token).map(|_| ()).map_err(failure)
}

fn failure(e: TokenError) -> Failure {
    match e {
        TokenError::Invalid(m) => Failure::bad(m),
        TokenError::TooLong(m) => Failure::new(ErrorCode::TooLarge, m),
        e @ TokenError::NotConfigured(_) => Failure::bad(e.to_string()),
        e @ TokenError::HeldByOther => Failure::new(ErrorCode::Forbidden, e.to_string()),
        TokenError::Store(e) => {
            tracing::error!("push token store failed: {e}");
            Failure::internal("the token could not be stored; retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_embedded::push::EmbeddedPush;
    use serde_json::Value;
    use std::sync::Arc;

    fn ask(t: &Tokens, payload: &str) -> Option<Value> {
        answer(t, "bob", Some("phone"), payload.as_bytes())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn answers_only_push_ops() {
        let dir = tempfile::tempdir().unwrap();
        let store = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let t = Tokens::new(Arc::new(EmbeddedPush::new(store)), vec![Platform::Fcm]);
        assert!(ask(&t, r#"{"rid":"1","op":"history","with":"a"}"#).is_none());
        assert!(ask(&t, "not json").is_none());
        let ok = ask(
            &t,
            r#"{"rid":"1","op":"push.register","platform":"fcm","token":"t1"}"#,
        );
        assert_eq!(ok.unwrap(), json_value!({"rid":"1","ok":true,"result":{}}));
        for (req, code) in [
            (
                r#"{"rid":"2","op":"push.register","platform":"gcm","token":"t"}"#,
                "bad_request",
            ),
            (
                r#"{"rid":"3","op":"push.register","platform":"apns","token":"ab"}"#,
                "bad_request",
            ),
            (
                r#"{"rid":"4","op":"push.register","platform":"fcm","token":"a b"}"#,
                "bad_request",
            ),
            (
                r#"{"rid":"5","op":"push.register","platform":"fcm"}"#,
                "bad_request",
            ),
            (
                r#"{"rid":"6","op":"push.register","platform":"fcm","token":7}"#,
                "bad_request",
            ),
            (
                r#"{"rid":"7","op":"push.unregister","token":"t","x":1}"#,
                "bad_request",
            ),
        ] {
            let v = ask(&t, req).unwrap();
            assert_eq!(v["ok"], false, "{req}: {v}");
            assert_eq!(v["error"]["code"], code, "{req}: {v}");
            assert!(v["rid"].is_string(), "{v}");
        }
        let long = format!(
            r#"{{"rid":"8","op":"push.register","platform":"fcm","token":"{}"}}"#,
            "a".repeat(5000)
        );
        assert_eq!(ask(&t, &long).unwrap()["error"]["code"], "too_large");
        let no_rid = ask(&t, r#"{"op":"push.unregister","token":"t1"}"#).unwrap();
        assert_eq!(no_rid["ok"], false);
        assert!(no_rid.get("rid").is_none());
        let gone = ask(&t, r#"{"rid":"9","op":"push.unregister","token":"t1"}"#).unwrap();
        assert_eq!(gone["ok"], true);
        assert!(t.list("bob").unwrap().is_empty());
    }
}
