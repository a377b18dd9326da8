//! Firebase Cloud Messaging, HTTP v1: `POST {endpoint}/v1/projects/{project}/messages:send`
//! with an OAuth2 bearer token (see [`crate::oauth`]).
//!
//! Answers: 2xx sent; 404 `UNREGISTERED` and 400 `INVALID_ARGUMENT` about the token delete the
//! token; 401 drops the cached access token and retries; 429 and 5xx retry (honouring
//! `Retry-After`); anything else fails without touching the token.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::adapter::{Outcome, PushAdapter, SendFuture};
use crate::config::{check_endpoint, ConfigError, FcmSettings};
use crate::oauth::{AccessTokens, OAuthError};
use crate::payload::Notification;
use crate::retry;

/// The FCM adapter.
pub struct FcmAdapter {
    http: reqwest::Client,
    tokens: AccessTokens,
    send_url: String,
    ttl: Duration,
}

impl FcmAdapter {
    /// Builds the adapter; fails on a bad key or endpoint. `ttl` is how long FCM keeps a
    /// notification for an unreachable device.
    pub fn new(settings: &FcmSettings, ttl: Duration) -> Result<FcmAdapter, ConfigError> {
        check_endpoint(&settings.endpoint)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        let tokens = AccessTokens::new(
            http.clone(),
            &settings.account,
            settings.token_uri.as_deref(),
        )?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            settings.endpoint.trim_end_matches('/'),
            settings.account.project_id
        );
        Ok(FcmAdapter {
            http,
            tokens,
            send_url,
            ttl,
        })
    }

    /// How many OAuth exchanges were made so far.
    pub fn token_exchanges(&self) -> u64 {
        self.tokens.exchanges()
    }

    async fn send_one(&self, token: &str, n: &Notification) -> Outcome {
        let access = match self.tokens.get().await {
            Ok(access) => access,
            Err(OAuthError::Temporary { after, reason }) => {
                return Outcome::Retry {
                    after,
                    reason: format!("OAuth: {reason}"),
                }
            }
            Err(e @ OAuthError::Refused(_)) => {
                return Outcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        let response = match self
            .http
            .post(&self.send_url)
            .bearer_auth(&access)
            .json(&body(token, n, self.ttl))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("FCM request failed: {e}"),
                }
            }
        };
        let status = response.status().as_u16();
        let after = retry::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        if status == 401 {
            self.tokens.invalidate(&access).await;
        }
        classify(status, after, &text)
    }
}

impl PushAdapter for FcmAdapter {
    fn name(&self) -> &'static str {
        "fcm"
    }

    fn send<'a>(&'a self, token: &'a str, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.send_one(token, notification))
    }
}

/// The `messages:send` body: a visible notification (title and body, no text unless previews
/// are on), the same facts as string `data` for the app, and the collapse key for Android and
/// for iOS devices reached through FCM.
pub fn body(token: &str, n: &Notification, ttl: Duration) -> Value {
    let mut data = Map::new();
    data.insert("conversation".into(), n.conversation.clone().into());
    data.insert("id".into(), n.message_id.clone().into());
    data.insert("unread".into(), n.unread.to_string().into());
    if let Some(from) = &n.from {
        data.insert("from".into(), from.clone().into());
    }
    if let Some(group) = &n.group {
        data.insert("group".into(), group.clone().into());
    }
    if let Some(kind) = &n.kind {
        data.insert("kind".into(), kind.clone().into());
    }
    if let Some(text) = &n.preview {
        data.insert("text".into(), text.clone().into());
    }
    json!({
        "message": {
            "token": token,
            "notification": {"title": n.title(), "body": n.body()},
            "data": data,
            "android": {
                "collapse_key": n.collapse_id,
                "priority": "HIGH",
                "ttl": format!("{}s", ttl.as_secs()),
                "notification": {"tag": n.collapse_id},
            },
            "apns": {"headers": {"apns-collapse-id": n.collapse_id}},
        }
    })
}

/// Turns an FCM answer into what the bridge does next.
pub fn classify(status: u16, after: Option<Duration>, text: &str) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Sent;
    }
    let error: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = error.get("error").unwrap_or(&Value::Null);
    let codes = error_codes(error);
    let reason = format!("FCM HTTP {status}: {}", retry::excerpt(text));
    if status == 404 && codes.iter().any(|c| c == "UNREGISTERED") {
        return Outcome::TokenInvalid { reason };
    }
    if status == 400 && codes.iter().any(|c| c == "INVALID_ARGUMENT") && names_token(error) {
        return Outcome::TokenInvalid { reason };
    }
    if status == 401 || retry::retryable(status) {
        return Outcome::Retry { after, reason };
    }
    Outcome::Failed { reason }
}

/// `error.status` and every `details[].errorCode`.
fn error_codes(error: &Value) -> Vec<String> {
    let mut codes = Vec::new();
    if let Some(s) = error.get("status").and_then(Value::as_str) {
        codes.push(s.to_string());
    }
    if let Some(details) = error.get("details").and_then(Value::as_array) {
        for d in details {
            if let Some(c) = d.get("errorCode").and_then(Value::as_str) {
                codes.push(c.to_string());
            }
        }
    }
    codes
}

/// Whether an `INVALID_ARGUMENT` error is about the registration token (a field violation on
/// `message.token`, or a message that says so) rather than about our request.
fn names_token(error: &Value) -> bool {
    let field_is_token = error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("fieldViolations").and_then(Value::as_array))
        .flatten()
        .any(|v| v.get("field").and_then(Value::as_str) == Some("message.token"));
    let message_says_so = error
        .get("message")
        .and_then(Value::as_str)
        .is_some_and(|m| m.to_ascii_lowercase().contains("registration token"));
    field_is_token || message_says_so
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, None, "{}"), Outcome::Sent);
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert!(matches!(
            classify(404, None, unregistered),
            Outcome::TokenInvalid { .. }
        ));
        let bad_token = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
        assert!(matches!(
            classify(400, None, bad_token),
            Outcome::TokenInvalid { .. }
        ));
        let field = r#"{"error":{"code":400,"message":"Invalid value","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"bad"}]}]}}"#;
        assert!(matches!(
            classify(400, None, field),
            Outcome::TokenInvalid { .. }
        ));
        let other = r#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(classify(400, None, other), Outcome::Failed { .. }));
        assert!(matches!(
            classify(404, None, "not json"),
            Outcome::Failed { .. }
        ));
        let after = Some(Duration::from_secs(2));
        assert_eq!(
            match classify(429, after, "{}") {
                Outcome::Retry { after, .. } => after,
                o => panic!("{o:?}"),
            },
            after
        );
        assert!(matches!(classify(503, None, ""), Outcome::Retry { .. }));
        assert!(matches!(classify(401, None, ""), Outcome::Retry { .. }));
        assert!(matches!(classify(403, None, ""), Outcome::Failed { .. }));
    }
}
