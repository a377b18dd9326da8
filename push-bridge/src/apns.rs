//! Apple Push Notification service: `POST {endpoint}/3/device/{token}` over HTTP/2 (TLS with
//! ALPN `h2`, or cleartext prior knowledge for an `http://` relay or test server) with a
//! provider token (see [`crate::provider_token`]) and the headers `apns-topic`,
//! `apns-push-type: alert`, `apns-priority: 10`, `apns-expiration` and `apns-collapse-id`.
//!
//! Answers: 200 sent; 410 (`Unregistered`) and 400 `BadDeviceToken` / `DeviceTokenNotForTopic`
//! delete the token; 403 `ExpiredProviderToken` signs a new provider token and retries; 429 and
//! 5xx retry (honouring `Retry-After` when given); anything else fails, keeping the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::adapter::{Outcome, PushAdapter, SendFuture};
use crate::config::{check_endpoint, ApnsSettings, ConfigError};
use crate::payload::Notification;
use crate::provider_token::ProviderToken;
use crate::retry;

/// The APNs adapter.
pub struct ApnsAdapter {
    http: reqwest::Client,
    base: String,
    topic: String,
    jwt: ProviderToken,
    ttl: Duration,
}

impl ApnsAdapter {
    /// Builds the adapter; fails on a bad key or endpoint. `ttl` becomes `apns-expiration`.
    pub fn new(settings: &ApnsSettings, ttl: Duration) -> Result<ApnsAdapter, ConfigError> {
        check_endpoint(&settings.endpoint)?;
        let jwt = ProviderToken::new(&settings.key_pem, &settings.key_id, &settings.team_id)?;
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(ApnsAdapter {
            http,
            base: settings.endpoint.trim_end_matches('/').to_string(),
            topic: settings.topic.clone(),
            jwt,
            ttl,
        })
    }

    async fn send_one(&self, token: &str, n: &Notification) -> Outcome {
        let jwt = match self.jwt.get() {
            Ok(jwt) => jwt,
            Err(e) => {
                return Outcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        let expiration = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + self.ttl.as_secs();
        let response = match self
            .http
            .post(format!("{}/3/device/{token}", self.base))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", expiration.to_string())
            .header("apns-collapse-id", &n.collapse_id)
            .json(&body(n))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("APNs request failed: {e}"),
                }
            }
        };
        let status = response.status().as_u16();
        let after = retry::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let outcome = classify(status, after, &text);
        if reason_of(&text).as_deref() == Some("ExpiredProviderToken") {
            self.jwt.expire(&jwt);
        }
        outcome
    }
}

impl PushAdapter for ApnsAdapter {
    fn name(&self) -> &'static str {
        "apns"
    }

    fn send<'a>(&'a self, token: &'a str, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.send_one(token, notification))
    }
}

/// The JSON payload: an alert (title and body, no text unless previews are on) grouped by
/// conversation (`thread-id`), `mutable-content` so a notification service extension may
/// fetch and show the message itself, and the facts for the app beside `aps`.
pub fn body(n: &Notification) -> Value {
    let mut root = Map::new();
    root.insert(
        "aps".into(),
        json!({
            "alert": {"title": n.title(), "body": n.body()},
            "sound": "default",
            "thread-id": n.collapse_id,
            "mutable-content": 1,
        }),
    );
    root.insert("conversation".into(), n.conversation.clone().into());
    root.insert("id".into(), n.message_id.clone().into());
    root.insert("unread".into(), n.unread.into());
    if let Some(from) = &n.from {
        root.insert("from".into(), from.clone().into());
    }
    if let Some(group) = &n.group {
        root.insert("group".into(), group.clone().into());
    }
    if let Some(kind) = &n.kind {
        root.insert("kind".into(), kind.clone().into());
    }
    Value::Object(root)
}

/// The `reason` of an APNs error body.
fn reason_of(text: &str) -> Option<String> {
    serde_json::from_str::<Value>(text)
        .ok()?
        .get("reason")?
        .as_str()
        .map(str::to_string)
}

/// Turns an APNs answer into what the bridge does next.
pub fn classify(status: u16, after: Option<Duration>, text: &str) -> Outcome {
    if status == 200 {
        return Outcome::Sent;
    }
    let reason = reason_of(text).unwrap_or_default();
    let described = format!("APNs HTTP {status} {reason}");
    match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
            Outcome::TokenInvalid { reason: described }
        }
        (403, "ExpiredProviderToken") => Outcome::Retry {
            after: None,
            reason: described,
        },
        (s, _) if retry::retryable(s) => Outcome::Retry {
            after,
            reason: described,
        },
        _ => Outcome::Failed { reason: described },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, None, ""), Outcome::Sent);
        for (status, reason) in [
            (410, "Unregistered"),
            (400, "BadDeviceToken"),
            (400, "DeviceTokenNotForTopic"),
        ] {
            let body = format!(r#"{{"reason":"{reason}"}}"#);
            assert!(
                matches!(classify(status, None, &body), Outcome::TokenInvalid { .. }),
                "{status} {reason}"
            );
        }
        assert!(matches!(
            classify(400, None, r#"{"reason":"BadCollapseId"}"#),
            Outcome::Failed { .. }
        ));
        assert!(matches!(
            classify(403, None, r#"{"reason":"ExpiredProviderToken"}"#),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(403, None, r#"{"reason":"InvalidProviderToken"}"#),
            Outcome::Failed { .. }
        ));
        let after = Some(Duration::from_secs(1));
        assert_eq!(
            classify(429, after, r#"{"reason":"TooManyRequests"}"#),
            Outcome::Retry {
                after,
                reason: "APNs HTTP 429 TooManyRequests".into()
            }
        );
        assert!(matches!(
            classify(503, None, "garbage"),
            Outcome::Retry { .. }
        ));
    }
}
