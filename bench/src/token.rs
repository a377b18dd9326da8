//! HS256 login tokens minted by the benchmark itself, as chatd accepts them for a password
//! (`[auth] jwt_hs256_secret`): claims `sub` (the user id) and `exp`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;

/// Lifetime of a minted token: long enough for any run, storm included.
const TOKEN_LIFETIME_SECS: u64 = 6 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// Signs tokens with one shared secret.
pub struct Minter {
    key: EncodingKey,
    exp: u64,
}

impl Minter {
    /// A minter for `secret`; every token it makes expires six hours from now.
    pub fn new(secret: &str) -> Result<Self> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_secs();
        Ok(Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            exp: now + TOKEN_LIFETIME_SECS,
        })
    }

    /// A token whose `sub` is `user`.
    pub fn token(&self, user: &str) -> Result<String> {
        encode(
            &Header::default(),
            &Claims {
                sub: user,
                exp: self.exp,
            },
            &self.key,
        )
        .with_context(|| format!("signing a token for {user}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn tokens_carry_sub_and_exp_and_verify_with_the_secret() -> Result<()> {
        let token = Minter::new("a-secret-of-enough-bytes")?.token("u7")?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"a-secret-of-enough-bytes"),
            &validation,
        )?;
        assert_eq!(data.claims["sub"], "u7");
        Ok(())
    }
}
