//! `media.upload` and `media.download` on `chat/{me}/rpc`: their arguments and results (the
//! broker's router checks the envelope and writes the reply).

use serde_json::Value;

use chatd_wire::json::{self, Object};
use chatd_wire::reply::Failure;
use chatd_wire::request::{ops, Answer, AnswerFuture, Caller, Outcome, Request, RpcHandler};

use super::MediaService;
use super::{meta, record};

impl RpcHandler for MediaService {
    fn ops(&self) -> &'static [&'static str] {
        ops::MEDIA
    }

    fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
        Box::pin(async move {
            match request.op.as_str() {
                "media.upload" => upload(self, caller.user, &request.obj).await,
                _ => download(self, caller.user, &request.obj).await,
            }
        })
    }
}

async fn upload(service: &MediaService, user: &str, obj: &Object) -> Outcome {
    json::only_fields(
        obj,
        &[
            "rid", "op", "mime", "size", "sha256", "name", "width", "height", "duration", "preview",
        ],
    )?;
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
    let meta = meta::from_request(obj)?;
    let grant = service
        .upload_with_meta(user, &mime, size, &sha256, meta)
        .await
        .map_err(|e| e.failure())?;
    Answer::of(&grant)
}

async fn download(service: &MediaService, user: &str, obj: &Object) -> Outcome {
    json::only_fields(obj, &["rid", "op", "media"])?;
    let media = json::required_str(obj, "media")?;
    let grant = service
        .download(user, media)
        .await
        .map_err(|e| e.failure())?;
    Answer::of(&grant)
}
