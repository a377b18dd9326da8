//! Media metadata apart from the bytes: one record per media id, one per verified content, and
//! each uploader's id for a content. The records and the port they are kept behind
//! ([`MediaRecords`]) belong to the chat core (`chatd_core::ports::media`); the embedded store
//! keeps them under `f/{media}`, `c/{sha256}` and `c/{sha256}/{user}` (see
//! `docs/architecture.md`, "Data layout"). Here: the checks of ids and hashes.

use serde::Serialize;

pub use chatd_core::ports::media::{
    new_media_id, ContentRecord, MediaChange, MediaRecord, MediaRecords, MediaState,
};

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

/// Encodes a record as JSON (as the embedded store keeps it).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
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
        assert!(!text.contains("meta"), "{text}");
        // A record written before metadata existed reads back without any.
        let old = format!(
            r#"{{"id":"m_1","sha256":"{}","size":3,"mime":"image/png","uploader":"bob","created":1,"state":"verified","verified":2}}"#,
            "cd".repeat(32)
        );
        let old: MediaRecord = serde_json::from_str(&old).unwrap();
        assert!(old.meta.is_empty() && old.is_verified(), "{old:?}");
        r.meta.name = Some("a.png".into());
        r.meta.duration = Some(0);
        let text = String::from_utf8(encode(&r)).unwrap();
        assert!(
            text.ends_with(r#","meta":{"name":"a.png","duration":0}}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<MediaRecord>(&text).unwrap(), r);
        let c = ContentRecord::from_media(&r, 11);
        assert_eq!((c.size, c.mime.as_str(), c.created), (10, "image/png", 11));
    }
}
