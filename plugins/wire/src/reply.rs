//! The JSON answers of the contract: send acks (`user/{me}/ack`) and request replies
//! (`user/{me}/rpc`), with the shared error codes.

use bytes::Bytes;
use serde::Serialize;

/// The error codes of the contract ("Sending").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or asks for something this server does not do.
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// A named user (or other object) does not exist.
    NotFound,
    /// A field or the payload is over its size limit.
    TooLarge,
    /// The server refuses more work for now; retry later.
    RateLimited,
    /// The server failed; retrying may help.
    Internal,
    /// The server's storage is failing: nothing is stored or acknowledged until it recovers;
    /// retry later (a send with the same `cid`).
    Unavailable,
}

/// A refused request: what the client gets in `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Machine-readable class.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl Failure {
    /// A failure with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` failure.
    pub fn bad(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::BadRequest, message)
    }

    /// An `internal` failure.
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Internal, message)
    }

    /// An `unavailable` failure.
    pub fn unavailable(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::Unavailable, message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

#[derive(Serialize)]
struct AckOk<'a> {
    cid: &'a str,
    id: &'a str,
    ts: u64,
    status: &'static str,
}

#[derive(Serialize)]
struct AckErr<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ReceiptErr<'a> {
    receipt: &'a [String],
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct RpcOk<'a, T: Serialize> {
    rid: &'a str,
    ok: bool,
    result: T,
}

#[derive(Serialize)]
struct RpcErr<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rid: Option<&'a str>,
    ok: bool,
    error: ErrorBody<'a>,
}

/// Serialises a reply; our reply types cannot fail to serialise, but if one ever did the
/// client still gets a well-formed `internal` error rather than nothing.
fn encode<T: Serialize>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::from_static(
            br#"{"error":{"code":"internal","message":"reply could not be encoded"}}"#,
        ),
    }
}

/// `{"cid":…,"id":…,"ts":…,"status":"sent"}`.
pub fn ack_ok(cid: &str, id: &str, ts: u64) -> Bytes {
    encode(&AckOk {
        cid,
        id,
        ts,
        status: "sent",
    })
}

/// `{"cid":…,"error":{"code":…,"message":…}}`, without `cid` when it could not be read.
pub fn ack_err(cid: Option<&str>, failure: &Failure) -> Bytes {
    encode(&AckErr {
        cid,
        error: ErrorBody {
            code: failure.code,
            message: &failure.message,
        },
    })
}

/// `{"rid":…,"ok":true,"result":…}`.
pub fn rpc_ok<T: Serialize>(rid: &str, result: T) -> Bytes {
    encode(&RpcOk {
        rid,
        ok: true,
        result,
    })
}

/// `{"rid":…,"ok":false,"error":{…}}`, without `rid` when it could not be read.
pub fn rpc_err(rid: Option<&str>, failure: &Failure) -> Bytes {
    encode(&RpcErr {
        rid,
        ok: false,
        error: ErrorBody {
            code: failure.code,
            message: &failure.message,
        },
    })
}

/// `{"receipt":[…],"error":{…}}`: a receipt refused for the listed ids.
pub fn receipt_err(ids: &[String], failure: &Failure) -> Bytes {
    encode(&ReceiptErr {
        receipt: ids,
        error: ErrorBody {
            code: failure.code,
            message: &failure.message,
        },
    })
}

/// One refusal for ids refused for different reasons: the code of the first refused id, and
/// a message naming each id with its reason (ids sharing the first one's reason are simply
/// listed once with it).
pub fn receipt_refusal(refused: &[(String, Failure)]) -> Bytes {
    let ids: Vec<String> = refused.iter().map(|(id, _)| id.clone()).collect();
    let Some((_, first)) = refused.first() else {
        return receipt_err(&ids, &Failure::internal("nothing was refused"));
    };
    if refused.iter().all(|(_, f)| f == first) {
        return receipt_err(&ids, first);
    }
    let message = refused
        .iter()
        .map(|(id, f)| format!("{id}: {}", f.message))
        .collect::<Vec<_>>()
        .join("; ");
    receipt_err(&ids, &Failure::new(first.code, message))
}
