//! Typing indicators: `chat/{me}/typing` `{"to":"bob"}` becomes `{"from":"alice"}` on
//! `user/bob/typing`, and `{"group":"g1"}` becomes `{"from":"alice","group":"g1"}` on every
//! other member's `user/{member}/typing` — at most once, never stored, rate-limited per user.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use chatd_core::accounts::Accounts;
use chatd_core::messaging::Chat;
use chatd_core::outbox::{Channel, Outgoing};
use serde_json::{json, Value};

/// What to do with one typing indicator.
pub enum TypingOutcome {
    /// Forward it (one item per recipient).
    Forward(Vec<Outgoing>),
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
    pub fn handle(
        &self,
        accounts: &Accounts,
        chat: &Chat,
        me: &str,
        payload: &[u8],
    ) -> TypingOutcome {
        let refuse = |code: &str, message: &str| {
            TypingOutcome::Refuse(Bytes::from(
                json!({"typing": true, "error": {"code": code, "message": message}}).to_string(),
            ))
        };
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(payload) else {
            return refuse(
                "bad_request",
                "a typing indicator is a JSON object like {\"to\":\"bob\"} or {\"group\":\"g1\"}",
            );
        };
        if let Some(field) = body.keys().find(|k| !["to", "group"].contains(&k.as_str())) {
            return refuse("bad_request", &format!("unknown field `{field}`"));
        }
        let to = body.get("to").map(Value::as_str);
        let group = body.get("group").map(Value::as_str);
        let target = match (to, group) {
            (Some(_), Some(_)) => {
                return refuse("bad_request", "give either `to` or `group`, not both")
            }
            (Some(Some(to)), None) if chatd_auth::validate_user_id(to).is_ok() => Ok(to),
            (None, Some(Some(group))) if chatd_auth::validate_user_id(group).is_ok() => Err(group),
            (None, Some(_)) => return refuse("bad_request", "`group` is not a group id"),
            (Some(_), None) => return refuse("bad_request", "`to` is not a valid user id"),
            (None, None) => {
                return refuse("bad_request", "`to` (a user id) or `group` is required")
            }
        };
        if !self.allow(me) {
            return refuse("rate_limited", "too many typing indicators");
        }
        let item = |user: &str, payload: Bytes| Outgoing {
            user: user.to_string(),
            channel: Channel::Typing,
            payload,
            queue_id: None,
            skip_client: None,
        };
        match target {
            Ok(to) => match accounts.exists(to) {
                Ok(true) => TypingOutcome::Forward(vec![item(
                    to,
                    Bytes::from(json!({ "from": me }).to_string()),
                )]),
                Ok(false) => refuse("not_found", "no such user"),
                Err(_) => refuse("internal", "cannot check the recipient"),
            },
            Err(group) => match chat.group_members(group) {
                Ok(Some(members)) if members.iter().any(|m| m == me) => {
                    let payload = Bytes::from(json!({ "from": me, "group": group }).to_string());
                    TypingOutcome::Forward(
                        members
                            .iter()
                            .filter(|m| *m != me)
                            .map(|m| item(m, payload.clone()))
                            .collect(),
                    )
                }
                Ok(Some(_)) => refuse("forbidden", "you are not a member of this group"),
                Ok(None) => refuse("not_found", "no such group"),
                Err(_) => refuse("internal", "cannot read the group"),
            },
        }
    }
}

#[cfg(test)]
mod proptests;

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
