//! The back-end interface: where media bytes live. `fs` (local disk, served by chatd's own
//! HTTP listener) and `s3` (any S3-compatible store, presigned URLs) implement it, and config
//! picks one; the service above never knows which.

use std::future::Future;
use std::pin::Pin;

use super::record::MediaRecord;

/// A boxed future, as back ends return them (the trait is used as `dyn Backend`).
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// When a URL is issued and how long it lasts, so that every back end and the reply agree on
/// the expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlWindow {
    /// Issue time, Unix seconds.
    pub issued: u64,
    /// Lifetime in seconds.
    pub ttl: u64,
}

impl UrlWindow {
    /// The last second the URL is valid, Unix seconds.
    pub fn expires(&self) -> u64 {
        self.issued.saturating_add(self.ttl)
    }
}

/// What a back end found when asked to verify a pending upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// No uploaded bytes to check (nothing arrived yet; `fs` checks at upload time instead).
    NotUploaded,
    /// The bytes have the declared size and SHA-256 and are now stored as the content.
    Verified,
    /// The bytes differ from the declaration (the reason says how); they were removed.
    Mismatch(String),
}

/// Why a back end operation failed (a server-side problem, not the client's).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Local disk I/O (`fs`).
    #[error("media storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The S3 service refused or could not be reached.
    #[error("S3: {0}")]
    S3(String),
    /// The back end's settings cannot work.
    #[error("media back end settings: {0}")]
    Config(String),
}

/// A store for media bytes.
pub trait Backend: Send + Sync + 'static {
    /// `fs` or `s3`, for logs and health.
    fn name(&self) -> &'static str;

    /// The URL the uploader `PUT`s the bytes of pending `record` to, valid during `window`.
    fn upload_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String>;

    /// The URL that `GET`s the verified bytes of `record`, valid during `window`.
    fn download_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String>;

    /// Checks bytes uploaded for pending `record` against its declared size and SHA-256; on
    /// success they become the stored content (one copy per SHA-256) — or, when `stored` (the
    /// content is already kept, uploaded by someone else), they are only removed —, on a
    /// mismatch they are removed.
    fn verify<'a>(
        &'a self,
        record: &'a MediaRecord,
        stored: bool,
    ) -> BackendFuture<'a, Verification>;

    /// The back end as `Any`, so that the transfer code can reach the local-disk back end
    /// (whose uploads arrive through chatd's HTTP listener) without this trait naming it.
    fn as_any(&self) -> &dyn std::any::Any;
}
