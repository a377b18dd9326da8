//! Checks one `chat/{me}/send` payload against the contract ("Sending") before it goes near
//! the store, so the committer only ever sees well-formed messages.
//!
//! Every send is parsed here, so the common case takes a fast path: a well-formed payload is
//! read straight into borrowed strings ([`Plain`]). Anything else (an unknown or repeated
//! field, a field of the wrong type, a missing or odd `cid`) is parsed again as a JSON object
//! and checked field by field, which gives the error the contract's examples show.

use std::borrow::Cow;

use chatd_wire::ids::valid_message_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::{ErrorCode, Failure};
use serde::Deserialize;

/// Fields a send may carry. `from` is accepted and ignored: the sender is always the
/// authenticated user.
const SEND_FIELDS: &[&str] = &[
    "cid", "to", "group", "type", "text", "reply_to", "media", "from",
];

/// Message types that reference uploaded media.
const MEDIA_TYPES: &[&str] = &["image", "video", "audio", "file"];

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A 1:1 message to this user.
    User(String),
    /// A message to every member of this group.
    Group(String),
}

/// A send that passed every check that needs no store access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The client's id for the message (retries repeat it).
    pub cid: String,
    /// The recipient user or group.
    pub target: Target,
    /// `text`, `image`, `video`, `audio` or `file`.
    pub kind: String,
    /// The text, or a media message's optional caption.
    pub text: Option<String>,
    /// The referenced media id (media types only).
    pub media: Option<String>,
    /// The message answered, if any.
    pub reply_to: Option<String>,
}

/// A refused send: the failure, and the `cid` when it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The client's id, echoed in the ack when readable.
    pub cid: Option<String>,
    /// Why.
    pub failure: Failure,
}

/// Largest send payload: the text limit with room for JSON escaping (up to 6 bytes per
/// byte for `\u00XX`) and the other fields.
pub fn max_payload(max_text_bytes: usize) -> usize {
    max_text_bytes.saturating_mul(6).saturating_add(4096)
}

/// Parses and checks a send payload.
pub fn parse_send(payload: &[u8], max_text_bytes: usize) -> Result<Draft, Rejected> {
    if payload.len() <= max_payload(max_text_bytes) {
        if let Ok(plain) = serde_json::from_slice::<Plain>(payload) {
            if let Some(cid) = plain.cid.as_deref().filter(|c| correlation_id_ok(c)) {
                return check(&plain, cid, max_text_bytes).map_err(|failure| Rejected {
                    cid: Some(cid.to_string()),
                    failure,
                });
            }
        }
    }
    let obj = json::parse_object(payload, max_payload(max_text_bytes))
        .map_err(|failure| Rejected { cid: None, failure })?;
    let cid =
        json::correlation_id(&obj, "cid").map_err(|failure| Rejected { cid: None, failure })?;
    check(&obj, cid, max_text_bytes).map_err(|failure| Rejected {
        cid: Some(cid.to_string()),
        failure,
    })
}

/// True for ids the server could have issued for media and groups: 1–64 characters of
/// `A-Z a-z 0-9 _ . -` (the user id alphabet, so they are safe inside store keys).
pub fn valid_object_id(id: &str) -> bool {
    chatd_auth::validate_user_id(id).is_ok()
}

/// True for a `cid` that [`json::correlation_id`] takes.
fn correlation_id_ok(cid: &str) -> bool {
    (1..=128).contains(&cid.chars().count())
}

/// A send whose fields are all known, each once, and each a string or null (`from`: anything):
/// read without building a map, its strings borrowed from the payload unless escaped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain<'a> {
    #[serde(borrow)]
    cid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reply_to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media: Option<Cow<'a, str>>,
    /// Accepted and ignored (the sender is the authenticated user); parsed as a value, as
    /// the slow path does, so that both refuse the same payloads.
    #[allow(dead_code)]
    from: Option<serde_json::Value>,
}

/// A send's fields as [`check`] reads them, in the order it reads them (so the first error
/// is the same whichever way the payload was parsed).
trait SendFields {
    /// Refuses a field the contract does not define.
    fn only_known(&self) -> Result<(), Failure>;
    /// The string field `name` (one of [`SEND_FIELDS`]); `null` counts as absent.
    fn text_field(&self, name: &str) -> Result<Option<&str>, Failure>;
}

impl SendFields for Object {
    fn only_known(&self) -> Result<(), Failure> {
        json::only_fields(self, SEND_FIELDS)
    }

    fn text_field(&self, name: &str) -> Result<Option<&str>, Failure> {
        json::optional_str(self, name)
    }
}

impl SendFields for Plain<'_> {
    fn only_known(&self) -> Result<(), Failure> {
        // Unknown fields failed the fast parse.
        Ok(())
    }

    fn text_field(&self, name: &str) -> Result<Option<&str>, Failure> {
        // Fields of another type failed the fast parse.
        Ok(match name {
            "cid" => self.cid.as_deref(),
            "to" => self.to.as_deref(),
            "group" => self.group.as_deref(),
            "type" => self.kind.as_deref(),
            "text" => self.text.as_deref(),
            "reply_to" => self.reply_to.as_deref(),
            "media" => self.media.as_deref(),
            _ => None,
        })
    }
}

fn check(obj: &impl SendFields, cid: &str, max_text_bytes: usize) -> Result<Draft, Failure> {
    obj.only_known()?;
    let kind = obj
        .text_field("type")?
        .ok_or_else(|| Failure::bad("`type` is required"))?;
    let is_media = MEDIA_TYPES.contains(&kind);
    if !is_media && kind != "text" {
        return Err(Failure::bad(format!(
            "`type` must be one of text, image, video, audio, file, not {kind:?}"
        )));
    }
    let target = match (obj.text_field("to")?, obj.text_field("group")?) {
        (Some(_), Some(_)) => {
            return Err(Failure::bad(
                "give either `to` (a user) or `group`, not both",
            ))
        }
        (None, None) => return Err(Failure::bad("`to` is required (or `group`)")),
        (Some(to), None) => {
            chatd_auth::validate_user_id(to)
                .map_err(|e| Failure::bad(format!("`to` is not a valid user id: {e}")))?;
            Target::User(to.to_string())
        }
        (None, Some(group)) => {
            if !valid_object_id(group) {
                return Err(Failure::bad(format!(
                    "`group` is not a group id: {group:?}"
                )));
            }
            Target::Group(group.to_string())
        }
    };
    let text = obj.text_field("text")?;
    match text {
        None if !is_media => return Err(Failure::bad("`text` is required")),
        Some("") => return Err(Failure::bad("`text` must not be empty")),
        Some(t) if t.len() > max_text_bytes => {
            return Err(Failure::new(
                ErrorCode::TooLarge,
                format!(
                    "`text` is {} bytes; at most {max_text_bytes} are allowed",
                    t.len()
                ),
            ))
        }
        _ => {}
    }
    let reply_to = obj.text_field("reply_to")?;
    if let Some(r) = reply_to {
        if !valid_message_id(r) {
            return Err(Failure::bad(format!(
                "`reply_to` is not a message id: {r:?}"
            )));
        }
    }
    let media = obj.text_field("media")?;
    match (is_media, media) {
        (false, Some(_)) => return Err(Failure::bad("`media` is only allowed on media messages")),
        (true, None) => {
            return Err(Failure::bad(format!(
                "a `{kind}` message needs `media`: an id from media.upload"
            )))
        }
        (true, Some(m)) if !valid_object_id(m) => {
            return Err(Failure::bad(format!("`media` is not a media id: {m:?}")))
        }
        _ => {}
    }
    Ok(Draft {
        cid: cid.to_string(),
        target,
        kind: kind.to_string(),
        text: text.map(str::to_string),
        media: media.map(str::to_string),
        reply_to: reply_to.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16;

    fn ok(payload: &str) -> Draft {
        match parse_send(payload.as_bytes(), MAX) {
            Ok(d) => d,
            Err(r) => panic!("{payload} refused: {r:?}"),
        }
    }

    fn refused(payload: &[u8]) -> Rejected {
        match parse_send(payload, MAX) {
            Ok(d) => panic!("{:?} accepted: {d:?}", String::from_utf8_lossy(payload)),
            Err(r) => r,
        }
    }

    #[test]
    fn accepts_text() {
        let d = ok(r#"{"cid":"c-1","to":"bob","type":"text","text":"hi"}"#);
        assert_eq!(
            d,
            Draft {
                cid: "c-1".into(),
                target: Target::User("bob".into()),
                kind: "text".into(),
                text: Some("hi".into()),
                media: None,
                reply_to: None
            }
        );
        let d = ok(
            r#"{"cid":"c","to":"b","type":"text","text":"x","from":"mallory","reply_to":"1732790000123-00001-00000"}"#,
        );
        assert_eq!(d.reply_to.as_deref(), Some("1732790000123-00001-00000"));
        // Exactly at the limit, counted in bytes.
        ok(r#"{"cid":"c","to":"b","type":"text","text":"éééééééé"}"#);
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], ErrorCode, Option<&str>, &str)] = &[
            (b"", ErrorCode::BadRequest, None, "empty"),
            (b"\xff\xfe", ErrorCode::BadRequest, None, "UTF-8"),
            (b"{nope", ErrorCode::BadRequest, None, "not valid JSON"),
            (b"[1]", ErrorCode::BadRequest, None, "JSON object"),
            (b"\"hi\"", ErrorCode::BadRequest, None, "JSON object"),
            (
                br#"{"to":"bob","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                None,
                "`cid` is required",
            ),
            (
                br#"{"cid":7,"to":"bob","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                None,
                "`cid` must be a string",
            ),
            (
                br#"{"cid":"","to":"bob","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                None,
                "1 to 128",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":"x","foo":1}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "unknown field `foo`",
            ),
            (
                br#"{"cid":"c","group":"g1","to":"bob","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "not both",
            ),
            (
                br#"{"cid":"c","group":"g/1","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "not a group id",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"image"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "needs `media`",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"file","media":"m/1"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "not a media id",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"sticker","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`type` must be one of",
            ),
            (
                br#"{"cid":"c","to":"bob","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`type` is required",
            ),
            (
                br#"{"cid":"c","to":"bob","type":1,"text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`type` must be a string",
            ),
            (
                br#"{"cid":"c","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`to` is required",
            ),
            (
                br#"{"cid":"c","to":"b/ob","type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`to` is not a valid user id",
            ),
            (
                br#"{"cid":"c","to":["bob"],"type":"text","text":"x"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`to` must be a string",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`text` is required",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":""}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "must not be empty",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":false}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`text` must be a string",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":"12345678901234567"}"#,
                ErrorCode::TooLarge,
                Some("c"),
                "17 bytes",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":"x","reply_to":"abc"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`reply_to` is not a message id",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":"x","reply_to":5}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`reply_to` must be a string",
            ),
            (
                br#"{"cid":"c","to":"bob","type":"text","text":"x","media":"m1"}"#,
                ErrorCode::BadRequest,
                Some("c"),
                "`media` is only allowed",
            ),
        ];
        for (payload, code, cid, needle) in cases {
            let r = refused(payload);
            let shown = String::from_utf8_lossy(payload);
            assert_eq!(r.failure.code, *code, "{shown}: {r:?}");
            assert_eq!(r.cid.as_deref(), *cid, "{shown}");
            assert!(
                r.failure.message.contains(needle),
                "{shown}: {:?}",
                r.failure.message
            );
        }
    }

    #[test]
    fn accepts_media_and_groups() {
        let d = ok(r#"{"cid":"c","group":"g_1","type":"image","media":"m_9c1e","text":"cap"}"#);
        assert_eq!(d.target, Target::Group("g_1".into()));
        assert_eq!(d.media.as_deref(), Some("m_9c1e"));
        assert_eq!(d.text.as_deref(), Some("cap"));
        let d = ok(r#"{"cid":"c","to":"bob","type":"audio","media":"m_1"}"#);
        assert_eq!(d.text, None);
    }

    #[test]
    fn fast_and_object_paths_read_alike() {
        // Escaped strings are copied, not borrowed.
        let d = ok(r#"{"cid":"c\u0031","to":"b\u006fb","type":"text","text":"a\"b"}"#);
        assert_eq!(d.cid, "c1");
        assert_eq!(d.target, Target::User("bob".into()));
        assert_eq!(d.text.as_deref(), Some("a\"b"));
        // A repeated field: the last one counts, as for every other JSON object read.
        let d = ok(r#"{"cid":"c","to":"al","to":"bob","type":"text","text":"x"}"#);
        assert_eq!(d.target, Target::User("bob".into()));
        // `from` may be anything, and nulls count as absent.
        let d = ok(
            r#"{"cid":"c","to":"bob","type":"text","text":"x","from":{"a":[1]},"media":null,"group":null}"#,
        );
        assert_eq!(d.target, Target::User("bob".into()));
        // Not valid JSON either way, even where only `from` is wrong.
        assert!(
            refused(br#"{"cid":"c","to":"bob","type":"text","text":"x","from":1e400}"#)
                .failure
                .message
                .contains("not valid JSON")
        );
        // A `cid` too long is refused without echoing it, whichever field comes first.
        let long = "x".repeat(129);
        let r = refused(
            format!(r#"{{"to":"bob","cid":"{long}","type":"text","text":"x"}}"#).as_bytes(),
        );
        assert_eq!((r.cid, r.failure.code), (None, ErrorCode::BadRequest));
    }

    #[test]
    fn huge_payload_is_too_large() {
        let big = vec![b' '; max_payload(MAX) + 1];
        assert_eq!(refused(&big).failure.code, ErrorCode::TooLarge);
    }
}
