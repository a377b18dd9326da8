//! The media records port: the metadata of the media service apart from the bytes — one record
//! per media id, one per verified content (addressed by SHA-256), each uploader's id for a
//! content — and the download rights that messages grant (written by messaging at send time,
//! only read here).

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::accounts::RecordError;

/// Where a media id stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// Granted an upload URL; no verified bytes yet.
    Pending,
    /// Its bytes are stored and have the declared size and SHA-256.
    Verified,
}

/// One media id: what its uploader declared, and whether the bytes are verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// The media id (`m_` + 32 hex digits).
    pub id: String,
    /// SHA-256 of the content, lowercase hex: the content's address.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Declared MIME type (lowercase); the `Content-Type` of downloads.
    pub mime: String,
    /// The user who asked for it; the only one who may send it.
    pub uploader: String,
    /// When it was created, Unix milliseconds.
    pub created: u64,
    /// Pending or verified.
    pub state: MediaState,
    /// When its bytes were verified, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<u64>,
    /// Why the last upload was rejected, until a new upload is asked for or one verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// What the uploader told about the content (file name, pixel size, duration, preview);
    /// absent in records written before metadata existed.
    #[serde(default, skip_serializing_if = "MediaMeta::is_empty")]
    pub meta: MediaMeta,
}

/// Optional metadata an uploader declares with `media.upload`, returned by `media.download`.
/// Checked by the media service before it is stored; each field is left out of the JSON when
/// not given, so a record without metadata reads and writes as before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMeta {
    /// File name (no path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Width in pixels (given together with `height`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    /// Height in pixels (given together with `width`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// A small preview image as a `data:image/…;base64,…` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

impl MediaMeta {
    /// True when no field is given.
    pub fn is_empty(&self) -> bool {
        self == &MediaMeta::default()
    }
}

impl MediaRecord {
    /// A new pending record with a fresh id.
    pub fn pending(uploader: &str, sha256: &str, size: u64, mime: &str, now_ms: u64) -> Self {
        MediaRecord {
            id: new_media_id(),
            sha256: sha256.to_string(),
            size,
            mime: mime.to_string(),
            uploader: uploader.to_string(),
            created: now_ms,
            state: MediaState::Pending,
            verified: None,
            rejected: None,
            meta: MediaMeta::default(),
        }
    }

    /// Marks the record verified at `now_ms`.
    pub fn mark_verified(&mut self, now_ms: u64) {
        self.state = MediaState::Verified;
        self.verified = Some(now_ms);
        self.rejected = None;
    }

    /// True once its bytes are verified.
    pub fn is_verified(&self) -> bool {
        self.state == MediaState::Verified
    }
}

/// Verified content: stored once per SHA-256, whoever uploaded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type its first uploader declared (each media record keeps its own).
    pub mime: String,
    /// The uploader whose bytes were stored.
    pub uploader: String,
    /// When the bytes were verified, Unix milliseconds.
    pub created: u64,
}

impl ContentRecord {
    /// The content record for the verified bytes of `record`.
    pub fn from_media(record: &MediaRecord, now_ms: u64) -> ContentRecord {
        ContentRecord {
            sha256: record.sha256.clone(),
            size: record.size,
            mime: record.mime.clone(),
            uploader: record.uploader.clone(),
            created: now_ms,
        }
    }
}

/// A new media id: `m_` and 128 random bits in hex (passes `valid_object_id`).
pub fn new_media_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("m_{hex}")
}

/// One change to the media records, part of an atomic [`MediaRecords::write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaChange {
    /// Stores `record` under its id, replacing any earlier version.
    Media(MediaRecord),
    /// `user` got media id `media` for the content `sha256` (asking again gives the same id).
    Owner {
        /// The content.
        sha256: String,
        /// The uploader.
        user: String,
        /// The media id they got.
        media: String,
    },
    /// The content is verified: stored unless a record of it exists already (the first
    /// uploader's declaration stays).
    ContentIfAbsent(ContentRecord),
}

/// Where media metadata is kept.
pub trait MediaRecords: Send + Sync + 'static {
    /// The record of media id `media`, if any.
    fn media(&self, media: &str) -> Result<Option<MediaRecord>, RecordError>;

    /// The verified content with this SHA-256, if any.
    fn content(&self, sha256: &str) -> Result<Option<ContentRecord>, RecordError>;

    /// The media id `user` got for this content, if any.
    fn owner_media(&self, sha256: &str, user: &str) -> Result<Option<String>, RecordError>;

    /// Up to `limit` media ids that users got for this content.
    fn owners(&self, sha256: &str, limit: usize) -> Result<Vec<String>, RecordError>;

    /// True when a message gave `user` the right to download `media` (they sent or received
    /// a message referencing it).
    fn may_download(&self, media: &str, user: &str) -> Result<bool, RecordError>;

    /// Carries out `changes` atomically (not yet durable: see [`MediaRecords::flush`]).
    fn write(&self, changes: Vec<MediaChange>) -> Result<(), RecordError>;

    /// Returns once every change written before the call is durable. Blocking.
    fn flush(&self) -> Result<(), RecordError>;
}
