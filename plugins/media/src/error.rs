//! The media service's typed errors, and how each becomes the `error` a client sees.

use chatd_core::ports::accounts::RecordError;
use chatd_wire::reply::{ErrorCode, Failure};

use super::backend::BackendError;
use super::limits::LimitError;

/// Why a media request or check failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The request is malformed or names media that cannot be used this way.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not have this media.
    #[error("{0}")]
    Forbidden(String),
    /// The media does not exist (or has no stored bytes).
    #[error("{0}")]
    NotFound(String),
    /// The declared size is over the limit of its kind.
    #[error("{0}")]
    TooLarge(String),
    /// The store failed.
    #[error("media metadata store: {0}")]
    Store(RecordError),
    /// The back end (disk or S3) failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The service's settings cannot work.
    #[error("media settings: {0}")]
    Settings(String),
    /// A stored record could not be read back.
    #[error("corrupt media metadata under {key}: {why}")]
    Corrupt {
        /// The store key.
        key: String,
        /// The decoding error.
        why: String,
    },
}

impl From<RecordError> for MediaError {
    /// A record that cannot be read back is [`MediaError::Corrupt`]; any other failure is the
    /// store's.
    fn from(e: RecordError) -> MediaError {
        match e {
            RecordError::Corrupt { key, why } => MediaError::Corrupt { key, why },
            other => MediaError::Store(other),
        }
    }
}

impl From<LimitError> for MediaError {
    fn from(e: LimitError) -> MediaError {
        match e {
            LimitError::TooLarge { .. } => MediaError::TooLarge(e.to_string()),
            other => MediaError::BadRequest(other.to_string()),
        }
    }
}

impl MediaError {
    /// The contract error for this failure. Server-side failures are logged here and reach
    /// the client as `internal` without their details.
    pub fn failure(&self) -> Failure {
        match self {
            MediaError::BadRequest(m) => Failure::bad(m.clone()),
            MediaError::Forbidden(m) => Failure::new(ErrorCode::Forbidden, m.clone()),
            MediaError::NotFound(m) => Failure::new(ErrorCode::NotFound, m.clone()),
            MediaError::TooLarge(m) => Failure::new(ErrorCode::TooLarge, m.clone()),
            other => {
                tracing::error!("media service: {other}");
                Failure::internal("the media service failed; retry later")
            }
        }
    }
}
