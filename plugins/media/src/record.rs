//! Media metadata as kept in the store, apart from the bytes: one record per media id
//! (`f/{media}`), one per verified content (`c/{sha256}`), and each uploader's id for a content
//! (`c/{sha256}/{user}`). See `docs/architecture.md`, "Data layout".

use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use chatd_core::keys;
use chatd_kv::KvStore;

use super::error::MediaError;

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
    format!("m_{}", hex::encode(bytes))
}

/// True for ids messaging accepts for media (its `valid_object_id`): 1–64 characters of
/// `A-Z a-z 0-9 _ . -`, the user id alphabet, so they are safe inside store keys and URL paths.
pub fn valid_media_id(id: &str) -> bool {
    chatd_auth::validate_user_id(id).is_ok()
}

/// True for 64 lowercase hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Encodes a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

fn load<T: DeserializeOwned>(store: &dyn KvStore, key: &[u8]) -> Result<Option<T>, MediaError> {
    match store.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MediaError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                why: e.to_string(),
            }),
    }
}

/// The record of `media`, if any.
pub fn load_media(store: &dyn KvStore, media: &str) -> Result<Option<MediaRecord>, MediaError> {
    load(store, &keys::media_record(media))
}

/// The verified content with this hash, if any.
pub fn load_content(
    store: &dyn KvStore,
    sha256: &str,
) -> Result<Option<ContentRecord>, MediaError> {
    load(store, &keys::media_content(sha256))
}

/// The media id `user` got for this content, if any.
pub fn owner_media(
    store: &dyn KvStore,
    sha256: &str,
    user: &str,
) -> Result<Option<String>, MediaError> {
    Ok(store
        .get(&keys::media_owner(sha256, user))?
        .and_then(|v| String::from_utf8(v).ok()))
}

/// Up to `limit` media ids that users got for this content.
pub fn owners(store: &dyn KvStore, sha256: &str, limit: usize) -> Result<Vec<String>, MediaError> {
    let prefix = keys::media_owners_prefix(sha256);
    let rows = store.scan(prefix.as_bytes(), &keys::prefix_end(&prefix), false, limit)?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, v)| String::from_utf8(v).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = new_media_id();
        let b = new_media_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("m_"));
        assert!(valid_media_id(&a), "{a}");
    }

    #[test]
    fn sha256_must_be_lowercase_hex() {
        assert!(valid_sha256(&"a".repeat(64)));
        assert!(valid_sha256(&"0123456789abcdef".repeat(4)));
        assert!(!valid_sha256(&"A".repeat(64)));
        assert!(!valid_sha256(&"a".repeat(63)));
        assert!(!valid_sha256(&"g".repeat(64)));
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut r = MediaRecord::pending("alice", &"ab".repeat(32), 10, "image/png", 5);
        let text = String::from_utf8(encode(&r)).unwrap();
        assert!(text.contains("\"state\":\"pending\""), "{text}");
        assert!(!text.contains("verified\":"), "{text}");
        assert_eq!(serde_json::from_str::<MediaRecord>(&text).unwrap(), r);
        r.rejected = Some("sha256 differs".into());
        r.mark_verified(9);
        assert!(r.is_verified());
        assert_eq!(r.rejected, None);
        let back: MediaRecord = serde_json::from_slice(&encode(&r)).unwrap();
        assert_eq!(back.verified, Some(9));
        let c = ContentRecord::from_media(&r, 11);
        assert_eq!((c.size, c.mime.as_str(), c.created), (10, "image/png", 11));
    }
}
