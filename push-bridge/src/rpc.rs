//! `push.register` and `push.unregister` on `chat/{me}/rpc`: their arguments and results (the
//! broker's router checks the envelope and writes the reply).

use chatd_wire::json;
use chatd_wire::reply::{ErrorCode, Failure};
use chatd_wire::request::{Answer, Outcome, Request};
use serde_json::json as json_value;

use crate::tokens::{Platform, TokenError, Tokens};

/// Answers a push request of `user` (connected as `device`). Blocks on the token store.
pub fn answer(tokens: &Tokens, user: &str, device: Option<&str>, request: &Request) -> Outcome {
    let obj = &request.obj;
    if request.op == "push.register" {
        register(tokens, user, device, obj)?;
    } else {
        unregister(tokens, user, obj)?;
    }
    Answer::of(&json_value!({}))
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
    use chatd_wire::request;
    use serde_json::Value;
    use std::sync::Arc;

    /// The reply the router would write.
    fn ask(t: &Tokens, payload: &str) -> Option<Value> {
        let reply = match request::parse(payload.as_bytes()) {
            Err(refusal) => refusal,
            Ok(req) => request::reply(&req, &answer(t, "bob", Some("phone"), &req)),
        };
        Some(serde_json::from_slice(&reply).unwrap())
    }

    #[test]
    fn answers_push_ops() {
        let dir = tempfile::tempdir().unwrap();
        let store = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let t = Tokens::new(Arc::new(EmbeddedPush::new(store)), vec![Platform::Fcm]);
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
