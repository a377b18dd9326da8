//! The optional metadata of `media.upload` — file name, pixel size, duration, preview image —
//! read from the request and checked before it is stored with the media record (the record
//! type, [`MediaMeta`], belongs to the chat core's media port).

use base64::Engine;
use serde_json::Value;

use chatd_wire::json::{self, Object};
use chatd_wire::reply::Failure;

pub use chatd_core::ports::media::MediaMeta;

/// The request fields that carry metadata.
pub const FIELDS: &[&str] = &["name", "width", "height", "duration", "preview"];

/// Longest file name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 255;

/// Largest width or height, in pixels.
pub const MAX_PIXELS: u64 = 100_000;

/// Longest duration, in milliseconds (a day).
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// Longest preview, the whole `data:` URL, in bytes.
pub const MAX_PREVIEW_BYTES: usize = 16_384;

/// The `data:` URL prefixes a preview may have, and the first bytes of each format, so a
/// preview is an image of the type it claims (a client shows it as such).
const PREVIEW_FORMATS: &[(&str, &[u8])] = &[
    ("data:image/jpeg;base64,", b"\xff\xd8\xff"),
    ("data:image/png;base64,", b"\x89PNG\r\n\x1a\n"),
    ("data:image/webp;base64,", b"RIFF"),
];

/// Reads the metadata fields of a `media.upload` request (`null` counts as absent) and checks
/// them with [`check`].
pub fn from_request(obj: &Object) -> Result<MediaMeta, Failure> {
    let meta = MediaMeta {
        name: json::optional_str(obj, "name")?.map(str::to_string),
        width: optional_whole(obj, "width")?,
        height: optional_whole(obj, "height")?,
        duration: optional_whole(obj, "duration")?,
        preview: json::optional_str(obj, "preview")?.map(str::to_string),
    };
    check(&meta).map_err(Failure::bad)?;
    Ok(meta)
}

/// An optional field holding a whole number ≥ 0.
fn optional_whole(obj: &Object, name: &str) -> Result<Option<u64>, Failure> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            Failure::bad(format!("`{name}` must be a whole number, not {}", shown(v)))
        }),
    }
}

/// A value for an error message: numbers as written, other types by kind.
fn shown(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => json::kind_of(other).to_string(),
    }
}

/// Checks every given field; the error names the first field that is wrong and why.
pub fn check(meta: &MediaMeta) -> Result<(), String> {
    if let Some(name) = &meta.name {
        check_name(name)?;
    }
    match (meta.width, meta.height) {
        (Some(_), None) | (None, Some(_)) => {
            return Err("`width` and `height` go together: give both or neither".into())
        }
        _ => {}
    }
    for (field, value) in [("width", meta.width), ("height", meta.height)] {
        if let Some(n) = value.filter(|n| !(1..=MAX_PIXELS).contains(n)) {
            return Err(format!(
                "`{field}` must be 1 to {MAX_PIXELS} pixels, not {n}"
            ));
        }
    }
    if let Some(ms) = meta.duration.filter(|ms| *ms > MAX_DURATION_MS) {
        return Err(format!(
            "`duration` must be 0 to {MAX_DURATION_MS} milliseconds (a day), not {ms}"
        ));
    }
    if let Some(preview) = &meta.preview {
        check_preview(preview)?;
    }
    Ok(())
}

/// A file name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters, no path (`/`, `\`,
/// `.`, `..`), so a client may offer it as the name to save the file under.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "`name` must be 1 to {MAX_NAME_BYTES} bytes, not {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("`name` must not contain control characters".into());
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(format!(
            "`name` must be a file name without a path (no `/` or `\\`, not `.` or `..`): {name:?}"
        ));
    }
    Ok(())
}

/// A preview: a base64 `data:` URL of a JPEG, PNG or WebP image, at most
/// [`MAX_PREVIEW_BYTES`] in all, whose bytes start as that format's do.
fn check_preview(preview: &str) -> Result<(), String> {
    if preview.len() > MAX_PREVIEW_BYTES {
        return Err(format!(
            "`preview` must be at most {MAX_PREVIEW_BYTES} bytes (the whole data URL), not {}",
            preview.len()
        ));
    }
    let Some((prefix, data, signature)) = PREVIEW_FORMATS
        .iter()
        .find_map(|(prefix, sig)| preview.strip_prefix(prefix).map(|d| (prefix, d, sig)))
    else {
        return Err(
            "`preview` must be a data URL starting `data:image/jpeg;base64,`, \
             `data:image/png;base64,` or `data:image/webp;base64,`"
                .into(),
        );
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("`preview` is not valid base64 after `{prefix}`: {e}"))?;
    if !bytes.starts_with(signature) {
        return Err(format!(
            "`preview` does not hold the image its type says (`{prefix}`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn png_url(bytes: &[u8]) -> String {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn read(v: serde_json::Value) -> Result<MediaMeta, String> {
        let serde_json::Value::Object(obj) = v else {
            panic!("not an object")
        };
        from_request(&obj).map_err(|f| f.message)
    }

    #[test]
    fn absent_and_null_fields_give_no_metadata() {
        assert!(read(json!({})).unwrap().is_empty());
        assert!(read(json!({"name": null, "width": null, "preview": null}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn every_field_is_read_at_its_limits() {
        let name = "é".repeat(127) + "x";
        assert_eq!(name.len(), MAX_NAME_BYTES);
        let mut bytes = PNG.to_vec();
        // base64 of n bytes is 4 * ceil(n / 3) characters.
        let room = (MAX_PREVIEW_BYTES - "data:image/png;base64,".len()) / 4 * 3;
        bytes.resize(room, 7);
        let preview = png_url(&bytes);
        assert!(preview.len() <= MAX_PREVIEW_BYTES && preview.len() > MAX_PREVIEW_BYTES - 4);
        let meta = read(
            json!({"name": name, "width": 100000, "height": 1, "duration": 0,
                                "preview": preview}),
        )
        .unwrap();
        assert_eq!(meta.name.as_deref(), Some(name.as_str()));
        assert_eq!(
            (meta.width, meta.height, meta.duration),
            (Some(100_000), Some(1), Some(0))
        );
        assert_eq!(meta.preview.as_deref(), Some(preview.as_str()));
        assert!(read(json!({"duration": MAX_DURATION_MS})).is_ok());
        for url in [
            "data:image/jpeg;base64,/9j/4AAQ",
            "data:image/webp;base64,UklGRiQAAABXRUJQ",
        ] {
            assert!(read(json!({ "preview": url })).is_ok(), "{url}");
        }
    }

    #[test]
    fn wrong_fields_are_refused_naming_them() {
        let too_big = png_url(&[PNG, &[0; MAX_PREVIEW_BYTES]].concat());
        for (request, needle) in [
            (json!({"name": ""}), "`name` must be 1 to 255 bytes"),
            (
                json!({"name": "x".repeat(256)}),
                "`name` must be 1 to 255 bytes",
            ),
            (json!({"name": "a\nb"}), "`name` must not contain control"),
            (
                json!({"name": "a\u{85}b"}),
                "`name` must not contain control",
            ),
            (json!({"name": "dir/a.png"}), "`name` must be a file name"),
            (json!({"name": "dir\\a.png"}), "`name` must be a file name"),
            (json!({"name": ".."}), "`name` must be a file name"),
            (json!({"name": 5}), "`name` must be a string"),
            (json!({"width": 10}), "give both or neither"),
            (json!({"height": 10}), "give both or neither"),
            (
                json!({"width": 0, "height": 10}),
                "`width` must be 1 to 100000",
            ),
            (
                json!({"width": 10, "height": 100001}),
                "`height` must be 1 to 100000",
            ),
            (
                json!({"width": -1, "height": 10}),
                "`width` must be a whole number, not -1",
            ),
            (
                json!({"width": 1.5, "height": 10}),
                "`width` must be a whole number, not 1.5",
            ),
            (
                json!({"width": "1", "height": 10}),
                "`width` must be a whole number, not a string",
            ),
            (
                json!({"duration": 86_400_001}),
                "`duration` must be 0 to 86400000",
            ),
            (
                json!({"preview": "http://x/y.png"}),
                "`preview` must be a data URL",
            ),
            (
                json!({"preview": "data:image/gif;base64,R0lGOD"}),
                "`preview` must be a data URL",
            ),
            (
                json!({"preview": "data:image/png;base64,!!!!"}),
                "`preview` is not valid base64",
            ),
            (
                json!({"preview": png_url(b"<svg>")}),
                "`preview` does not hold",
            ),
            (
                json!({"preview": too_big}),
                "`preview` must be at most 16384 bytes",
            ),
        ] {
            let err = read(request.clone()).expect_err(&request.to_string());
            assert!(err.contains(needle), "{request}: {err}");
        }
    }
}
