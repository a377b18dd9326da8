//! How media bytes are presented to whoever fetches a download URL. Uploaders choose the MIME
//! type, so a `file` declared `text/html` (or `image/svg+xml`) would run scripts in the origin
//! that serves it. Only types a browser shows without running anything are served inline;
//! everything else is an attachment, and every response forbids sniffing and carries a CSP that
//! allows nothing to load or run.

/// `Content-Security-Policy` of every media response: nothing may load or run, and the document
/// gets a unique origin (`sandbox`), whatever the browser makes of the bytes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

/// MIME types a browser displays inline without executing anything from them. SVG is absent
/// on purpose: it can carry scripts.
const INLINE_SAFE: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "image/heic",
    "image/heif",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/opus",
    "audio/webm",
    "audio/wav",
    "audio/flac",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/3gpp",
    "video/ogg",
];

/// True when media of type `mime` may be shown inline.
pub fn inline_safe(mime: &str) -> bool {
    INLINE_SAFE.contains(&mime)
}

/// The `Content-Disposition` for media of type `mime`: `inline` for [`inline_safe`] types,
/// `attachment` (the browser saves it instead of opening it) for everything else.
pub fn content_disposition(mime: &str) -> &'static str {
    if inline_safe(mime) {
        "inline"
    } else {
        "attachment"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_types_are_inline() {
        assert_eq!(content_disposition("image/png"), "inline");
        assert_eq!(content_disposition("video/mp4"), "inline");
        assert_eq!(content_disposition("text/html"), "attachment");
        assert_eq!(content_disposition("image/svg+xml"), "attachment");
        assert_eq!(content_disposition("application/pdf"), "attachment");
        assert_eq!(content_disposition("application/xhtml+xml"), "attachment");
    }
}
