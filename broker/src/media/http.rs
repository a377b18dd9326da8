//! `PUT /media/{media}` and `GET /media/{media}` on chatd's HTTP listener: the `fs` back end's
//! signed upload and download URLs (`?expires=…&sig=…`). Refusals are `{"error":"…"}` with
//! 403 (forged, changed or expired URL), 404, 409, 413 (more bytes than declared) or 422 (size
//! or SHA-256 not as declared); nothing of a refused upload is kept. Downloads carry
//! `nosniff`, a CSP that lets nothing run, and `Content-Disposition: attachment` unless their
//! type is safe to show inline (see `chatd_media::serving`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use chatd_media::{serving, TransferError, UploadStart};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::io::ReaderStream;

use crate::state::Shared;

/// The media routes (merged into the listener's router).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/media/:media", put(upload).get(download))
}

/// The signed query of a media URL. Missing values are refused as forged (403).
#[derive(Debug, Default, Deserialize)]
struct Signed {
    expires: Option<String>,
    sig: Option<String>,
}

fn refusal(e: &TransferError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({"error": e.to_string()}))).into_response()
}

/// The query values, or empty ones (which fail the signature check) when it cannot be read.
fn signed(query: Result<Query<Signed>, impl std::fmt::Debug>) -> (String, String) {
    let Signed { expires, sig } = query.map(|Query(q)| q).unwrap_or_default();
    (expires.unwrap_or_default(), sig.unwrap_or_default())
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path(media): Path<String>,
    query: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (expires, sig) = signed(query);
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let start = shared
        .media
        .begin_upload(&media, &expires, &sig, content_length)
        .await;
    let mut upload = match start {
        Ok(UploadStart::Stored(done)) => return (StatusCode::OK, Json(done)).into_response(),
        Ok(UploadStart::Receiving(upload)) => upload,
        Err(e) => return refusal(&e),
    };
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                // The client went away or sent a broken body; the upload is dropped.
                let message = format!("the upload was interrupted: {e}; nothing was kept");
                return (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response();
            }
        };
        if let Err(e) = upload.write(&chunk).await {
            return refusal(&e);
        }
    }
    match upload.finish().await {
        Ok(done) => (StatusCode::CREATED, Json(done)).into_response(),
        Err(e) => refusal(&e),
    }
}

async fn download(
    State(shared): State<Arc<Shared>>,
    Path(media): Path<String>,
    query: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (expires, sig) = signed(query);
    let found = match shared.media.open_download(&media, &expires, &sig).await {
        Ok(found) => found,
        Err(e) => return refusal(&e),
    };
    let body = Body::from_stream(ReaderStream::new(found.file));
    // Uploaders choose the type: whatever is not safe to show inline is saved, not opened, and
    // nothing in it may run in this origin.
    let disposition = serving::content_disposition(&found.mime);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, found.mime)
        .header(header::CONTENT_LENGTH, found.size)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(
            header::CONTENT_SECURITY_POLICY,
            serving::CONTENT_SECURITY_POLICY,
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "private, no-transform")
        .body(body);
    match response {
        Ok(response) => response,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("response not built: {e}")})),
        )
            .into_response(),
    }
}
