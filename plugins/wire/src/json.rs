//! Reading client JSON: one place that turns raw payloads and fields into values or into
//! `bad_request` failures with messages a client developer can act on.

use serde_json::{Map, Value};

use super::reply::{ErrorCode, Failure};

/// A parsed JSON object payload.
pub type Object = Map<String, Value>;

/// Parses a payload that must be a non-empty UTF-8 JSON object of at most `max_bytes`.
pub fn parse_object(payload: &[u8], max_bytes: usize) -> Result<Object, Failure> {
    if payload.is_empty() {
        return Err(Failure::bad("payload is empty; expected a JSON object"));
    }
    if payload.len() > max_bytes {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!(
                "payload is {} bytes; at most {max_bytes} are allowed",
                payload.len()
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Failure::bad(format!("payload is not valid UTF-8: {e}")))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Failure::bad(format!(
            "payload must be a JSON object, not {}",
            kind_of(&other)
        ))),
        Err(e) => Err(Failure::bad(format!("payload is not valid JSON: {e}"))),
    }
}

/// Reads the correlation field (`cid` or `rid`): a string of 1..=128 characters. The error
/// case leaves the id unread, so the answer carries none.
pub fn correlation_id<'a>(obj: &'a Object, name: &str) -> Result<&'a str, Failure> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(Failure::bad(format!("`{name}` is required"))),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if (1..=128).contains(&n) {
                Ok(s)
            } else {
                Err(Failure::bad(format!(
                    "`{name}` must be 1 to 128 characters, not {n}"
                )))
            }
        }
        Some(other) => Err(Failure::bad(format!(
            "`{name}` must be a string, not {}",
            kind_of(other)
        ))),
    }
}

/// Refuses the first field not in `allowed`, naming it.
pub fn only_fields(obj: &Object, allowed: &[&str]) -> Result<(), Failure> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Failure::bad(format!("unknown field `{k}`"))),
        None => Ok(()),
    }
}

/// A required string field.
pub fn required_str<'a>(obj: &'a Object, name: &str) -> Result<&'a str, Failure> {
    optional_str(obj, name)?.ok_or_else(|| Failure::bad(format!("`{name}` is required")))
}

/// An optional string field; `null` counts as absent.
pub fn optional_str<'a>(obj: &'a Object, name: &str) -> Result<Option<&'a str>, Failure> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Failure::bad(format!(
            "`{name}` must be a string, not {}",
            kind_of(other)
        ))),
    }
}

/// True when the field is present with a non-null value.
pub fn present(obj: &Object, name: &str) -> bool {
    !matches!(obj.get(name), None | Some(Value::Null))
}

/// A JSON type name for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
