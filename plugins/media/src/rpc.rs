//! `media.upload` and `media.download` on `chat/{me}/rpc`: parsing the request and shaping the
//! reply exactly like messaging's requests (`{"rid","ok","result"|"error"}`).

use bytes::Bytes;
use serde_json::Value;

use chatd_wire::json::{self, Object};
use chatd_wire::reply::{self, Failure};

use super::record;
use super::MediaService;

/// Largest request payload (the same bound as messaging's requests).
const MAX_RPC_BYTES: usize = 16 * 1024;

/// Answers `payload` when it is a media request; `None` for anything else, including payloads
/// that are not JSON objects (messaging answers those with its own error).
pub(super) async fn answer(service: &MediaService, user: &str, payload: &[u8]) -> Option<Bytes> {
    let obj = json::parse_object(payload, MAX_RPC_BYTES).ok()?;
    let op = obj.get("op").and_then(Value::as_str)?;
    if op != "media.upload" && op != "media.download" {
        return None;
    }
    let rid = match json::correlation_id(&obj, "rid") {
        Ok(rid) => rid,
        Err(f) => return Some(reply::rpc_err(None, &f)),
    };
    let answer = if op == "media.upload" {
        upload(service, user, rid, &obj).await
    } else {
        download(service, user, rid, &obj).await
    };
    Some(answer.unwrap_or_else(|f| reply::rpc_err(Some(rid), &f)))
}

async fn upload(
    service: &MediaService,
    user: &str,
    rid: &str,
    obj: &Object,
) -> Result<Bytes, Failure> {
    json::only_fields(obj, &["rid", "op", "mime", "size", "sha256"])?;
    let mime = json::required_str(obj, "mime")?.to_ascii_lowercase();
    let size = match obj.get("size") {
        None | Some(Value::Null) => return Err(Failure::bad("`size` is required")),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => {
                return Err(Failure::bad(format!(
                    "`size` must be a whole number of bytes, at least 1, not {v}"
                )))
            }
        },
    };
    let sha256 = json::required_str(obj, "sha256")?.to_ascii_lowercase();
    if !record::valid_sha256(&sha256) {
        return Err(Failure::bad(
            "`sha256` must be the SHA-256 of the bytes: 64 hex digits",
        ));
    }
    let grant = service
        .upload(user, &mime, size, &sha256)
        .await
        .map_err(|e| e.failure())?;
    Ok(reply::rpc_ok(rid, grant))
}

async fn download(
    service: &MediaService,
    user: &str,
    rid: &str,
    obj: &Object,
) -> Result<Bytes, Failure> {
    json::only_fields(obj, &["rid", "op", "media"])?;
    let media = json::required_str(obj, "media")?;
    let grant = service
        .download(user, media)
        .await
        .map_err(|e| e.failure())?;
    Ok(reply::rpc_ok(rid, grant))
}
