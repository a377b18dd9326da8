//! Typing indicators: `chat/{me}/typing` `{"to":"bob"}` becomes `{"from":"alice"}` on
//! `user/bob/typing`, at most once, never stored, and rate-limited per user.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use chatd_plugins::accounts::Accounts;
use chatd_plugins::outbox::Outgoing;
use serde_json::{json, Value};

/// What to do with one typing indicator.
pub enum TypingOutcome {
    /// Forward it.
    Forward(Outgoing),
    /// Refuse it: JSON for `user/{me}/ack`.
    Refuse(Bytes),
}

/// A token bucket per user.
pub struct TypingLimiter {
    per_sec: f64,
    buckets: Mutex<HashMap<String, (Instant, f64)>>,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl TypingLimiter {
    /// Allows `per_sec` indicators per second per user, with bursts of the same size.
    pub fn new(per_sec: u32) -> TypingLimiter {
        TypingLimiter {
            per_sec: per_sec.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `user`; false when the user is over its rate.
    fn allow(&self, user: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > MAX_BUCKETS {
            let per_sec = self.per_sec;
            buckets.retain(|_, (at, tokens)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < per_sec
            });
        }
        let (at, tokens) = buckets
            .entry(user.to_string())
            .or_insert((now, self.per_sec));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.per_sec);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Checks one indicator from `me` and says where it goes.
    pub fn handle(&self, accounts: &Accounts, me: &str, payload: &[u8]) -> TypingOutcome {
        let refuse = |code: &str, message: &str| {
            TypingOutcome::Refuse(Bytes::from(
                json!({"typing": true, "error": {"code": code, "message": message}}).to_string(),
            ))
        };
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(payload) else {
            return refuse(
                "bad_request",
                "a typing indicator is a JSON object like {\"to\":\"bob\"}",
            );
        };
        if body.contains_key("group") {
            return refuse(
                "bad_request",
                "group typing is not supported by this server yet",
            );
        }
        if let Some(field) = body.keys().find(|k| k.as_str() != "to") {
            return refuse("bad_request", &format!("unknown field `{field}`"));
        }
        let Some(to) = body.get("to").and_then(Value::as_str) else {
            return refuse("bad_request", "`to` (a user id) is required");
        };
        if chatd_auth::validate_user_id(to).is_err() {
            return refuse("bad_request", "`to` is not a valid user id");
        }
        if !self.allow(me) {
            return refuse("rate_limited", "too many typing indicators");
        }
        match accounts.exists(to) {
            Ok(true) => {}
            Ok(false) => return refuse("not_found", "no such user"),
            Err(_) => return refuse("internal", "cannot check the recipient"),
        }
        TypingOutcome::Forward(Outgoing {
            user: to.to_string(),
            topic: format!("user/{to}/typing"),
            payload: Bytes::from(json!({ "from": me }).to_string()),
            queue_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_over_time() {
        let limiter = TypingLimiter::new(2);
        assert!(limiter.allow("a"));
        assert!(limiter.allow("a"));
        assert!(!limiter.allow("a"));
        assert!(limiter.allow("b"));
    }
}
