//! Requests on `chat/{me}/rpc` (contract "Requests"): parsing, dispatch and replies.

use bytes::Bytes;
use serde_json::Value;

use super::history::{self, Window};
use super::json::{self, Object};
use super::reply::{self, Failure};
use crate::ids::valid_message_id;
use crate::store::{KvStore, StoreError};

/// Largest request payload; requests are small, so anything bigger is a mistake or abuse.
pub const MAX_RPC_BYTES: usize = 16 * 1024;

/// Page size of `history` when the request names none.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Largest page of `history`.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// Operations of the contract that belong to features this server does not have yet; they
/// are refused with a message saying so rather than "unknown".
const LATER_OPS: &[&str] = &[
    "group.create",
    "group.add",
    "group.remove",
    "group.promote",
    "group.demote",
    "group.leave",
    "group.rename",
    "group.info",
    "media.upload",
    "media.download",
    "push.register",
    "push.unregister",
    "presence.get",
];

/// Answers one request of `me`, given the committed watermark.
pub fn handle(store: &dyn KvStore, committed: &str, me: &str, payload: &[u8]) -> Bytes {
    let obj = match json::parse_object(payload, MAX_RPC_BYTES) {
        Ok(obj) => obj,
        Err(f) => return reply::rpc_err(None, &f),
    };
    let rid = match json::correlation_id(&obj, "rid") {
        Ok(rid) => rid,
        Err(f) => return reply::rpc_err(None, &f),
    };
    match dispatch(store, committed, me, rid, &obj) {
        Ok(bytes) => bytes,
        Err(f) => reply::rpc_err(Some(rid), &f),
    }
}

fn dispatch(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    rid: &str,
    obj: &Object,
) -> Result<Bytes, Failure> {
    let op = json::required_str(obj, "op")?;
    match op {
        "history" => {
            json::only_fields(
                obj,
                &["rid", "op", "with", "group", "before", "after", "limit"],
            )?;
            let (with, window) = history_args(obj)?;
            let page = history::page(store, committed, me, with, &window).map_err(read_failure)?;
            Ok(reply::rpc_ok(rid, page))
        }
        "conversations" => {
            json::only_fields(obj, &["rid", "op"])?;
            let list = history::conversations(store, me).map_err(read_failure)?;
            Ok(reply::rpc_ok(rid, list))
        }
        op if LATER_OPS.contains(&op) => Err(Failure::bad(format!(
            "`{op}` is not supported by this server yet"
        ))),
        op => Err(Failure::bad(format!("unknown op `{op}`"))),
    }
}

/// Reads and checks the arguments of `history`.
fn history_args(obj: &Object) -> Result<(&str, Window), Failure> {
    if json::present(obj, "group") {
        return Err(Failure::bad(
            "group history is not supported by this server yet",
        ));
    }
    let with = json::required_str(obj, "with")?;
    chatd_auth::validate_user_id(with)
        .map_err(|e| Failure::bad(format!("`with` is not a valid user id: {e}")))?;
    let id_arg = |name: &str| -> Result<Option<String>, Failure> {
        match json::optional_str(obj, name)? {
            None => Ok(None),
            Some(id) if valid_message_id(id) => Ok(Some(id.to_string())),
            Some(id) => Err(Failure::bad(format!(
                "`{name}` is not a message id: {id:?}"
            ))),
        }
    };
    let before = id_arg("before")?;
    let after = id_arg("after")?;
    let limit = match obj.get("limit") {
        None | Some(Value::Null) => DEFAULT_HISTORY_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_HISTORY_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                return Err(Failure::bad(format!(
                    "`limit` must be an integer from 1 to {MAX_HISTORY_LIMIT}, not {v}"
                )))
            }
        },
    };
    Ok((
        with,
        Window {
            before,
            after,
            limit,
        },
    ))
}

/// A store failure while answering a request, as the client sees it.
fn read_failure(e: StoreError) -> Failure {
    tracing::error!("store read failed: {e}");
    Failure::internal("the store could not be read; retry")
}
