//! Checks one `chat/{me}/send` payload against the contract ("Sending") before it goes near
//! the store, so the committer only ever sees well-formed messages.

use chatd_wire::ids::valid_message_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::{ErrorCode, Failure};

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

fn check(obj: &Object, cid: &str, max_text_bytes: usize) -> Result<Draft, Failure> {
    json::only_fields(obj, SEND_FIELDS)?;
    let kind = json::required_str(obj, "type")?;
    let is_media = MEDIA_TYPES.contains(&kind);
    if !is_media && kind != "text" {
        return Err(Failure::bad(format!(
            "`type` must be one of text, image, video, audio, file, not {kind:?}"
        )));
    }
    let target = match (
        json::optional_str(obj, "to")?,
        json::optional_str(obj, "group")?,
    ) {
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
    let text = json::optional_str(obj, "text")?;
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
    let reply_to = json::optional_str(obj, "reply_to")?;
    if let Some(r) = reply_to {
        if !valid_message_id(r) {
            return Err(Failure::bad(format!(
                "`reply_to` is not a message id: {r:?}"
            )));
        }
    }
    let media = json::optional_str(obj, "media")?;
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
    fn huge_payload_is_too_large() {
        let big = vec![b' '; max_payload(MAX) + 1];
        assert_eq!(refused(&big).failure.code, ErrorCode::TooLarge);
    }
}
