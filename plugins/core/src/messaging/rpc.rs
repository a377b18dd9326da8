//! Requests on `chat/{me}/rpc` (contract "Requests"): parsing, dispatch and replies.

use bytes::Bytes;
use serde_json::Value;

use super::history::{self, Window};
use super::validate::Target;
use super::{conversation_list, group_ops, group_read};
use chatd_kv::{KvStore, StoreError};
use chatd_wire::ids::valid_message_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::{self, Failure};

/// Largest request payload; requests are small, so anything bigger is a mistake or abuse.
pub const MAX_RPC_BYTES: usize = 16 * 1024;

/// Page size of `history` when the request names none.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Largest page of `history`.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// Operations of the contract that other parts of the server answer before a request gets
/// here (the broker's presence, media and push services); reaching this point means that part
/// is not configured.
const ELSEWHERE_OPS: &[&str] = &[
    "media.upload",
    "media.download",
    "push.register",
    "push.unregister",
    "presence.get",
];

/// A request that parsed: its correlation id, op and all fields.
pub struct Request {
    /// The client's `rid`.
    pub rid: String,
    /// The `op`.
    pub op: String,
    /// Every field, for the op's own checks.
    pub obj: Object,
}

/// Parses a request payload; a refusal is returned as the reply to publish.
pub fn parse(payload: &[u8]) -> Result<Request, Bytes> {
    let obj = json::parse_object(payload, MAX_RPC_BYTES).map_err(|f| reply::rpc_err(None, &f))?;
    let rid = json::correlation_id(&obj, "rid")
        .map_err(|f| reply::rpc_err(None, &f))?
        .to_string();
    let op = json::required_str(&obj, "op")
        .map_err(|f| reply::rpc_err(Some(&rid), &f))?
        .to_string();
    Ok(Request { rid, op, obj })
}

/// Answers one read-only request of `me`, given the committed watermark; lists stop before
/// their reply passes `reply_budget` bytes.
pub fn answer(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    request: &Request,
    reply_budget: usize,
) -> Bytes {
    match dispatch(store, committed, me, request, reply_budget) {
        Ok(bytes) => bytes,
        Err(f) => reply::rpc_err(Some(&request.rid), &f),
    }
}

fn dispatch(
    store: &dyn KvStore,
    committed: &str,
    me: &str,
    request: &Request,
    reply_budget: usize,
) -> Result<Bytes, Failure> {
    let (rid, obj) = (request.rid.as_str(), &request.obj);
    match request.op.as_str() {
        "history" => {
            json::only_fields(
                obj,
                &["rid", "op", "with", "group", "before", "after", "limit"],
            )?;
            let (target, window) = history_args(obj)?;
            match target {
                Target::User(with) => {
                    let page = history::page(store, committed, me, &with, &window, reply_budget)
                        .map_err(read_failure)?;
                    Ok(reply::rpc_ok(rid, page))
                }
                Target::Group(group) => {
                    let page =
                        group_read::page(store, committed, me, &group, &window, reply_budget)?;
                    Ok(reply::rpc_ok(rid, page))
                }
            }
        }
        "conversations" => {
            let query = conversation_list::parse(obj)?;
            let list = conversation_list::page(store, committed, me, &query, reply_budget)
                .map_err(read_failure)?;
            Ok(reply::rpc_ok(rid, list))
        }
        "group.info" => {
            json::only_fields(obj, &["rid", "op", "group", "message", "after"])?;
            let group = group_ops::group_id(obj)?;
            let message = message_id_arg(obj, "message")?;
            let after = json::optional_str(obj, "after")?;
            if let Some(after) = after {
                chatd_auth::validate_user_id(after)
                    .map_err(|e| Failure::bad(format!("`after` is not a valid user id: {e}")))?;
            }
            let info = group_read::info(
                store,
                committed,
                me,
                &group,
                message.as_deref(),
                after,
                reply_budget,
            )?;
            Ok(reply::rpc_ok(rid, info))
        }
        op if ELSEWHERE_OPS.contains(&op) => Err(Failure::bad(format!(
            "`{op}` is not available: that service is not configured on this server"
        ))),
        op => Err(Failure::bad(format!("unknown op `{op}`"))),
    }
}

/// An optional message id argument.
fn message_id_arg(obj: &Object, name: &str) -> Result<Option<String>, Failure> {
    match json::optional_str(obj, name)? {
        None => Ok(None),
        Some(id) if valid_message_id(id) => Ok(Some(id.to_string())),
        Some(id) => Err(Failure::bad(format!(
            "`{name}` is not a message id: {id:?}"
        ))),
    }
}

/// Reads and checks the arguments of `history`.
fn history_args(obj: &Object) -> Result<(Target, Window), Failure> {
    let target = match (
        json::optional_str(obj, "with")?,
        json::present(obj, "group"),
    ) {
        (Some(_), true) => return Err(Failure::bad("give either `with` or `group`, not both")),
        (None, false) => return Err(Failure::bad("`with` (a user) or `group` is required")),
        (Some(with), false) => {
            chatd_auth::validate_user_id(with)
                .map_err(|e| Failure::bad(format!("`with` is not a valid user id: {e}")))?;
            Target::User(with.to_string())
        }
        (None, true) => Target::Group(group_ops::group_id(obj)?),
    };
    let before = message_id_arg(obj, "before")?;
    let after = message_id_arg(obj, "after")?;
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
        target,
        Window {
            before,
            after,
            limit,
        },
    ))
}

/// A store failure while answering a request, as the client sees it.
pub fn read_failure(e: StoreError) -> Failure {
    tracing::error!("store read failed: {e}");
    Failure::internal("the store could not be read; retry")
}
