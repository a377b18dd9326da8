//! Checks one `chat/{me}/receipt` payload against the contract ("Receipts") before it goes
//! to the committer, which then decides per id (unknown, not received by `me`, no change).

use serde_json::Value;

use crate::records::chat::Status;
use chatd_wire::ids::valid_message_id;
use chatd_wire::json;
use chatd_wire::reply::Failure;

/// Most ids one receipt publish may name.
pub const MAX_RECEIPT_IDS: usize = 100;

/// Largest receipt payload: 100 ids with generous room for JSON whitespace.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;

/// Fields a receipt may carry.
const RECEIPT_FIELDS: &[&str] = &["ids", "status"];

/// A receipt that passed every check that needs no store access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptDraft {
    /// The message ids, well-formed, without repeats, in the order given.
    pub ids: Vec<String>,
    /// `Delivered` or `Read` (never `Sent`).
    pub status: Status,
}

/// A receipt refused as a whole: every id that could be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadReceipt {
    /// The string entries of `ids`, when there was such an array (else empty).
    pub ids: Vec<String>,
    /// Why (always `bad_request` or `too_large`).
    pub failure: Failure,
}

/// Parses and checks a receipt payload.
pub fn parse_receipt(payload: &[u8]) -> Result<ReceiptDraft, BadReceipt> {
    let obj = json::parse_object(payload, MAX_RECEIPT_BYTES).map_err(|failure| BadReceipt {
        ids: Vec::new(),
        failure,
    })?;
    let readable: Vec<String> = match obj.get("ids") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    check(&obj).map_err(|failure| BadReceipt {
        ids: dedup(readable),
        failure,
    })
}

fn check(obj: &json::Object) -> Result<ReceiptDraft, Failure> {
    json::only_fields(obj, RECEIPT_FIELDS)?;
    let status = match json::required_str(obj, "status")? {
        "delivered" => Status::Delivered,
        "read" => Status::Read,
        other => {
            return Err(Failure::bad(format!(
                "`status` must be \"delivered\" or \"read\", not {other:?}"
            )))
        }
    };
    let items = match obj.get("ids") {
        None | Some(Value::Null) => return Err(Failure::bad("`ids` is required")),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Failure::bad(format!(
                "`ids` must be an array of message ids, not {}",
                json::kind_of(other)
            )))
        }
    };
    if items.is_empty() || items.len() > MAX_RECEIPT_IDS {
        return Err(Failure::bad(format!(
            "`ids` must hold 1 to {MAX_RECEIPT_IDS} message ids, not {}",
            items.len()
        )));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(id) if valid_message_id(id) => ids.push(id.clone()),
            Value::String(id) => {
                return Err(Failure::bad(format!(
                    "`ids` holds something that is not a message id: {id:?}"
                )))
            }
            other => {
                return Err(Failure::bad(format!(
                    "`ids` must hold strings, not {}",
                    json::kind_of(other)
                )))
            }
        }
    }
    Ok(ReceiptDraft {
        ids: dedup(ids),
        status,
    })
}

/// Drops repeated ids, keeping the first occurrence of each.
fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_wire::reply::ErrorCode;

    const A: &str = "1732790000123-00001-00000";
    const B: &str = "1732790000123-00001-00001";

    #[test]
    fn accepts_and_dedups() {
        let d =
            parse_receipt(format!(r#"{{"ids":["{A}","{B}","{A}"],"status":"read"}}"#).as_bytes())
                .expect("accepted");
        assert_eq!(d.ids, vec![A.to_string(), B.to_string()]);
        assert_eq!(d.status, Status::Read);
    }

    #[test]
    fn refusals() {
        let many: Vec<String> = (0..101)
            .map(|i| format!("1732790000123-00001-{i:05}"))
            .collect();
        let too_many = serde_json::json!({"ids": many, "status": "read"}).to_string();
        let cases: Vec<(String, usize, &str)> = vec![
            ("{nope".into(), 0, "not valid JSON"),
            (
                format!(r#"{{"ids":["{A}"],"status":"seen"}}"#),
                1,
                "`status` must be",
            ),
            (
                format!(r#"{{"ids":["{A}"],"status":"sent"}}"#),
                1,
                "`status` must be",
            ),
            (format!(r#"{{"ids":["{A}"]}}"#), 1, "`status` is required"),
            (
                format!(r#"{{"ids":["{A}"],"status":"read","x":1}}"#),
                1,
                "unknown field `x`",
            ),
            (r#"{"status":"read"}"#.into(), 0, "`ids` is required"),
            (
                r#"{"ids":"x","status":"read"}"#.into(),
                0,
                "must be an array",
            ),
            (r#"{"ids":[],"status":"read"}"#.into(), 0, "1 to 100"),
            (too_many, 101, "1 to 100"),
            (
                format!(r#"{{"ids":["{A}","nope"],"status":"read"}}"#),
                2,
                "not a message id",
            ),
            (
                format!(r#"{{"ids":["{A}",7],"status":"read"}}"#),
                1,
                "must hold strings",
            ),
        ];
        for (payload, n, needle) in cases {
            let bad = parse_receipt(payload.as_bytes()).expect_err(&payload);
            assert_eq!(bad.failure.code, ErrorCode::BadRequest, "{payload}");
            assert_eq!(bad.ids.len(), n, "{payload}");
            assert!(bad.failure.message.contains(needle), "{payload}: {bad:?}");
        }
    }
}
