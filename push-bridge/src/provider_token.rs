//! The APNs provider authentication token: an ES256 JWT with header `{"alg":"ES256","kid":…}`
//! and claims `{"iss": team id, "iat": now}`, signed with the `.p8` key.
//!
//! Apple refuses a token older than an hour and one replaced more often than every 20
//! minutes, so one token is reused by every request and replaced after [`REFRESH_AFTER`]
//! (40 minutes), or earlier only when APNs says it expired.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::ConfigError;

/// Age after which the token is replaced (Apple: between 20 and 60 minutes).
pub const REFRESH_AFTER: Duration = Duration::from_secs(40 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// Signs and caches provider tokens.
pub struct ProviderToken {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    refresh_after: Duration,
    current: Mutex<Option<(String, Instant)>>,
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the APNs provider token: {0}")]
pub struct SignError(String);

impl ProviderToken {
    /// Reads the `.p8` key (PKCS#8 PEM, P-256); fails when it is not one.
    pub fn new(key_pem: &[u8], key_id: &str, team_id: &str) -> Result<ProviderToken, ConfigError> {
        let key = EncodingKey::from_ec_pem(key_pem)
            .map_err(|e| ConfigError::Key(format!("not a PKCS#8 PEM P-256 key (.p8): {e}")))?;
        let token = ProviderToken {
            key,
            key_id: key_id.to_string(),
            team_id: team_id.to_string(),
            refresh_after: REFRESH_AFTER,
            current: Mutex::new(None),
        };
        // A key that parses but cannot sign ES256 (another curve) is caught here, at start.
        token
            .sign()
            .map_err(|e| ConfigError::Key(format!("the key cannot sign ES256: {e}")))?;
        Ok(token)
    }

    /// The token to send now: the current one while it is younger than the refresh age.
    pub fn get(&self) -> Result<String, SignError> {
        self.get_at(Instant::now())
    }

    /// [`ProviderToken::get`] at a given instant (for tests of the refresh rule).
    pub fn get_at(&self, now: Instant) -> Result<String, SignError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, made)) = current.as_ref() {
            if now.saturating_duration_since(*made) < self.refresh_after {
                return Ok(token.clone());
            }
        }
        let token = self.sign()?;
        *current = Some((token.clone(), now));
        Ok(token)
    }

    /// Drops `token` if it is the current one (APNs answered `ExpiredProviderToken`).
    pub fn expire(&self, token: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(t, _)| t == token) {
            *current = None;
        }
    }

    fn sign(&self) -> Result<String, SignError> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| SignError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    }

    #[test]
    fn reused_then_refreshed() {
        let t = ProviderToken::new(key().as_bytes(), "KEY1234567", "TEAM123456").unwrap();
        let start = Instant::now();
        let a = t.get_at(start).unwrap();
        assert_eq!(a, t.get_at(start + Duration::from_secs(39 * 60)).unwrap());
        // Signed again after 40 minutes (a new signature even within the same second).
        let b = t.get_at(start + Duration::from_secs(41 * 60)).unwrap();
        assert_ne!(a, b);
        t.expire(&b);
        assert_ne!(b, t.get_at(start + Duration::from_secs(42 * 60)).unwrap());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(ProviderToken::new(b"not a key", "K", "T").is_err());
        let rsa = include_str!("../tests/data/rsa_private.pem");
        assert!(ProviderToken::new(rsa.as_bytes(), "K", "T").is_err());
    }
}
