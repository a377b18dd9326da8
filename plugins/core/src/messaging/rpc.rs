//! The read-only requests of `chat/{me}/rpc` that messaging answers from the store (history,
//! conversations, group.info): their arguments and results. The envelope is parsed and the
//! reply written by the broker's router.

use serde_json::Value;

use super::history::{self, Window};
use super::validate::Target;
use super::{conversation_list, group_ops, group_read};
use crate::accounts::{AccountError, AccountStatus, Accounts};
use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
use chatd_wire::ids::valid_message_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::Failure;
use chatd_wire::request::{Answer, Outcome, Request};

/// Page size of `history` when the request names none.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Largest page of `history`.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// Answers one read-only request of `me` from what the log has committed; lists stop before
/// their reply passes `reply_budget` bytes.
pub fn answer(
    log: &dyn MessageLog,
    accounts: &Accounts,
    me: &str,
    request: &Request,
    reply_budget: usize,
) -> Outcome {
    let obj = &request.obj;
    match request.op.as_str() {
        "history" => {
            json::only_fields(
                obj,
                &["rid", "op", "with", "group", "before", "after", "limit"],
            )?;
            let (target, window) = history_args(obj)?;
            match target {
                Target::User(with) => {
                    let floor = history_floor(accounts, me)?;
                    let page =
                        history::page(log, floor.as_deref(), me, &with, &window, reply_budget)
                            .map_err(read_failure)?;
                    Answer::of(&page)
                }
                Target::Group(group) => {
                    let page = group_read::page(log, me, &group, &window, reply_budget)?;
                    Answer::of(&page)
                }
            }
        }
        "conversations" => {
            let query = conversation_list::parse(obj)?;
            let list =
                conversation_list::page(log, me, &query, reply_budget).map_err(read_failure)?;
            Answer::of(&list)
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
            let info = group_read::info(log, me, &group, message.as_deref(), after, reply_budget)?;
            Answer::of(&info)
        }
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

/// The history floor of `me`: a reclaimed id sees no 1:1 message at or below it.
fn history_floor(accounts: &Accounts, me: &str) -> Result<Option<String>, Failure> {
    match accounts.status(me) {
        Ok(AccountStatus::Live { floor }) => Ok(floor),
        Ok(_) => Ok(None),
        Err(e) => Err(account_failure("the account", e)),
    }
}

/// A store failure while answering a request, as the client sees it.
pub fn read_failure(e: RecordError) -> Failure {
    read_failure_of("the store", e)
}

/// A failed account lookup of `what`, as the client sees it (see [`read_failure_of`]).
pub fn account_failure(what: &str, e: AccountError) -> Failure {
    match e {
        AccountError::Store(e) => read_failure_of(what, e),
        other => {
            tracing::error!("account lookup failed: {other}");
            Failure::internal(format!("{what} could not be looked up"))
        }
    }
}

/// A failed read of `what`, as the client sees it: `unavailable` when the store could not be
/// reached or failed (a database restarting, a failover: trying again later works),
/// `internal` when a stored record is unreadable.
pub fn read_failure_of(what: &str, e: RecordError) -> Failure {
    tracing::error!("store read failed: {e}");
    match e {
        RecordError::Store(_) => Failure::unavailable(format!(
            "{what} could not be read: the server's storage is failing; retry later"
        )),
        RecordError::Corrupt { .. } => Failure::internal(format!("{what} could not be read")),
    }
}
