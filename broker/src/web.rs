//! The web client at `/` on the HTTP listener: the bundle in `web/dist`, built into the binary
//! (see `build.rs`), or read from `web.dir` while developing the client. The page, its MQTT
//! connection (`/mqtt`, see `mqtt_on_http`) and media URLs share one origin, so the page's
//! Content-Security-Policy can allow scripts from that origin only.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;

use crate::config::WebConfig;

/// The files of the bundle built into this binary, by name.
const EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// What the page may load: scripts and styles from its own origin only; images, audio and
/// video also from media URLs, which are elsewhere with the `s3` back end; MQTT and uploads
/// over any origin the server hands out URLs for.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: http: https:; \
media-src 'self' blob: http: https:; connect-src 'self' ws: wss: http: https:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the client's files come from.
enum Source {
    /// Built into the binary, with their ETags computed once.
    Embedded(HashMap<&'static str, (Bytes, String)>),
    /// Read from this folder at each request.
    Dir(PathBuf),
}

/// The routes of the web client: every `GET`/`HEAD` that no other route takes.
pub fn routes<S: Clone + Send + Sync + 'static>(config: &WebConfig) -> Router<S> {
    if !config.enabled {
        return Router::new();
    }
    let source = Arc::new(match &config.dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::Embedded(
            EMBEDDED
                .iter()
                .map(|(name, bytes)| (*name, (Bytes::from_static(bytes), etag(bytes))))
                .collect(),
        ),
    });
    Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let source = source.clone();
        async move { serve(&source, &method, &uri, &headers).await }
    })
}

async fn serve(source: &Source, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    let name = match uri.path() {
        "/" => "index.html",
        "/mqtt" => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [(header::UPGRADE, "websocket")],
                "MQTT over WebSocket: connect with the `mqtt` subprotocol\n",
            )
                .into_response()
        }
        path => path.trim_start_matches('/'),
    };
    if !plain_name(name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (bytes, tag) = match source {
        Source::Embedded(files) => match files.get(name) {
            Some((bytes, tag)) => (bytes.clone(), tag.clone()),
            None if name == "index.html" => {
                return (
                    StatusCode::NOT_FOUND,
                    "the web client is not built into this chatd (web/dist was empty)\n",
                )
                    .into_response()
            }
            None => return StatusCode::NOT_FOUND.into_response(),
        },
        Source::Dir(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(bytes) => {
                let tag = etag(&bytes);
                (Bytes::from(bytes), tag)
            }
            Err(_) => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|asked| asked.as_bytes() == tag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        if let Ok(v) = HeaderValue::from_str(&bytes.len().to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
        r
    } else {
        Response::new(Body::from(bytes))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mime_of(name)),
    );
    // Revalidated at every load (cheap: a 304), so a new bundle is never mixed with an old one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if name.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// A file name directly in the bundle's folder: no path, no hidden file.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A strong ETag of `bytes` (stable for the same bytes and the same binary).
fn etag(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("\"{:016x}-{:x}\"", hasher.finish(), bytes.len())
}

fn mime_of(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        assert!(plain_name("app.js"));
        assert!(plain_name("index.html"));
        for bad in ["", ".env", "../x", "a/b", "a%2fb", "x\\y"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn etags_follow_the_bytes() {
        assert_eq!(etag(b"abc"), etag(b"abc"));
        assert_ne!(etag(b"abc"), etag(b"abd"));
    }
}
