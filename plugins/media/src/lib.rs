//! The media service: a user shares a photo by asking for an upload URL (`media.upload`),
//! uploading straight to storage — never through the MQTT connection —, sending a message that
//! references the media, and the recipients fetch it with a download URL (`media.download`)
//! that nobody else can get.
//!
//! * Content is addressed by SHA-256 and stored once. De-duplication never grants access:
//!   `media.upload` answers `exists: true` only for content that is already the asker's (they
//!   uploaded it, or a message gave them a media id of it); anyone else must send the bytes,
//!   which are checked and then dropped in favour of the stored copy. Refusals depend only on
//!   the declaration and the limits, never on what is stored.
//! * Bytes are verified (size and SHA-256) before any message may reference them: at upload
//!   time by the `fs` back end, on first reference by the `s3` back end.
//! * Metadata lives behind the [`MediaRecords`] port (see [`record`]), the bytes in a
//!   [`Backend`] chosen by config ([`fs::FsBackend`], [`s3::S3Backend`]).
//! * Download rights are the grants the messaging committer writes for the sender and every
//!   recipient of a message that references the media ([`MediaRecords::may_download`]), and,
//!   for a user's current avatar, whoever sees that user's profile (asked through
//!   [`chatd_core::avatar_access::AvatarAccess`], set with [`MediaService::set_avatar_access`]).
//!
//! The broker answers `media.*` requests with [`MediaService::answer`], installs the service as
//! messaging's [`MediaGate`], and serves the `fs` back end's URLs with
//! [`MediaService::begin_upload`] and [`MediaService::open_download`].

mod avatars;
mod backend;
pub mod config;
mod error;
pub mod fs;
pub mod limits;
pub mod meta;
pub mod record;
mod rpc;
pub mod s3;
pub mod serving;
pub mod sign;
mod transfer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use backend::{Backend, BackendError, BackendFuture, UrlWindow, Verification};
pub use error::MediaError;
pub use limits::{LimitError, Limits, MediaKind, TypeLimit};
pub use meta::MediaMeta;
pub use transfer::{Download, FsUpload, TransferError, UploadDone, UploadStart};

use chatd_core::media_gate::{GateFuture, MediaGate};
use chatd_core::ports::accounts::RecordError;
use record::{ContentRecord, MediaChange, MediaRecord, MediaRecords};

/// Longest URL lifetime: S3 presigned URLs cannot last longer than 7 days.
pub const MAX_URL_TTL_SECS: u64 = 7 * 24 * 3600;

/// Media ids of one content looked at when deciding whether a message gave the asker access
/// to it. Past this many, the asker is treated as not having access and uploads the bytes
/// (which they hold): never a wrong `exists`, at worst an unneeded upload.
const MAX_ACCESS_CHECKS: usize = 256;

/// Settings of the service that do not depend on the back end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    /// Lifetime of upload and download URLs, in seconds (1 to [`MAX_URL_TTL_SECS`]).
    pub url_ttl_secs: u64,
    /// Size and MIME type limits per kind.
    pub limits: Limits,
}

impl Default for MediaSettings {
    fn default() -> MediaSettings {
        MediaSettings {
            url_ttl_secs: 900,
            limits: Limits::default(),
        }
    }
}

/// The result of `media.upload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UploadGrant {
    /// The media id to reference in a message (the asker's own).
    pub media: String,
    /// True when the content is already stored and verified: no upload needed.
    pub exists: bool,
    /// Where to `PUT` the bytes (absent when `exists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// When `upload_url` stops working, Unix milliseconds (absent when `exists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// The result of `media.download`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownloadGrant {
    /// The media id asked for.
    pub media: String,
    /// Where to `GET` the bytes.
    pub url: String,
    /// When `url` stops working, Unix milliseconds.
    pub expires: u64,
    /// MIME type (the download's `Content-Type`).
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex, for the client to check.
    pub sha256: String,
    /// What the uploader declared about it (file name, pixel size, duration, preview): only
    /// the fields given, after the others.
    #[serde(flatten)]
    pub meta: MediaMeta,
}

/// Where a pending record stands after [`MediaService::settle`].
enum Settled {
    /// Its bytes are verified (boxed: a record with metadata is large).
    Verified(Box<MediaRecord>),
    /// Not (yet) usable, and why, for the sender.
    Pending(String),
}

/// The media service, shared as `Arc<MediaService>` by sessions, the HTTP listener and
/// messaging (as its [`MediaGate`]).
pub struct MediaService {
    store: Arc<dyn MediaRecords>,
    backend: Box<dyn Backend>,
    settings: MediaSettings,
    /// Serialises read-modify-write of media metadata (records, content index).
    meta: tokio::sync::Mutex<()>,
    /// Who may download a media id as someone's avatar (see `avatars.rs`); unset: nobody.
    avatars: std::sync::OnceLock<Arc<dyn chatd_core::avatar_access::AvatarAccess>>,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService")
            .field("backend", &self.backend.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refuses a declaration that contradicts the asker's own verified record of the same content
/// (they hold it, so telling them its size and MIME type reveals nothing).
fn same_declaration(own: &MediaRecord, size: u64, mime: &str) -> Result<(), MediaError> {
    if own.size != size {
        return Err(MediaError::BadRequest(format!(
            "you already have this content as media `{}` with {} bytes, not {size}: check `size` \
             and `sha256`",
            own.id, own.size
        )));
    }
    if own.mime != mime {
        return Err(MediaError::BadRequest(format!(
            "you already have this content as media `{}` of type `{}`; ask again with that MIME \
             type",
            own.id, own.mime
        )));
    }
    Ok(())
}

impl MediaService {
    /// A service keeping metadata in `store` and bytes in `backend`.
    pub fn new(
        store: Arc<dyn MediaRecords>,
        backend: Box<dyn Backend>,
        settings: MediaSettings,
    ) -> Result<MediaService, MediaError> {
        if !(1..=MAX_URL_TTL_SECS).contains(&settings.url_ttl_secs) {
            return Err(MediaError::Settings(format!(
                "the URL lifetime must be 1 to {MAX_URL_TTL_SECS} seconds, not {}",
                settings.url_ttl_secs
            )));
        }
        settings
            .limits
            .validate()
            .map_err(|e| MediaError::Settings(e.to_string()))?;
        Ok(MediaService {
            store,
            backend,
            settings,
            meta: tokio::sync::Mutex::new(()),
            avatars: std::sync::OnceLock::new(),
        })
    }

    /// `fs` or `s3`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The limits uploads are checked against.
    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    fn window(&self) -> UrlWindow {
        UrlWindow {
            issued: unix_secs(),
            ttl: self.settings.url_ttl_secs,
        }
    }

    /// `media.upload`: `user` wants to share `size` bytes of `mime` (lowercase) with this
    /// SHA-256 (lowercase hex). Checks the limits, then answers with the user's media id for
    /// that content and either `exists: true` — only when the content is already the user's:
    /// their own verified upload, or a message gave them a media id of it — or an upload URL.
    /// Content stored by others but not the user's is treated exactly like new content, so
    /// the answer (and any refusal) never tells whether it is stored. Asking again for content
    /// still pending gives the same id and a fresh URL. Declares no metadata (see
    /// [`MediaService::upload_with_meta`]).
    pub async fn upload(
        &self,
        user: &str,
        mime: &str,
        size: u64,
        sha256: &str,
    ) -> Result<UploadGrant, MediaError> {
        self.upload_with_meta(user, mime, size, sha256, MediaMeta::default())
            .await
    }

    /// [`MediaService::upload`] declaring `meta` (checked with [`meta::check`]). Metadata
    /// belongs to the media id: when `meta` has any field it replaces the id's metadata whole,
    /// also for content the user already has (`exists`); without any, what the id carries stays,
    /// so a client that knows nothing of metadata does not erase another device's.
    pub async fn upload_with_meta(
        &self,
        user: &str,
        mime: &str,
        size: u64,
        sha256: &str,
        meta: MediaMeta,
    ) -> Result<UploadGrant, MediaError> {
        meta::check(&meta).map_err(MediaError::BadRequest)?;
        if !record::valid_sha256(sha256) {
            return Err(MediaError::BadRequest(
                "`sha256` must be 64 hex digits".into(),
            ));
        }
        self.settings.limits.check_upload(mime, size)?;

        let guard = self.meta.lock().await;
        let own = match self.store.owner_media(sha256, user)? {
            Some(id) => self.store.media(&id)?,
            None => None,
        };
        if let Some(own) = own.as_ref().filter(|r| r.is_verified()) {
            same_declaration(own, size, mime)?;
            if !meta.is_empty() && own.meta != meta {
                let mut own = own.clone();
                own.meta = meta;
                self.store.write(vec![MediaChange::Media(own)])?;
            }
            return Ok(UploadGrant {
                media: own.id.clone(),
                exists: true,
                upload_url: None,
                expires: None,
            });
        }
        let granted = self.granted(user, sha256)?;
        let now = now_ms();
        let mut record = own.unwrap_or_else(|| MediaRecord::pending(user, sha256, size, mime, now));
        // A pending declaration may be corrected by asking again.
        record.size = size;
        record.mime = mime.to_string();
        record.rejected = None;
        if !meta.is_empty() {
            record.meta = meta;
        }
        match &granted {
            Some(received) => {
                // The user holds this content through a message: they may be told its size.
                if received.size != size {
                    return Err(MediaError::BadRequest(format!(
                        "media `{}` you received has this sha256 and {} bytes, not {size}: \
                         check `size` and `sha256`",
                        received.id, received.size
                    )));
                }
                record.mark_verified(now);
            }
            None => {
                record.state = record::MediaState::Pending;
                record.verified = None;
            }
        }
        self.store.write(vec![
            MediaChange::Media(record.clone()),
            MediaChange::Owner {
                sha256: sha256.to_string(),
                user: user.to_string(),
                media: record.id.clone(),
            },
        ])?;
        drop(guard);

        if granted.is_some() {
            return Ok(UploadGrant {
                media: record.id,
                exists: true,
                upload_url: None,
                expires: None,
            });
        }
        let window = self.window();
        let url = self.backend.upload_url(&record, window).await?;
        Ok(UploadGrant {
            media: record.id,
            exists: false,
            upload_url: Some(url),
            expires: Some(window.expires().saturating_mul(1000)),
        })
    }

    /// A verified media record of this content that a message gave `user` the right to
    /// download, looking at up to [`MAX_ACCESS_CHECKS`] media ids of it.
    fn granted(&self, user: &str, sha256: &str) -> Result<Option<MediaRecord>, MediaError> {
        if self.store.content(sha256)?.is_none() {
            return Ok(None);
        }
        for id in self.store.owners(sha256, MAX_ACCESS_CHECKS)? {
            if !record::valid_media_id(&id) {
                continue;
            }
            if !self.store.may_download(&id, user)? {
                continue;
            }
            if let Some(r) = self.store.media(&id)? {
                if r.is_verified() && r.sha256 == sha256 {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// `media.download`: a URL for the bytes of `media`, only for a user who sent or received
    /// a message referencing it; anyone else gets `forbidden`, whether
    /// or not the media exists.
    pub async fn download(&self, user: &str, media: &str) -> Result<DownloadGrant, MediaError> {
        if !record::valid_media_id(media) {
            return Err(MediaError::BadRequest(format!(
                "`media` is not a media id: {media:?}"
            )));
        }
        if !self.store.may_download(media, user)? && !self.avatar_visible(user, media)? {
            return Err(MediaError::Forbidden(format!(
                "only the sender and the recipients of a message with media `{media}` may download it"
            )));
        }
        let Some(record) = self.store.media(media)? else {
            return Err(MediaError::NotFound(format!("no media `{media}`")));
        };
        if self.store.content(&record.sha256)?.is_none() {
            return Err(MediaError::NotFound(format!(
                "media `{media}` has no stored bytes"
            )));
        }
        let window = self.window();
        let url = self.backend.download_url(&record, window).await?;
        Ok(DownloadGrant {
            media: record.id,
            url,
            expires: window.expires().saturating_mul(1000),
            mime: record.mime,
            size: record.size,
            sha256: record.sha256,
            meta: record.meta,
        })
    }

    /// May `sender` reference `media` in a message (of message type `kind`, when known)? Only
    /// media the sender uploaded and whose bytes are verified (verifying them now if the back
    /// end checks lazily); an `image`, `video` or `audio` message also needs a MIME type from
    /// that kind's list (`file` takes any media).
    pub async fn check_media(
        &self,
        sender: &str,
        media: &str,
        kind: Option<&str>,
    ) -> Result<MediaRecord, MediaError> {
        if !record::valid_media_id(media) {
            return Err(MediaError::BadRequest(format!(
                "`media` is not a media id: {media:?}"
            )));
        }
        let Some(record) = self.store.media(media)? else {
            return Err(MediaError::BadRequest(format!(
                "unknown media `{media}`: use an id from media.upload"
            )));
        };
        if record.uploader != sender {
            return Err(MediaError::BadRequest(format!(
                "media `{media}` was uploaded by another user; a message may only reference media \
                 its sender uploaded (media.upload with the same content gives you your own id)"
            )));
        }
        let record = match self.settle(record).await? {
            Settled::Verified(record) => *record,
            Settled::Pending(why) => {
                return Err(MediaError::BadRequest(format!(
                    "media `{media}` cannot be sent yet: {why}"
                )))
            }
        };
        if let Some(kind) = kind.and_then(MediaKind::from_message_type) {
            if !self.settings.limits.allows(kind, &record.mime) {
                return Err(MediaError::BadRequest(format!(
                    "a `{kind}` message needs {kind} media (media.limits.{kind}.mime); \
                     `{media}` is {}: send it as `file`",
                    record.mime
                )));
            }
        }
        Ok(record)
    }

    /// Brings `record` up to date: verified when the back end finds the bytes uploaded for it
    /// correct; else why not. The content being stored already (by someone else) verifies
    /// nothing: only the uploader's own bytes do.
    async fn settle(&self, record: MediaRecord) -> Result<Settled, MediaError> {
        if record.is_verified() {
            return Ok(Settled::Verified(Box::new(record)));
        }
        let stored = self.store.content(&record.sha256)?.is_some();
        match self.backend.verify(&record, stored).await? {
            Verification::Verified => self
                .commit(record)
                .await
                .map(|r| Settled::Verified(Box::new(r))),
            Verification::NotUploaded => Ok(Settled::Pending(match &record.rejected {
                Some(why) => {
                    format!("its last upload was rejected ({why}); upload the right bytes again")
                }
                None => "its bytes have not been uploaded yet".to_string(),
            })),
            Verification::Mismatch(why) => {
                self.reject(&record.id, &why).await?;
                Ok(Settled::Pending(format!(
                    "the uploaded bytes do not match the declared size and sha256 ({why}); \
                     they were removed, upload the right bytes again"
                )))
            }
        }
    }

    /// Records that the bytes of `record` are verified: the content (once per hash) and the
    /// record, durably. Each record keeps its own declared MIME type; the size is the
    /// content's, since the bytes were checked against both.
    async fn commit(&self, mut record: MediaRecord) -> Result<MediaRecord, MediaError> {
        let guard = self.meta.lock().await;
        // Metadata declared again while the bytes were checked is the latest word.
        if let Some(stored) = self.store.media(&record.id)? {
            record.meta = stored.meta;
        }
        let now = now_ms();
        let content = ContentRecord::from_media(&record, now);
        record.mark_verified(now);
        self.store.write(vec![
            MediaChange::ContentIfAbsent(content),
            MediaChange::Media(record.clone()),
        ])?;
        drop(guard);
        self.flush().await?;
        Ok(record)
    }

    /// Notes why the last upload of pending `media` was rejected, for the sender's refusal.
    async fn reject(&self, media: &str, why: &str) -> Result<(), MediaError> {
        let _guard = self.meta.lock().await;
        if let Some(mut record) = self.store.media(media)? {
            if !record.is_verified() {
                record.rejected = Some(why.to_string());
                self.store.write(vec![MediaChange::Media(record)])?;
            }
        }
        Ok(())
    }

    /// Flushes the store off the async threads.
    async fn flush(&self) -> Result<(), MediaError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| RecordError::Store(format!("store error: flush task failed: {e}")))??;
        Ok(())
    }
}

impl MediaGate for MediaService {
    fn check<'a>(&'a self, sender: &'a str, media: &'a str) -> GateFuture<'a> {
        Box::pin(async move {
            self.check_media(sender, media, None)
                .await
                .map(|_| ())
                .map_err(|e| e.failure())
        })
    }

    fn check_message<'a>(
        &'a self,
        sender: &'a str,
        media: &'a str,
        kind: &'a str,
    ) -> GateFuture<'a> {
        Box::pin(async move {
            self.check_media(sender, media, Some(kind))
                .await
                .map(|_| ())
                .map_err(|e| e.failure())
        })
    }
}
