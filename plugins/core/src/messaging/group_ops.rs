//! Reads the group requests that change something (`group.create`, `.add`, `.remove`,
//! `.promote`, `.demote`, `.leave`, `.rename`) into [`GroupOp`]s, checking everything that
//! needs no store access; the committer then applies them in order with the sends.

use std::collections::HashSet;

use serde_json::Value;

use super::validate::valid_object_id;
use chatd_wire::json::{self, Object};
use chatd_wire::reply::{ErrorCode, Failure};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A checked request that changes a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOp {
    /// A new group with the caller as admin and `members` as members.
    Create {
        /// The name.
        name: String,
        /// The other initial members (without the caller), without repeats.
        members: Vec<String>,
    },
    /// Adds users (admins only).
    Add {
        /// The group.
        group: String,
        /// The users.
        users: Vec<String>,
    },
    /// Removes users (admins only).
    Remove {
        /// The group.
        group: String,
        /// The users.
        users: Vec<String>,
    },
    /// Makes members admins (admins only).
    Promote {
        /// The group.
        group: String,
        /// The users.
        users: Vec<String>,
    },
    /// Makes admins plain members (admins only).
    Demote {
        /// The group.
        group: String,
        /// The users.
        users: Vec<String>,
    },
    /// The caller leaves.
    Leave {
        /// The group.
        group: String,
    },
    /// Renames the group (admins only).
    Rename {
        /// The group.
        group: String,
        /// The new name.
        name: String,
    },
}

/// Parses a group request of `me` that changes something; `Ok(None)` when `op` is not one.
pub fn parse(
    op: &str,
    obj: &Object,
    me: &str,
    max_members: usize,
) -> Result<Option<GroupOp>, Failure> {
    // How many users a list may name is judged later, on the list without repeats and only
    // after the caller's rights and the group's existence (on the committer).
    let users = |obj: &Object| user_list(obj, "users");
    let parsed = match op {
        "group.create" => {
            json::only_fields(obj, &["rid", "op", "name", "members"])?;
            let name = name(obj)?;
            let mut members = match obj.get("members") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) if items.is_empty() => Vec::new(),
                Some(_) => user_list(obj, "members")?,
            };
            members.retain(|u| u != me);
            if members.len() + 1 > max_members {
                return Err(too_many(members.len() + 1, max_members));
            }
            GroupOp::Create { name, members }
        }
        "group.add" | "group.remove" | "group.promote" | "group.demote" => {
            json::only_fields(obj, &["rid", "op", "group", "users"])?;
            let group = group_id(obj)?;
            let users = users(obj)?;
            match op {
                "group.add" => GroupOp::Add { group, users },
                "group.remove" => GroupOp::Remove { group, users },
                "group.promote" => GroupOp::Promote { group, users },
                _ => GroupOp::Demote { group, users },
            }
        }
        "group.leave" => {
            json::only_fields(obj, &["rid", "op", "group"])?;
            GroupOp::Leave {
                group: group_id(obj)?,
            }
        }
        "group.rename" => {
            json::only_fields(obj, &["rid", "op", "group", "name"])?;
            GroupOp::Rename {
                group: group_id(obj)?,
                name: name(obj)?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(parsed))
}

/// The `group` argument: a well-formed group id.
pub fn group_id(obj: &Object) -> Result<String, Failure> {
    let group = json::required_str(obj, "group")?;
    if !valid_object_id(group) {
        return Err(Failure::bad(format!(
            "`group` is not a group id: {group:?}"
        )));
    }
    Ok(group.to_string())
}

fn name(obj: &Object) -> Result<String, Failure> {
    let name = json::required_str(obj, "name")?.trim();
    if name.is_empty() {
        return Err(Failure::bad("`name` must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Failure::bad("`name` must not contain control characters"));
    }
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("`name` is {n} characters; at most {MAX_NAME_CHARS} are allowed"),
        ));
    }
    Ok(name.to_string())
}

/// A non-empty list of user ids, repeats dropped (first occurrence kept). Its length is
/// bounded by the request size; the member limit is the caller's to check, on this list.
fn user_list(obj: &Object, field: &str) -> Result<Vec<String>, Failure> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Err(Failure::bad(format!("`{field}` is required"))),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Failure::bad(format!(
                "`{field}` must be an array of user ids, not {}",
                json::kind_of(other)
            )))
        }
    };
    if items.is_empty() {
        return Err(Failure::bad(format!(
            "`{field}` must name at least one user"
        )));
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut users: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(user) = item else {
            return Err(Failure::bad(format!(
                "`{field}` must hold user ids (strings), not {}",
                json::kind_of(item)
            )));
        };
        chatd_auth::validate_user_id(user)
            .map_err(|e| Failure::bad(format!("`{field}` holds an invalid user id: {e}")))?;
        if seen.insert(user.as_str()) {
            users.push(user.clone());
        }
    }
    Ok(users)
}

/// The refusal for a list naming more users than a group can have (checked after the
/// caller's rights, on the list without repeats).
pub fn too_many_named(n: usize, max: usize) -> Failure {
    Failure::new(
        ErrorCode::TooLarge,
        format!("`users` names {n} users; a group has at most {max} members"),
    )
}

/// The refusal for a membership over the limit.
pub fn too_many(n: usize, max: usize) -> Failure {
    Failure::new(
        ErrorCode::TooLarge,
        format!("a group has at most {max} members; this would make {n}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => unreachable!("test input is an object"),
        }
    }

    fn parse_ok(v: Value) -> GroupOp {
        let o = obj(v);
        let op = o["op"].as_str().unwrap_or_default().to_string();
        match parse(&op, &o, "alice", 4) {
            Ok(Some(op)) => op,
            other => panic!("{o:?}: {other:?}"),
        }
    }

    fn refused(v: Value) -> Failure {
        let o = obj(v);
        let op = o["op"].as_str().unwrap_or_default().to_string();
        match parse(&op, &o, "alice", 4) {
            Err(f) => f,
            other => panic!("{o:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn create_drops_the_caller_and_repeats() {
        let op = parse_ok(
            serde_json::json!({"rid":"r","op":"group.create","name":" Team ",
            "members":["bob","alice","bob","carol"]}),
        );
        assert_eq!(
            op,
            GroupOp::Create {
                name: "Team".into(),
                members: vec!["bob".into(), "carol".into()]
            }
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        use serde_json::json;
        let cases = [
            (json!({"op":"group.create","name":""}), "must not be empty"),
            (json!({"op":"group.create"}), "`name` is required"),
            (
                json!({"op":"group.create","name":"x","members":["a","b","c","d","e"]}),
                "at most 4",
            ),
            (
                json!({"op":"group.create","name":"x","members":["a","b","c","d"]}),
                "at most 4 members; this would make 5",
            ),
            (
                json!({"op":"group.add","group":"g","users":[]}),
                "at least one",
            ),
            (
                json!({"op":"group.add","group":"g/1","users":["b"]}),
                "not a group id",
            ),
            (
                json!({"op":"group.add","group":"g","users":["b c"]}),
                "invalid user id",
            ),
            (
                json!({"op":"group.add","group":"g","users":"bob"}),
                "must be an array",
            ),
            (json!({"op":"group.add","group":"g","users":[1]}), "strings"),
            (json!({"op":"group.leave"}), "`group` is required"),
            (
                json!({"op":"group.leave","group":"g","x":1}),
                "unknown field `x`",
            ),
            (
                json!({"op":"group.rename","group":"g","name":"a\u{7}b"}),
                "control characters",
            ),
            (
                json!({"op":"group.rename","group":"g","name":"n".repeat(101)}),
                "101 characters",
            ),
        ];
        for (v, needle) in cases {
            let f = refused(v.clone());
            assert!(f.message.contains(needle), "{v}: {f:?}");
        }
    }

    #[test]
    fn repeats_do_not_count_against_the_limit() {
        let op = parse_ok(serde_json::json!({"rid":"r","op":"group.add","group":"g",
            "users":["bob","bob","bob","bob","bob","bob"]}));
        assert_eq!(
            op,
            GroupOp::Add {
                group: "g".into(),
                users: vec!["bob".into()]
            }
        );
        let op = parse_ok(serde_json::json!({"rid":"r","op":"group.create","name":"x",
            "members":["bob","carol","bob","carol","dave","dave"]}));
        assert!(matches!(op, GroupOp::Create { members, .. } if members.len() == 3));
    }

    #[test]
    fn other_ops_are_not_group_writes() {
        let o = obj(serde_json::json!({"op":"group.info","group":"g"}));
        assert_eq!(parse("group.info", &o, "alice", 4), Ok(None));
    }
}
