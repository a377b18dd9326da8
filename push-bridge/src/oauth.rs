//! OAuth2 access tokens for FCM from a service account (Google's "two-legged" flow): an RS256
//! JWT assertion (`iss` = the account, `scope` = firebase.messaging, `aud` = `token_uri`,
//! `iat`, `exp` one hour later) posted to `token_uri` as
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…`.
//!
//! The token is cached until shortly before it expires. The cache lock is held during an
//! exchange, so a burst of sends makes one exchange, not one each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{ConfigError, ServiceAccount};
use crate::retry;

/// The scope FCM HTTP v1 needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The assertion's lifetime (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A token is replaced this long before it expires (or at half its life if that is sooner).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Worth trying again later (network, 429, 5xx).
    #[error("token exchange failed, will retry: {reason}")]
    Temporary {
        /// The server's `Retry-After`, if any.
        after: Option<Duration>,
        /// What happened.
        reason: String,
    },
    /// The account or key was refused; retrying will not help.
    #[error("token exchange refused: {0}")]
    Refused(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Access tokens for one service account.
pub struct AccessTokens {
    http: reqwest::Client,
    email: String,
    key: EncodingKey,
    key_id: Option<String>,
    token_uri: String,
    cached: Mutex<Option<Cached>>,
    exchanges: AtomicU64,
}

impl AccessTokens {
    /// Prepares exchanges for `account` at `token_uri` (the account's own unless overridden);
    /// fails when the private key is not an RSA PEM.
    pub fn new(
        http: reqwest::Client,
        account: &ServiceAccount,
        token_uri: Option<&str>,
    ) -> Result<AccessTokens, ConfigError> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| ConfigError::Key(format!("service account private_key: {e}")))?;
        let token_uri = token_uri.unwrap_or(&account.token_uri).to_string();
        crate::config::check_endpoint(&token_uri)?;
        Ok(AccessTokens {
            http,
            email: account.client_email.clone(),
            key,
            key_id: account.private_key_id.clone(),
            token_uri,
            cached: Mutex::new(None),
            exchanges: AtomicU64::new(0),
        })
    }

    /// A valid access token: the cached one, or a fresh one from an exchange.
    pub async fn get(&self) -> Result<String, OAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let (token, lifetime) = self.exchange().await?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Forgets `token` if it is still the cached one (the API answered 401 with it).
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    /// How many exchanges were made (each one is a request to `token_uri`).
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    async fn exchange(&self) -> Result<(String, Duration), OAuthError> {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.email,
            scope: FCM_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| OAuthError::Refused(format!("cannot sign the assertion: {e}")))?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| OAuthError::Temporary {
                after: None,
                reason: format!("{}: {e}", self.token_uri),
            })?;
        let status = response.status().as_u16();
        let after = retry::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        if retry::retryable(status) {
            return Err(OAuthError::Temporary {
                after,
                reason: format!("HTTP {status}: {}", retry::excerpt(&text)),
            });
        }
        if !(200..300).contains(&status) {
            return Err(OAuthError::Refused(format!(
                "HTTP {status}: {}",
                retry::excerpt(&text)
            )));
        }
        let parsed: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            OAuthError::Refused(format!(
                "unreadable token response ({e}): {}",
                retry::excerpt(&text)
            ))
        })?;
        if parsed.access_token.is_empty() {
            return Err(OAuthError::Refused("empty access_token".into()));
        }
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600).max(1));
        Ok((parsed.access_token, lifetime))
    }
}

/// `application/x-www-form-urlencoded` value encoding (JWTs only need a few characters
/// escaped, but every byte outside the unreserved set is).
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a.b-c_d~"), "a.b-c_d~");
        assert_eq!(form_encode("urn:x y/+"), "urn%3Ax%20y%2F%2B");
    }
}
