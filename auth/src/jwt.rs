//! JWT login tokens: HS256 and/or RS256, `exp` and `sub` required.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::error::AuthError;

/// Checks login tokens against the keys from the configuration.
#[derive(Clone)]
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
}

impl fmt::Debug for JwtVerifier {
    // Shows which algorithms are on without printing key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier; each key is optional and enables its algorithm.
    pub fn new(
        hs256_secret: Option<&[u8]>,
        rs256_public_pem: Option<&[u8]>,
    ) -> Result<JwtVerifier, AuthError> {
        let hs256 = match hs256_secret {
            Some([]) => return Err(AuthError::Key("HS256 secret is empty".into())),
            Some(secret) => Some(DecodingKey::from_secret(secret)),
            None => None,
        };
        let rs256 = match rs256_public_pem {
            Some(pem) => Some(rsa_public_key(pem)?),
            None => None,
        };
        Ok(JwtVerifier { hs256, rs256 })
    }

    /// True when at least one algorithm has a key, i.e. tokens can be accepted at all.
    pub fn is_enabled(&self) -> bool {
        self.hs256.is_some() || self.rs256.is_some()
    }

    /// Accepts `token` only if it is validly signed, unexpired and its `sub` is `expected_user`.
    pub fn verify(&self, token: &str, expected_user: &str) -> Result<(), AuthError> {
        if !self.is_enabled() {
            return Err(AuthError::Jwt("JWT login is not configured"));
        }
        let (alg, key) = match header_alg(token)?.as_str() {
            "HS256" => (Algorithm::HS256, &self.hs256),
            "RS256" => (Algorithm::RS256, &self.rs256),
            other if other.eq_ignore_ascii_case("none") => {
                return Err(AuthError::Jwt("algorithm none is not accepted"))
            }
            _ => return Err(AuthError::Jwt("algorithm is not accepted")),
        };
        let Some(key) = key else {
            return Err(AuthError::Jwt(match alg {
                Algorithm::HS256 => "HS256 is not configured",
                _ => "RS256 is not configured",
            }));
        };

        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.sub = Some(expected_user.to_string());

        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map(|_| ())
            .map_err(|e| AuthError::Jwt(describe(e.kind())))
    }
}

/// Loads an RSA public key, refusing private keys and malformed PEM.
fn rsa_public_key(pem: &[u8]) -> Result<DecodingKey, AuthError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| AuthError::Key("RS256 public key is not PEM text".into()))?;
    if text.contains("PRIVATE KEY") {
        return Err(AuthError::Key(
            "RS256 key must be a public key, not a private key".into(),
        ));
    }
    DecodingKey::from_rsa_pem(pem)
        .map_err(|e| AuthError::Key(format!("RS256 public key is unusable: {e}")))
}

/// Reads the `alg` field of the token header without trusting anything else.
fn header_alg(token: &str) -> Result<String, AuthError> {
    const MALFORMED: AuthError = AuthError::Jwt("malformed token");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| MALFORMED)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| MALFORMED)?;
    match value.get("alg") {
        Some(serde_json::Value::String(alg)) => Ok(alg.clone()),
        _ => Err(AuthError::Jwt("token header has no alg")),
    }
}

/// Names the check that failed, for the error text.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf is in the future)",
        ErrorKind::InvalidSubject => "subject does not match user",
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            "exp claim is missing or not a number"
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => {
            "sub claim is missing or not a string"
        }
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key",
        ErrorKind::Crypto(_) => "signature check failed",
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token",
        _ => "token rejected",
    }
}

/// True for `xxx.yyy.zzz` with three non-empty base64url segments, so it is tried as a JWT.
pub fn looks_like_jwt(s: &str) -> bool {
    let is_b64url = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_b64url(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret-0123456789";
    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/data/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../tests/data/rsa_public.pem");
    const RSA_OTHER_PRIVATE: &[u8] = include_bytes!("../tests/data/rsa_other_private.pem");

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign hs256")
    }

    fn rs_with(private: &[u8], claims: serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(private).expect("private pem");
        encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign rs256")
    }

    fn rs(claims: serde_json::Value) -> String {
        rs_with(RSA_PRIVATE, claims)
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn valid_claims(sub: &str) -> serde_json::Value {
        json!({"sub": sub, "exp": now() + 600})
    }

    fn both() -> JwtVerifier {
        JwtVerifier::new(Some(SECRET), Some(RSA_PUBLIC)).expect("verifier")
    }

    fn err(v: &JwtVerifier, token: &str, user: &str) -> AuthError {
        v.verify(token, user).expect_err("token must be refused")
    }

    #[test]
    fn valid_hs256() {
        let v = JwtVerifier::new(Some(SECRET), None).expect("verifier");
        assert_eq!(v.verify(&hs(valid_claims("alice")), "alice"), Ok(()));
    }

    #[test]
    fn valid_rs256() {
        let v = JwtVerifier::new(None, Some(RSA_PUBLIC)).expect("verifier");
        assert_eq!(v.verify(&rs(valid_claims("alice")), "alice"), Ok(()));
    }

    #[test]
    fn both_algorithms_when_both_configured() {
        let v = both();
        assert_eq!(v.verify(&hs(valid_claims("bob")), "bob"), Ok(()));
        assert_eq!(v.verify(&rs(valid_claims("bob")), "bob"), Ok(()));
    }

    #[test]
    fn extra_claims_and_past_nbf_are_fine() {
        let t = hs(json!({"sub":"alice","exp":now()+60,"nbf":now()-60,"aud":"x","iss":"y"}));
        assert_eq!(both().verify(&t, "alice"), Ok(()));
    }

    #[test]
    fn expired() {
        let t = hs(json!({"sub":"alice","exp":now()-10}));
        assert_eq!(err(&both(), &t, "alice"), AuthError::Jwt("token expired"));
        let t = rs(json!({"sub":"alice","exp":now()-10}));
        assert_eq!(err(&both(), &t, "alice"), AuthError::Jwt("token expired"));
    }

    #[test]
    fn nbf_in_future() {
        let t = hs(json!({"sub":"alice","exp":now()+600,"nbf":now()+300}));
        assert_eq!(
            err(&both(), &t, "alice"),
            AuthError::Jwt("token not yet valid (nbf is in the future)")
        );
    }

    #[test]
    fn wrong_sub() {
        let v = both();
        for t in [hs(valid_claims("bob")), rs(valid_claims("bob"))] {
            assert_eq!(
                err(&v, &t, "alice"),
                AuthError::Jwt("subject does not match user")
            );
        }
        // Case matters: user ids are exact.
        let t = hs(valid_claims("Alice"));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("subject does not match user")
        );
    }

    #[test]
    fn missing_claims() {
        let v = both();
        let t = hs(json!({"sub":"alice"}));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("exp claim is missing or not a number")
        );
        let t = hs(json!({"sub":"alice","exp":"tomorrow"}));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("exp claim is missing or not a number")
        );
        let t = hs(json!({"exp":now()+600}));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("sub claim is missing or not a string")
        );
    }

    #[test]
    fn alg_none_refused() {
        let v = both();
        let payload = b64(&valid_claims("alice"));
        for alg in ["none", "None", "NONE"] {
            let header = b64(&json!({"alg": alg, "typ": "JWT"}));
            let t = format!("{header}.{payload}.");
            assert_eq!(
                err(&v, &t, "alice"),
                AuthError::Jwt("algorithm none is not accepted"),
                "{alg}"
            );
            // A signature-less token is not even routed to JWT checking.
            assert!(!looks_like_jwt(&t));
        }
    }

    #[test]
    fn other_algorithms_refused() {
        let v = both();
        let payload = b64(&valid_claims("alice"));
        for alg in ["HS512", "RS512", "ES256", "PS256", "hs256", ""] {
            let header = b64(&json!({"alg": alg}));
            let t = format!("{header}.{payload}.c2ln");
            assert_eq!(
                err(&v, &t, "alice"),
                AuthError::Jwt("algorithm is not accepted"),
                "{alg}"
            );
        }
        let header = b64(&json!({"typ": "JWT"}));
        let t = format!("{header}.{payload}.c2ln");
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("token header has no alg")
        );
    }

    #[test]
    fn hs256_when_only_rs256_configured() {
        let v = JwtVerifier::new(None, Some(RSA_PUBLIC)).expect("verifier");
        let t = hs(valid_claims("alice"));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("HS256 is not configured")
        );
        // Classic key confusion: HMAC keyed with the public PEM.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &valid_claims("alice"),
            &EncodingKey::from_secret(RSA_PUBLIC),
        )
        .expect("sign");
        assert_eq!(
            err(&v, &forged, "alice"),
            AuthError::Jwt("HS256 is not configured")
        );
    }

    #[test]
    fn rs256_when_only_hs256_configured() {
        let v = JwtVerifier::new(Some(SECRET), None).expect("verifier");
        let t = rs(valid_claims("alice"));
        assert_eq!(
            err(&v, &t, "alice"),
            AuthError::Jwt("RS256 is not configured")
        );
    }

    #[test]
    fn tampered_signature() {
        let v = both();
        for t in [hs(valid_claims("alice")), rs(valid_claims("alice"))] {
            let (rest, sig) = t.rsplit_once('.').expect("three parts");
            let mut sig: Vec<u8> = sig.bytes().collect();
            sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
            let bad = format!("{rest}.{}", String::from_utf8(sig).expect("ascii"));
            assert_eq!(err(&v, &bad, "alice"), AuthError::Jwt("bad signature"));
        }
    }

    #[test]
    fn tampered_payload() {
        let v = both();
        let t = hs(valid_claims("bob"));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(&valid_claims("alice")), parts[2]);
        assert_eq!(err(&v, &forged, "alice"), AuthError::Jwt("bad signature"));
    }

    #[test]
    fn wrong_secret_or_key() {
        let v = both();
        let t = encode(
            &Header::new(Algorithm::HS256),
            &valid_claims("alice"),
            &EncodingKey::from_secret(b"another secret"),
        )
        .expect("sign");
        assert_eq!(err(&v, &t, "alice"), AuthError::Jwt("bad signature"));
        let t = rs_with(RSA_OTHER_PRIVATE, valid_claims("alice"));
        assert_eq!(err(&v, &t, "alice"), AuthError::Jwt("bad signature"));
    }

    #[test]
    fn malformed_tokens() {
        let v = both();
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            "e30.e30.e30",
            "bm90anNvbg.e30.c2ln",
        ] {
            let e = err(&v, t, "alice");
            assert!(matches!(e, AuthError::Jwt(_)), "{t:?} gave {e:?}");
        }
        assert_eq!(err(&v, "a.b", "alice"), AuthError::Jwt("malformed token"));
        assert_eq!(
            err(&v, "bm90anNvbg.e30.c2ln", "alice"),
            AuthError::Jwt("malformed token")
        );
    }

    #[test]
    fn nothing_configured() {
        let v = JwtVerifier::new(None, None).expect("verifier");
        assert!(!v.is_enabled());
        assert_eq!(
            err(&v, &hs(valid_claims("alice")), "alice"),
            AuthError::Jwt("JWT login is not configured")
        );
        assert!(JwtVerifier::new(Some(SECRET), None)
            .expect("v")
            .is_enabled());
        assert!(JwtVerifier::new(None, Some(RSA_PUBLIC))
            .expect("v")
            .is_enabled());
    }

    #[test]
    fn bad_keys_refused() {
        assert!(matches!(
            JwtVerifier::new(None, Some(b"not a pem")),
            Err(AuthError::Key(_))
        ));
        assert!(matches!(
            JwtVerifier::new(
                None,
                Some(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            ),
            Err(AuthError::Key(_))
        ));
        assert!(matches!(
            JwtVerifier::new(None, Some(RSA_PRIVATE)),
            Err(AuthError::Key(_))
        ));
        assert!(matches!(
            JwtVerifier::new(None, Some(&[0xff, 0xfe])),
            Err(AuthError::Key(_))
        ));
        assert!(matches!(
            JwtVerifier::new(Some(b""), None),
            Err(AuthError::Key(_))
        ));
    }

    #[test]
    fn debug_hides_keys() {
        let s = format!("{:?}", both());
        assert_eq!(s, "JwtVerifier { hs256: true, rs256: true }");
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(&hs(valid_claims("alice"))));
        assert!(looks_like_jwt(&rs(valid_claims("alice"))));
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a-_9.B.c"));
        for s in [
            "",
            "hunter2",
            "a.b",
            "a.b.c.d",
            "a..c",
            ".b.c",
            "a.b.",
            "a.b.c=",
            "a b.c.d",
            "my.pass.word!",
            "a+b.c.d",
            "a/b.c.d",
        ] {
            assert!(!looks_like_jwt(s), "{s:?}");
        }
    }
}
