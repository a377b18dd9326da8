//! Per-user write rates: a token bucket per user, shared by all of the user's connections, for
//! the publishes that make the server store or look something up (`chat/{me}/send`, and
//! separately `chat/{me}/receipt` + `chat/{me}/rpc`). A publish over its user's rate is answered
//! with a `rate_limited` error of the contract's shape for that topic (see [`refusal`]) and
//! nothing else happens, so one hostile client costs the server a map lookup per publish.
//!
//! Memory is bounded by the users who wrote within the last `burst / rate` seconds: buckets
//! that are full again are swept out (at most once a second, and only once the table is big),
//! and only connected users can write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatd_wire::json::{correlation_id, parse_object};
use chatd_wire::reply::{self, ErrorCode, Failure};
use serde_json::Value;

/// Buckets kept before full ones are swept out.
const SWEEP_ABOVE: usize = 1024;

/// Least time between two sweeps, so a big table is not scanned on every publish.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One user's tokens and when they were last counted.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Inner {
    buckets: HashMap<String, Bucket>,
    last_sweep: Instant,
}

/// Token buckets of `per_sec` tokens per second and `burst` capacity, one per user.
pub struct UserRate {
    per_sec: f64,
    burst: f64,
    inner: Mutex<Inner>,
}

impl UserRate {
    /// `per_sec` publishes per second per user, `burst` at once after a quiet spell.
    pub fn new(per_sec: u32, burst: u32) -> UserRate {
        UserRate {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Takes a token for `user`; false when the user is over its rate.
    pub fn allow(&self, user: &str) -> bool {
        let now = Instant::now();
        // The map stays consistent whatever panicked while it was held.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.buckets.len() > SWEEP_ABOVE
            && now.saturating_duration_since(inner.last_sweep) >= SWEEP_INTERVAL
        {
            inner.last_sweep = now;
            let (per_sec, burst) = (self.per_sec, self.burst);
            inner
                .buckets
                .retain(|_, b| level(b, now, per_sec, burst) < burst);
        }
        let Some(bucket) = inner.buckets.get_mut(user) else {
            // A user's first write in a while: a full bucket, less this write.
            inner.buckets.insert(
                user.to_string(),
                Bucket {
                    tokens: self.burst - 1.0,
                    at: now,
                },
            );
            return true;
        };
        let tokens = level(bucket, now, self.per_sec, self.burst);
        let allowed = tokens >= 1.0;
        *bucket = Bucket {
            tokens: if allowed { tokens - 1.0 } else { tokens },
            at: now,
        };
        allowed
    }
}

/// Tokens of `b` at `now`.
fn level(b: &Bucket, now: Instant, per_sec: f64, burst: f64) -> f64 {
    let refill = now.saturating_duration_since(b.at).as_secs_f64() * per_sec;
    (b.tokens + refill).min(burst)
}

/// Which kind of publish was refused: the answer's shape differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `chat/{me}/send`: an ack on `user/{me}/ack` with the send's `cid`.
    Send,
    /// `chat/{me}/receipt`: on `user/{me}/ack`, listing the receipt's ids.
    Receipt,
    /// `chat/{me}/rpc`: a reply on `user/{me}/rpc` with the request's `rid`.
    Rpc,
}

/// The `rate_limited` answer to a refused publish, of the contract's shape for its topic:
/// `{"cid":…,"error":{…}}`, `{"receipt":[…],"error":{…}}` or `{"rid":…,"ok":false,"error":{…}}`
/// — the correlation id (or the ids) read from the payload when it has them, else left out.
pub fn refusal(kind: Refused, payload: &[u8]) -> Bytes {
    // The payload is already bounded by the packet size; its own limits are not checked here.
    let obj = parse_object(payload, payload.len().max(1)).ok();
    let id = |name: &str| {
        obj.as_ref()
            .and_then(|o| correlation_id(o, name).ok())
            .map(str::to_string)
    };
    match kind {
        Refused::Send => reply::ack_err(
            id("cid").as_deref(),
            &Failure::new(
                ErrorCode::RateLimited,
                "too many messages: over limits.sends_per_sec; retry shortly",
            ),
        ),
        Refused::Rpc => reply::rpc_err(
            id("rid").as_deref(),
            &Failure::new(
                ErrorCode::RateLimited,
                "too many requests: over limits.requests_per_sec; retry shortly",
            ),
        ),
        Refused::Receipt => {
            let ids: Vec<String> = obj
                .as_ref()
                .and_then(|o| o.get("ids"))
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            reply::receipt_err(
                &ids,
                &Failure::new(
                    ErrorCode::RateLimited,
                    "too many receipts and requests: over limits.requests_per_sec; retry shortly",
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusals_per_user() {
        let rate = UserRate::new(1, 3);
        for _ in 0..3 {
            assert!(rate.allow("a"));
        }
        assert!(!rate.allow("a"));
        assert!(rate.allow("b"));
    }

    #[test]
    fn refusals_keep_the_contract_shapes() {
        let send: Value =
            serde_json::from_slice(&refusal(Refused::Send, br#"{"cid":"c-1","to":"b"}"#)).unwrap();
        assert_eq!(send["cid"], "c-1");
        assert_eq!(send["error"]["code"], "rate_limited");
        let rpc: Value =
            serde_json::from_slice(&refusal(Refused::Rpc, br#"{"rid":"r-1","op":"x"}"#)).unwrap();
        assert_eq!(rpc["rid"], "r-1");
        assert_eq!(rpc["ok"], false);
        assert_eq!(rpc["error"]["code"], "rate_limited");
        let receipt: Value =
            serde_json::from_slice(&refusal(Refused::Receipt, br#"{"ids":["m1","m2"]}"#)).unwrap();
        assert_eq!(receipt["receipt"], serde_json::json!(["m1", "m2"]));
        let garbage: Value = serde_json::from_slice(&refusal(Refused::Send, b"\xff")).unwrap();
        assert!(garbage.get("cid").is_none());
        assert_eq!(garbage["error"]["code"], "rate_limited");
    }
}
