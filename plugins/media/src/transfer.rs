//! The `fs` back end's side of the HTTP listener: a signed `PUT` streams the bytes into a
//! temporary file, hashing as they come and stopping one byte past the declared size; only
//! bytes of exactly the declared size and SHA-256 become the stored content. A signed `GET`
//! opens the stored content. The broker turns [`TransferError::status`] into the response.

use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::error::MediaError;
use super::fs::FsBackend;
use super::record::MediaRecord;
use super::sign::{Access, SignError};
use super::MediaService;
use chatd_core::ports::accounts::RecordError;

/// Why an upload or download on chatd's HTTP listener is refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Forged, changed or expired URL (403).
    #[error("{0}")]
    Forbidden(#[from] SignError),
    /// No such media, no stored bytes, or media bytes are not served here (404).
    #[error("no such media here")]
    NotFound,
    /// More bytes than declared (413); nothing is kept.
    #[error("more than the declared {declared} bytes were sent; nothing was kept")]
    TooLarge {
        /// The declared size.
        declared: u64,
    },
    /// Size or SHA-256 differ from the declaration (422); nothing is kept.
    #[error("the upload does not match its declaration: {0}; nothing was kept")]
    Mismatch(String),
    /// The media's metadata does not allow this upload (409).
    #[error("{0}")]
    Conflict(String),
    /// The server failed (500); details are in the log.
    #[error("the server could not store the upload; retry")]
    Internal,
}

impl TransferError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            TransferError::Forbidden(_) => 403,
            TransferError::NotFound => 404,
            TransferError::TooLarge { .. } => 413,
            TransferError::Mismatch(_) => 422,
            TransferError::Conflict(_) => 409,
            TransferError::Internal => 500,
        }
    }
}

impl From<RecordError> for TransferError {
    fn from(e: RecordError) -> TransferError {
        MediaError::from(e).into()
    }
}

impl From<MediaError> for TransferError {
    fn from(e: MediaError) -> TransferError {
        match e {
            MediaError::BadRequest(m) => TransferError::Conflict(m),
            MediaError::NotFound(_) => TransferError::NotFound,
            other => {
                tracing::error!("media upload/download: {other}");
                TransferError::Internal
            }
        }
    }
}

impl From<std::io::Error> for TransferError {
    fn from(e: std::io::Error) -> TransferError {
        tracing::error!("media upload/download I/O: {e}");
        TransferError::Internal
    }
}

/// A finished (or unnecessary) upload, as the `PUT` response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UploadDone {
    /// The media id.
    pub media: String,
    /// Bytes stored.
    pub size: u64,
    /// Their SHA-256.
    pub sha256: String,
    /// True when the media was already verified, so the sent bytes were not needed.
    pub exists: bool,
}

/// What [`MediaService::begin_upload`] found.
pub enum UploadStart<'a> {
    /// The media is already verified: nothing to receive.
    Stored(UploadDone),
    /// Feed the request body to this upload.
    Receiving(Box<FsUpload<'a>>),
}

/// An upload in progress into a temporary file; dropping it unfinished removes the file.
pub struct FsUpload<'a> {
    service: &'a MediaService,
    fs: &'a FsBackend,
    record: MediaRecord,
    temp: Option<PathBuf>,
    file: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    received: u64,
}

/// An open stored content for a `GET`.
#[derive(Debug)]
pub struct Download {
    /// The file, positioned at the start.
    pub file: tokio::fs::File,
    /// Its size (the `Content-Length`).
    pub size: u64,
    /// The media's MIME type (the `Content-Type`).
    pub mime: String,
}

impl MediaService {
    fn fs(&self) -> Result<&FsBackend, TransferError> {
        self.backend
            .as_any()
            .downcast_ref::<FsBackend>()
            .ok_or(TransferError::NotFound)
    }

    /// Starts a `PUT /media/{media}?expires=…&sig=…` with the query values as received and
    /// the request's `Content-Length`, if any. Checks the signature and expiry first (403),
    /// then the record (404), then whether the media is already verified, then the length.
    /// Content stored for someone else does not spare the upload: the bytes are received and
    /// checked (then dropped in favour of the stored copy), so a media id is only ever
    /// verified by its uploader's own bytes.
    pub async fn begin_upload(
        &self,
        media: &str,
        expires: &str,
        sig: &str,
        content_length: Option<u64>,
    ) -> Result<UploadStart<'_>, TransferError> {
        let fs = self.fs()?;
        fs.check_url(Access::Upload, media, expires, sig)?;
        let Some(record) = self.store.media(media)? else {
            return Err(TransferError::NotFound);
        };
        if record.is_verified() {
            return Ok(UploadStart::Stored(UploadDone {
                media: record.id,
                size: record.size,
                sha256: record.sha256,
                exists: true,
            }));
        }
        match content_length {
            Some(n) if n > record.size => {
                self.reject(media, &format!("{n} bytes were sent, more than declared"))
                    .await?;
                return Err(TransferError::TooLarge {
                    declared: record.size,
                });
            }
            Some(n) if n < record.size => {
                let why = format!("{n} bytes were sent, not the declared {}", record.size);
                self.reject(media, &why).await?;
                return Err(TransferError::Mismatch(why));
            }
            _ => {}
        }
        let (temp, file) = fs.temp_file().await?;
        Ok(UploadStart::Receiving(Box::new(FsUpload {
            service: self,
            fs,
            record,
            temp: Some(temp),
            file: BufWriter::new(file),
            hasher: Sha256::new(),
            received: 0,
        })))
    }

    /// Opens the bytes for a `GET /media/{media}?expires=…&sig=…` (query values as received):
    /// 403 for a bad or expired signature, 404 when there is nothing stored.
    pub async fn open_download(
        &self,
        media: &str,
        expires: &str,
        sig: &str,
    ) -> Result<Download, TransferError> {
        let fs = self.fs()?;
        fs.check_url(Access::Download, media, expires, sig)?;
        let Some(record) = self.store.media(media)? else {
            return Err(TransferError::NotFound);
        };
        let Some(content) = self.store.content(&record.sha256)? else {
            return Err(TransferError::NotFound);
        };
        let file = match fs.open_object(&record.sha256).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    "media {media}: content {} is missing on disk",
                    record.sha256
                );
                return Err(TransferError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Download {
            file,
            size: content.size,
            mime: record.mime,
        })
    }
}

impl FsUpload<'_> {
    /// Takes the next piece of the request body. Refused (and nothing kept) as soon as more
    /// than the declared size has arrived.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), TransferError> {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if self.received > self.record.size {
            self.service
                .reject(&self.record.id, "more bytes were sent than declared")
                .await?;
            return Err(TransferError::TooLarge {
                declared: self.record.size,
            });
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Ends the upload: when size and SHA-256 are as declared the bytes become the stored
    /// content (or are dropped when an identical upload got there first) and the media is
    /// verified; otherwise nothing is kept.
    pub async fn finish(mut self) -> Result<UploadDone, TransferError> {
        let declared = &self.record;
        let mismatch = if self.received != declared.size {
            Some(format!(
                "{} bytes were sent, not the declared {}",
                self.received, declared.size
            ))
        } else {
            let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
            (sha256 != declared.sha256).then(|| {
                format!(
                    "their sha256 is {sha256}, not the declared {}",
                    declared.sha256
                )
            })
        };
        if let Some(why) = mismatch {
            self.service.reject(&self.record.id, &why).await?;
            return Err(TransferError::Mismatch(why));
        }
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        if let Some(temp) = &self.temp {
            self.fs.place(temp, &self.record.sha256).await?;
        }
        self.temp = None;
        let record = self.service.commit(self.record.clone()).await?;
        Ok(UploadDone {
            media: record.id,
            size: record.size,
            sha256: record.sha256,
            exists: false,
        })
    }
}

impl Drop for FsUpload<'_> {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            if let Err(e) = std::fs::remove_file(&temp) {
                tracing::warn!("cannot remove {}: {e}", temp.display());
            }
        }
    }
}
