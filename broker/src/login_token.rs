//! Login tokens: what `POST /auth/token` hands a web page for a user name and password, so
//! that the page never keeps the password. A token is a JWT (HS256) signed with chatd's own
//! key (`auth.login_token_secret`, or `login.key` generated in the data directory), with
//! `kid` = [`KEY_ID`], `sub` = the user and `exp`; it is accepted as the MQTT password of that
//! user on every listener until it expires. Apart from the operator's JWTs (`[auth] jwt_*`):
//! those may create accounts, a login token never does — its account must still exist.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `kid` of chatd's login tokens: how they are told from the operator's JWTs.
pub const KEY_ID: &str = "chatd-login";

/// Issues and checks login tokens.
pub struct LoginTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
}

/// A token just issued.
#[derive(Debug)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// When it expires, ms since the epoch.
    pub expires_ms: u64,
}

impl LoginTokens {
    /// Tokens signed with `secret`, valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> LoginTokens {
        LoginTokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `user`, valid from now for the configured time.
    pub fn issue(&self, user: &str) -> Result<Issued, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let expires = now + self.ttl;
        let claims = Claims {
            sub: user.to_string(),
            exp: expires.as_secs(),
            iat: now.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KEY_ID.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok(Issued {
            token,
            expires_ms: expires.as_secs() * 1000,
        })
    }

    /// Whether `password` is one of chatd's login tokens (by its header; nothing is checked
    /// yet). Cheap: a password that is not is told apart without any signature work.
    pub fn is_login_token(password: &str) -> bool {
        chatd_auth::looks_like_jwt(password)
            && jsonwebtoken::decode_header(password)
                .is_ok_and(|h| h.kid.as_deref() == Some(KEY_ID) && h.alg == Algorithm::HS256)
    }

    /// Whether `token` is a valid, unexpired login token of `user`.
    pub fn verify(&self, token: &str, user: &str) -> bool {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.sub = Some(user.to_string());
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_users_only_and_only_with_its_key() {
        let tokens = LoginTokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let issued = tokens.issue("alice").unwrap();
        assert!(LoginTokens::is_login_token(&issued.token));
        assert!(tokens.verify(&issued.token, "alice"));
        assert!(!tokens.verify(&issued.token, "bob"));
        let other = LoginTokens::new(
            b"another key, as long as the first!",
            Duration::from_secs(60),
        );
        assert!(!other.verify(&issued.token, "alice"));
        assert!(!LoginTokens::is_login_token("my.pass.word"));
        assert!(!LoginTokens::is_login_token("correct horse battery staple"));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let tokens = LoginTokens::new(b"0123456789abcdef0123456789abcdef", Duration::ZERO);
        let issued = tokens.issue("alice").unwrap();
        // Expired now, with no leeway: wait for the second to pass.
        std::thread::sleep(Duration::from_millis(1100));
        assert!(!tokens.verify(&issued.token, "alice"));
    }
}
