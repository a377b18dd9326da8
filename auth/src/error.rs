//! The error type shared by credential checks (passwords, JWTs, ids).

use crate::ids::IdError;

/// Why a credential could not be created, configured or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A user or device id broke the id rules.
    #[error(transparent)]
    Id(#[from] IdError),
    /// An empty password was given.
    #[error("password is empty")]
    PasswordEmpty,
    /// A password longer than the allowed maximum was given.
    #[error("password is {len} bytes long; at most {max} are allowed")]
    PasswordTooLong {
        /// Length of the rejected password in bytes.
        len: usize,
        /// The maximum allowed length in bytes.
        max: usize,
    },
    /// The argon2 hasher itself failed (not a wrong password).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A JWT key given in the configuration is unusable.
    #[error("invalid JWT key: {0}")]
    Key(String),
    /// A token was refused; the text names the check that failed.
    #[error("JWT rejected: {0}")]
    Jwt(&'static str),
}
