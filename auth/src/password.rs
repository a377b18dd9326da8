//! Password rules and argon2id hashing in PHC string form.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;

use crate::error::AuthError;

/// Longest accepted password in bytes, so hashing cost stays bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks a password's length: 1..=1024 bytes.
pub fn validate_password(pw: &str) -> Result<(), AuthError> {
    if pw.is_empty() {
        return Err(AuthError::PasswordEmpty);
    }
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::PasswordTooLong {
            len: pw.len(),
            max: MAX_PASSWORD_LEN,
        });
    }
    Ok(())
}

/// Hashes a valid password with argon2id and a fresh random salt, as a PHC string.
pub fn hash_password(pw: &str) -> Result<String, AuthError> {
    validate_password(pw)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// True when `pw` matches the PHC hash; false on mismatch, bad password or malformed hash.
pub fn verify_password(pw: &str, phc: &str) -> bool {
    if validate_password(pw).is_err() {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(pw.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("", &h));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password("pw").expect("hash");
        let b = hash_password("pw").expect("hash");
        assert_ne!(a, b);
        assert!(verify_password("pw", &a) && verify_password("pw", &b));
    }

    #[test]
    fn malformed_hash_is_false_not_panic() {
        for bad in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!!",
            "$unknown$v=1$abc$def",
            "$$$$",
        ] {
            assert!(!verify_password("pw", bad), "{bad:?}");
        }
    }

    #[test]
    fn password_lengths() {
        assert_eq!(validate_password(""), Err(AuthError::PasswordEmpty));
        assert_eq!(validate_password("x"), Ok(()));
        assert_eq!(validate_password(&"x".repeat(1024)), Ok(()));
        assert_eq!(
            validate_password(&"x".repeat(1025)),
            Err(AuthError::PasswordTooLong {
                len: 1025,
                max: 1024
            })
        );
        assert_eq!(hash_password(""), Err(AuthError::PasswordEmpty));
        assert!(hash_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn too_long_password_never_verifies() {
        let h = hash_password("x").expect("hash");
        assert!(!verify_password(&"x".repeat(1025), &h));
    }
}
