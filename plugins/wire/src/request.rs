//! Requests on `chat/{me}/rpc` (contract "Requests"): the envelope every request shares, parsed
//! once, and the trait a component implements to answer some of the ops. The broker's router
//! dispatches by `op` and writes the reply envelope; handlers see only their own fields and
//! return a result value or a [`Failure`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::json::{self, Object};
use crate::reply::{self, Failure};

/// Largest request payload; requests are small, so anything bigger is a mistake or abuse. The
/// largest is a `media.upload` with its 16 KiB preview, hence 24 KiB.
pub const MAX_RPC_BYTES: usize = 24 * 1024;

/// The ops of the contract, grouped by the component that answers them. An op of the contract
/// that no handler answers is refused as a service this server does not run; any other op as
/// unknown.
pub mod ops {
    /// Messaging: reads from the store and group changes (chatd-core).
    pub const CHAT: &[&str] = &[
        "history",
        "conversations",
        "group.info",
        "group.create",
        "group.add",
        "group.remove",
        "group.promote",
        "group.demote",
        "group.leave",
        "group.rename",
    ];

    /// Media uploads and downloads (chatd-media).
    pub const MEDIA: &[&str] = &["media.upload", "media.download"];

    /// Device tokens for push notifications (push-bridge).
    pub const PUSH: &[&str] = &["push.register", "push.unregister"];

    /// Presence of several users at once (the broker).
    pub const PRESENCE: &[&str] = &["presence.get"];

    /// Profiles (display name, avatar) and finding a user by exact id (chatd-core).
    pub const PROFILES: &[&str] = &["profile.set", "profile.get", "user.find"];

    /// Whether `op` is an op of the contract.
    pub fn in_contract(op: &str) -> bool {
        [CHAT, MEDIA, PUSH, PRESENCE, PROFILES]
            .iter()
            .any(|group| group.contains(&op))
    }
}

/// A request whose envelope passed its checks: its correlation id, op and all fields.
#[derive(Clone, Debug)]
pub struct Request {
    /// The client's `rid`.
    pub rid: String,
    /// The `op`.
    pub op: String,
    /// Every field (including `rid` and `op`), for the op's own checks.
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

/// Who asks: the user and the MQTT client id of the device the request came from.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The authenticated user.
    pub user: &'a str,
    /// The client id of the requesting connection (`{user}:{device}` for named devices).
    pub client_id: &'a str,
}

/// The `result` of a successful request, already serialised (so that a handler's typed value
/// is encoded once, in its own field order).
#[derive(Debug)]
pub struct Answer(Box<RawValue>);

impl Answer {
    /// Serialises `value` as the result.
    pub fn of<T: Serialize>(value: &T) -> Result<Answer, Failure> {
        serde_json::value::to_raw_value(value)
            .map(Answer)
            .map_err(|_| Failure::internal("reply could not be encoded"))
    }

    /// The result as JSON text.
    pub fn json(&self) -> &RawValue {
        &self.0
    }
}

/// What a handler's answer resolves to.
pub type Outcome = Result<Answer, Failure>;

/// The future of one answer.
pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A component that answers some of the ops of `chat/{me}/rpc`, registered with the broker's
/// router at start.
pub trait RpcHandler: Send + Sync + 'static {
    /// The ops this handler answers; no two handlers may claim the same op.
    fn ops(&self) -> &'static [&'static str];

    /// Answers `request` (whose `op` is one of [`RpcHandler::ops`]) for `caller`.
    fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a>;
}

/// The reply to `request`: `{"rid","ok":true,"result"}` or `{"rid","ok":false,"error"}`.
pub fn reply(request: &Request, outcome: &Outcome) -> Bytes {
    match outcome {
        Ok(answer) => reply::rpc_ok(&request.rid, answer.json()),
        Err(failure) => reply::rpc_err(Some(&request.rid), failure),
    }
}

/// Why a handler could not be registered (a mistake in how the server is assembled).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Two handlers claim one op.
    #[error("two handlers answer the op `{0}`")]
    Taken(&'static str),
    /// A handler claims an op the contract does not have.
    #[error("the op `{0}` is not in the contract (chatd_wire::request::ops)")]
    NotInContract(&'static str),
}

/// Dispatches each request by its `op` to the handler registered for it and writes the reply
/// envelope: the one place a request is parsed and answered.
#[derive(Default)]
pub struct RpcRouter {
    handlers: HashMap<&'static str, Arc<dyn RpcHandler>>,
}

impl RpcRouter {
    /// A router that answers nothing yet.
    pub fn new() -> RpcRouter {
        RpcRouter::default()
    }

    /// Registers `handler` for every op it lists.
    pub fn register(&mut self, handler: Arc<dyn RpcHandler>) -> Result<(), RouterError> {
        for op in handler.ops() {
            if !ops::in_contract(op) {
                return Err(RouterError::NotInContract(op));
            }
            if self.handlers.contains_key(op) {
                return Err(RouterError::Taken(op));
            }
        }
        for op in handler.ops() {
            self.handlers.insert(op, handler.clone());
        }
        Ok(())
    }

    /// The reply to one payload published by `caller` on `chat/{me}/rpc`.
    pub async fn answer(&self, caller: Caller<'_>, payload: &[u8]) -> Bytes {
        let request = match parse(payload) {
            Ok(request) => request,
            Err(refusal) => return refusal,
        };
        let outcome = match self.handlers.get(request.op.as_str()) {
            Some(handler) => handler.answer(caller, &request).await,
            None if ops::in_contract(&request.op) => Err(Failure::bad(format!(
                "`{}` is not available: that service is not configured on this server",
                request.op
            ))),
            None => Err(Failure::bad(format!("unknown op `{}`", request.op))),
        };
        reply(&request, &outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn the_envelope_is_checked_before_any_handler() {
        let no_rid = parse(br#"{"op":"history"}"#).unwrap_err();
        assert_eq!(json(&no_rid)["error"]["code"], "bad_request");
        assert!(json(&no_rid).get("rid").is_none());
        let no_op = parse(br#"{"rid":"r1"}"#).unwrap_err();
        assert_eq!(json(&no_op)["rid"], "r1");
        assert!(parse(b"[1]").is_err());
        let big = format!(
            r#"{{"rid":"r","op":"x","pad":"{}"}}"#,
            "a".repeat(MAX_RPC_BYTES)
        );
        assert_eq!(
            json(&parse(big.as_bytes()).unwrap_err())["error"]["code"],
            "too_large"
        );
        let ok = parse(br#"{"rid":"r2","op":"history","with":"bob"}"#).unwrap();
        assert_eq!((ok.rid.as_str(), ok.op.as_str()), ("r2", "history"));
    }

    #[test]
    fn the_reply_keeps_the_results_field_order() {
        #[derive(Serialize)]
        struct Page {
            zeta: u8,
            alpha: u8,
        }
        let request = parse(br#"{"rid":"r","op":"x"}"#).unwrap();
        let answer = Answer::of(&Page { zeta: 1, alpha: 2 });
        let text = reply(&request, &answer);
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            r#"{"rid":"r","ok":true,"result":{"zeta":1,"alpha":2}}"#
        );
        let refused = reply(&request, &Err(Failure::bad("no")));
        assert_eq!(json(&refused)["error"]["message"], "no");
    }

    /// Answers `history` with the caller's name; claims whatever ops it is given.
    struct Echo(&'static [&'static str]);

    impl RpcHandler for Echo {
        fn ops(&self) -> &'static [&'static str] {
            self.0
        }

        fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
            let outcome = match request.obj.get("fail") {
                Some(_) => Err(Failure::bad("asked to fail")),
                None => Answer::of(&(caller.user, &request.op)),
            };
            Box::pin(std::future::ready(outcome))
        }
    }

    /// Runs a future that is ready at once (the handlers here never wait).
    fn now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the handler waited"),
        }
    }

    #[test]
    fn the_router_dispatches_by_op_and_refuses_the_rest() {
        let mut router = RpcRouter::new();
        router.register(Arc::new(Echo(&["history"]))).unwrap();
        assert!(matches!(
            router.register(Arc::new(Echo(&["conversations", "history"]))),
            Err(RouterError::Taken("history"))
        ));
        assert!(matches!(
            router.register(Arc::new(Echo(&["dance"]))),
            Err(RouterError::NotInContract("dance"))
        ));
        let caller = Caller {
            user: "alice",
            client_id: "alice:phone",
        };
        let ask = |payload: &str| json(&now(router.answer(caller, payload.as_bytes())));
        assert_eq!(
            ask(r#"{"rid":"1","op":"history"}"#),
            serde_json::json!({"rid":"1","ok":true,"result":["alice","history"]})
        );
        let failed = ask(r#"{"rid":"2","op":"history","fail":true}"#);
        assert_eq!(failed["rid"], "2");
        assert_eq!(failed["error"]["message"], "asked to fail");
        // A refused registration registered nothing: `conversations` has no handler.
        assert_eq!(
            ask(r#"{"rid":"3","op":"conversations"}"#)["error"]["message"],
            "`conversations` is not available: that service is not configured on this server"
        );
        assert_eq!(
            ask(r#"{"rid":"4","op":"dance"}"#)["error"]["message"],
            "unknown op `dance`"
        );
        assert!(ask(r#"{"op":"history"}"#).get("rid").is_none());
    }
}
