//! Per-type upload limits: which MIME types each media kind accepts and how large its files may
//! be. The MIME type declared at `media.upload` decides the kind whose limits apply; the
//! message type decides which kind's MIME list the referenced media must fit.

use std::fmt;

/// The four media message types of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `image` messages.
    Image,
    /// `video` messages.
    Video,
    /// `audio` messages.
    Audio,
    /// `file` messages: any verified media.
    File,
}

impl MediaKind {
    /// Every kind, in the order ties between equally specific MIME patterns are broken.
    pub const ALL: [MediaKind; 4] = [
        MediaKind::Image,
        MediaKind::Video,
        MediaKind::Audio,
        MediaKind::File,
    ];

    /// The kind's name: the message `type` and the config table `media.limits.{name}`.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::File => "file",
        }
    }

    /// The kind of a message `type`, if it is a media type.
    pub fn from_message_type(kind: &str) -> Option<MediaKind> {
        MediaKind::ALL.into_iter().find(|k| k.name() == kind)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The limits of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeLimit {
    /// Largest upload, in bytes.
    pub max_bytes: u64,
    /// Accepted MIME types: exact (`image/png`), a whole top-level type (`image/*`) or anything
    /// (`*/*`). Lowercase.
    pub mime: Vec<String>,
}

/// The limits of all four kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `image` uploads.
    pub image: TypeLimit,
    /// `video` uploads.
    pub video: TypeLimit,
    /// `audio` uploads.
    pub audio: TypeLimit,
    /// `file` uploads (documents and anything no other kind takes).
    pub file: TypeLimit,
}

const MIB: u64 = 1024 * 1024;

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Limits {
    /// The built-in limits of one kind (what a config without that table gets).
    pub fn default_for(kind: MediaKind) -> TypeLimit {
        match kind {
            MediaKind::Image => TypeLimit {
                max_bytes: 16 * MIB,
                mime: list(&[
                    "image/jpeg",
                    "image/png",
                    "image/gif",
                    "image/webp",
                    "image/heic",
                ]),
            },
            MediaKind::Video => TypeLimit {
                max_bytes: 64 * MIB,
                mime: list(&["video/mp4", "video/quicktime", "video/webm", "video/3gpp"]),
            },
            MediaKind::Audio => TypeLimit {
                max_bytes: 16 * MIB,
                mime: list(&[
                    "audio/mpeg",
                    "audio/mp4",
                    "audio/aac",
                    "audio/ogg",
                    "audio/opus",
                    "audio/webm",
                    "audio/wav",
                ]),
            },
            MediaKind::File => TypeLimit {
                max_bytes: 100 * MIB,
                mime: list(&["*/*"]),
            },
        }
    }

    /// The limits of `kind`.
    pub fn get(&self, kind: MediaKind) -> &TypeLimit {
        match kind {
            MediaKind::Image => &self.image,
            MediaKind::Video => &self.video,
            MediaKind::Audio => &self.audio,
            MediaKind::File => &self.file,
        }
    }

    /// Checks every kind's values; the error names the config key.
    pub fn validate(&self) -> Result<(), LimitError> {
        for kind in MediaKind::ALL {
            let limit = self.get(kind);
            if limit.max_bytes == 0 {
                return Err(LimitError::ZeroMax { kind });
            }
            if let Some(bad) = limit.mime.iter().find(|p| !valid_pattern(p)) {
                return Err(LimitError::BadPattern {
                    kind,
                    pattern: bad.clone(),
                });
            }
        }
        Ok(())
    }

    /// The kind whose limits apply to `mime` (lowercase): the one with the most specific
    /// matching pattern (exact, then `type/*`, then `*/*`), ties in the order image, video,
    /// audio, file. `None` when no kind accepts it.
    pub fn classify(&self, mime: &str) -> Option<MediaKind> {
        let mut best: Option<(u8, MediaKind)> = None;
        for kind in MediaKind::ALL {
            let score = self
                .get(kind)
                .mime
                .iter()
                .filter_map(|p| specificity(p, mime))
                .max();
            if let Some(score) = score {
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, kind));
                }
            }
        }
        best.map(|(_, kind)| kind)
    }

    /// Whether media of type `mime` may be sent as a `kind` message: `file` takes any media,
    /// the others only MIME types in their own list.
    pub fn allows(&self, kind: MediaKind, mime: &str) -> bool {
        kind == MediaKind::File
            || self
                .get(kind)
                .mime
                .iter()
                .any(|p| specificity(p, mime).is_some())
    }

    /// Checks an upload of `size` bytes of `mime` (lowercase) and returns the kind whose
    /// limits it was checked against.
    pub fn check_upload(&self, mime: &str, size: u64) -> Result<MediaKind, LimitError> {
        if !valid_mime(mime) {
            return Err(LimitError::BadMime(mime.to_string()));
        }
        let Some(kind) = self.classify(mime) else {
            return Err(LimitError::NotAllowed {
                mime: mime.to_string(),
                allowed: self.describe_allowed(),
            });
        };
        let max = self.get(kind).max_bytes;
        if size > max {
            return Err(LimitError::TooLarge { kind, size, max });
        }
        Ok(kind)
    }

    /// `image: image/jpeg, image/png; video: …` for refusals.
    fn describe_allowed(&self) -> String {
        MediaKind::ALL
            .iter()
            .map(|k| format!("{k}: {}", self.get(*k).mime.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            image: Limits::default_for(MediaKind::Image),
            video: Limits::default_for(MediaKind::Video),
            audio: Limits::default_for(MediaKind::Audio),
            file: Limits::default_for(MediaKind::File),
        }
    }
}

/// Why an upload or a limits configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The declared MIME type is not of the form `type/subtype`.
    #[error("`mime` must be a MIME type like image/jpeg (no parameters), not {0:?}")]
    BadMime(String),
    /// No kind accepts this MIME type.
    #[error("MIME type `{mime}` is not allowed; allowed: {allowed}")]
    NotAllowed {
        /// The declared type.
        mime: String,
        /// Every kind's list.
        allowed: String,
    },
    /// Over the kind's size limit.
    #[error(
        "{size} bytes is over the {kind} limit of {max} bytes (media.limits.{kind}.max_bytes)"
    )]
    TooLarge {
        /// The kind whose limit applies.
        kind: MediaKind,
        /// The declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A configured limit of 0 bytes.
    #[error("media.limits.{kind}.max_bytes must be at least 1")]
    ZeroMax {
        /// The kind.
        kind: MediaKind,
    },
    /// A configured MIME pattern that can never match.
    #[error(
        "media.limits.{kind}.mime: {pattern:?} is not a MIME type, `type/*` or `*/*` (lowercase)"
    )]
    BadPattern {
        /// The kind.
        kind: MediaKind,
        /// The bad entry.
        pattern: String,
    },
}

/// One part of a MIME type (RFC 6838 restricted name, lowercase): 1–127 characters of
/// `a-z 0-9 ! # $ & ^ _ . + -`, starting with a letter or digit.
fn valid_part(part: &str) -> bool {
    let mut bytes = part.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && part.len() <= 127
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
}

/// True for a lowercase `type/subtype` without parameters.
pub fn valid_mime(mime: &str) -> bool {
    match mime.split_once('/') {
        Some((t, s)) => valid_part(t) && valid_part(s),
        None => false,
    }
}

/// True for a MIME type, `type/*` or `*/*`.
pub fn valid_pattern(pattern: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((t, "*")) => valid_part(t),
        _ => valid_mime(pattern),
    }
}

/// How specifically `pattern` matches `mime`: 2 exact, 1 `type/*`, 0 `*/*`; `None` if not.
fn specificity(pattern: &str, mime: &str) -> Option<u8> {
    if pattern == mime {
        return Some(2);
    }
    if pattern == "*/*" {
        return Some(0);
    }
    let (ptype, psub) = pattern.split_once('/')?;
    let (mtype, _) = mime.split_once('/')?;
    (psub == "*" && ptype == mtype).then_some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_classify() {
        let l = Limits::default();
        l.validate().unwrap();
        assert_eq!(l.classify("image/png"), Some(MediaKind::Image));
        assert_eq!(l.classify("video/mp4"), Some(MediaKind::Video));
        assert_eq!(l.classify("audio/ogg"), Some(MediaKind::Audio));
        // Unlisted types fall to `file`, which takes anything by default.
        assert_eq!(l.classify("application/pdf"), Some(MediaKind::File));
        assert_eq!(l.classify("image/x-unknown"), Some(MediaKind::File));
    }

    #[test]
    fn most_specific_pattern_wins() {
        let mut l = Limits::default();
        l.image.mime = vec!["image/*".into()];
        l.file.mime = vec!["image/svg+xml".into(), "*/*".into()];
        assert_eq!(l.classify("image/png"), Some(MediaKind::Image));
        assert_eq!(l.classify("image/svg+xml"), Some(MediaKind::File));
        assert_eq!(l.classify("text/plain"), Some(MediaKind::File));
        l.file.mime = vec!["application/pdf".into()];
        assert_eq!(l.classify("text/plain"), None);
    }

    #[test]
    fn upload_checks_name_the_limit() {
        let mut l = Limits::default();
        l.image.max_bytes = 1000;
        l.file.mime = vec!["application/pdf".into()];
        assert_eq!(l.check_upload("image/png", 1000), Ok(MediaKind::Image));
        let err = l.check_upload("image/png", 1001).unwrap_err();
        assert_eq!(
            err,
            LimitError::TooLarge {
                kind: MediaKind::Image,
                size: 1001,
                max: 1000
            }
        );
        assert!(
            err.to_string().contains("media.limits.image.max_bytes"),
            "{err}"
        );
        let err = l.check_upload("application/zip", 10).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LimitError::NotAllowed { .. }));
        assert!(text.contains("application/zip") && text.contains("file: application/pdf"));
        assert!(text.contains("image: image/jpeg"), "{text}");
        for bad in [
            "image",
            "image/",
            "/png",
            "Image/PNG",
            "image/png; q=1",
            "image/*",
            "",
        ] {
            assert!(
                matches!(l.check_upload(bad, 1), Err(LimitError::BadMime(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn message_kinds_need_their_own_mime_types() {
        let l = Limits::default();
        assert!(l.allows(MediaKind::Image, "image/png"));
        assert!(!l.allows(MediaKind::Image, "application/pdf"));
        assert!(!l.allows(MediaKind::Video, "image/png"));
        assert!(l.allows(MediaKind::File, "image/png"));
        assert!(l.allows(MediaKind::File, "application/pdf"));
        assert_eq!(
            MediaKind::from_message_type("audio"),
            Some(MediaKind::Audio)
        );
        assert_eq!(MediaKind::from_message_type("text"), None);
    }

    #[test]
    fn bad_configuration_is_named() {
        let mut l = Limits::default();
        l.video.max_bytes = 0;
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("media.limits.video.max_bytes"));
        let mut l = Limits::default();
        l.audio.mime.push("Audio/MP3".into());
        let err = l.validate().unwrap_err().to_string();
        assert!(
            err.contains("media.limits.audio.mime") && err.contains("Audio/MP3"),
            "{err}"
        );
        for ok in ["*/*", "image/*", "application/vnd.ms-excel", "audio/x-m4a"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["*", "*/png", "image/**", "im age/png", "a/b/c"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }
}
