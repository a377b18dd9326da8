//! The arguments of `profile.set`, `profile.get` and `user.find`, read and checked. Pure, so
//! every hostile request can be thrown at them in tests.

use serde_json::Value;

use crate::ports::profiles::{FieldChange, ProfileChange};
use chatd_wire::json::{self, Object};
use chatd_wire::reply::{ErrorCode, Failure};

/// Most characters of a display name (after trimming).
pub const MAX_NAME_CHARS: usize = 64;

/// Most users one `profile.get` may ask about.
pub const MAX_USERS_PER_GET: usize = 100;

/// Reads `profile.set`: `name` and/or `avatar`, each a string or `null` (clears it). The
/// avatar is only checked for its type here; whether the caller may use it is the media
/// service's call.
pub fn parse_set(obj: &Object) -> Result<ProfileChange, Failure> {
    json::only_fields(obj, &["rid", "op", "name", "avatar"])?;
    let name = match obj.get("name") {
        None => FieldChange::Keep,
        Some(Value::Null) => FieldChange::Clear,
        Some(Value::String(raw)) => FieldChange::Set(display_name(raw)?),
        Some(other) => {
            return Err(Failure::bad(format!(
                "`name` must be a string or null, not {}",
                json::kind_of(other)
            )))
        }
    };
    let avatar = match obj.get("avatar") {
        None => FieldChange::Keep,
        Some(Value::Null) => FieldChange::Clear,
        Some(Value::String(media)) => FieldChange::Set(media.clone()),
        Some(other) => {
            return Err(Failure::bad(format!(
                "`avatar` must be a media id or null, not {}",
                json::kind_of(other)
            )))
        }
    };
    if name == FieldChange::Keep && avatar == FieldChange::Keep {
        return Err(Failure::bad(
            "give `name` or `avatar` (or both); `null` clears one",
        ));
    }
    Ok(ProfileChange { name, avatar })
}

/// A display name as stored: `raw` trimmed, 1 to [`MAX_NAME_CHARS`] characters, none of them
/// a control character.
pub fn display_name(raw: &str) -> Result<String, Failure> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Failure::bad(
            "`name` must not be empty or only spaces (`null` clears it)",
        ));
    }
    if let Some(c) = name.chars().find(|c| is_control_like(*c)) {
        return Err(Failure::bad(format!(
            "`name` must not contain control characters (it has U+{:04X})",
            u32::from(c)
        )));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!("`name` is {chars} characters; at most {MAX_NAME_CHARS} are allowed"),
        ));
    }
    Ok(name.to_string())
}

/// Control characters (C0, DEL, C1), the line and paragraph separators, and the
/// bidirectional formatting characters: a name is shown beside other people's text, and these
/// could break lines or reverse what follows it (a name that makes a message look like
/// someone else's).
fn is_control_like(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Reads `profile.get`: `users`, 1 to [`MAX_USERS_PER_GET`] valid user ids (repeats allowed;
/// the answer follows the request's order).
pub fn parse_get(obj: &Object) -> Result<Vec<String>, Failure> {
    json::only_fields(obj, &["rid", "op", "users"])?;
    crate::user_list::parse_users(obj, MAX_USERS_PER_GET)
}

/// Reads `user.find`: `user`, a valid user id.
pub fn parse_find(obj: &Object) -> Result<String, Failure> {
    json::only_fields(obj, &["rid", "op", "user"])?;
    let user = json::required_str(obj, "user")?;
    chatd_auth::validate_user_id(user)
        .map_err(|e| Failure::bad(format!("`user` is not a valid user id: {e}")))?;
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    fn set(v: Value) -> Result<ProfileChange, Failure> {
        parse_set(&obj(v))
    }

    #[test]
    fn set_reads_each_field_as_keep_set_or_clear() {
        let change = set(serde_json::json!({"rid":"r","op":"profile.set","name":"  Bob  "}));
        assert_eq!(
            change,
            Ok(ProfileChange {
                name: FieldChange::Set("Bob".into()),
                avatar: FieldChange::Keep,
            })
        );
        let change = set(serde_json::json!({"name":null,"avatar":"m_1"}));
        assert_eq!(
            change,
            Ok(ProfileChange {
                name: FieldChange::Clear,
                avatar: FieldChange::Set("m_1".into()),
            })
        );
    }

    #[test]
    fn set_refuses_what_is_not_a_profile_change() {
        let code = |v: Value| set(v).map_err(|f| f.code);
        assert_eq!(code(serde_json::json!({})), Err(ErrorCode::BadRequest));
        assert_eq!(
            code(serde_json::json!({"name":"a","x":1})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"name":5})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"avatar":["m_1"]})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"name":"   "})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"name":"a\u{0007}b"})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"name":"evil\u{202E}gnp.exe"})),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(serde_json::json!({"name":"a\nb"})),
            Err(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn names_are_counted_in_characters_after_trimming() {
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(display_name(&format!(" {longest}\t")), Ok(longest.clone()));
        let over = display_name(&format!("{longest}x")).map_err(|f| f.code);
        assert_eq!(over, Err(ErrorCode::TooLarge));
        assert_eq!(display_name("Zoë 🙂"), Ok("Zoë 🙂".to_string()));
    }

    #[test]
    fn get_and_find_take_user_ids_only() {
        let users = parse_get(&obj(serde_json::json!({"users":["bob","bob","carol"]})));
        assert_eq!(users, Ok(vec!["bob".into(), "bob".into(), "carol".into()]));
        for bad in [
            serde_json::json!({"users":[]}),
            serde_json::json!({"users":"bob"}),
            serde_json::json!({"users":["bob/x"]}),
            serde_json::json!({"users":["bob"],"limit":1}),
            serde_json::json!({"users":vec!["a"; MAX_USERS_PER_GET + 1]}),
        ] {
            assert!(parse_get(&obj(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(
            parse_find(&obj(serde_json::json!({"user":"bob"}))),
            Ok("bob".into())
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"user":"b o b"}),
            serde_json::json!({"user":"bob","users":["bob"]}),
        ] {
            assert!(parse_find(&obj(bad.clone())).is_err(), "{bad}");
        }
    }

    /// Arbitrary request objects: the fields these ops read (and one they do not), with
    /// values of every JSON type, user-id-like strings among them.
    fn hostile_object() -> impl Strategy<Value = Object> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,80}".prop_map(Value::from),
            "[a-z]{1,8}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(2, 16, 4, |inner| {
            prop::collection::vec(inner, 0..6).prop_map(Value::from)
        });
        let field = prop::sample::select(vec!["rid", "op", "name", "avatar", "users", "user", "x"]);
        prop::collection::btree_map(field.prop_map(str::to_string), value, 0..5)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        /// No request makes a parser panic, and whatever one accepts keeps the rules.
        #[test]
        fn hostile_requests_are_refused_or_read_within_the_rules(obj in hostile_object()) {
            if let Ok(change) = parse_set(&obj) {
                prop_assert!(change.name != FieldChange::Keep || change.avatar != FieldChange::Keep);
                if let FieldChange::Set(name) = &change.name {
                    prop_assert_eq!(display_name(name), Ok(name.clone()));
                }
            }
            if let Ok(users) = parse_get(&obj) {
                prop_assert!((1..=MAX_USERS_PER_GET).contains(&users.len()));
                prop_assert!(users.iter().all(|u| chatd_auth::validate_user_id(u).is_ok()));
            }
            if let Ok(user) = parse_find(&obj) {
                prop_assert!(chatd_auth::validate_user_id(&user).is_ok());
            }
        }

        /// Whatever the name, a stored one is trimmed, short enough and free of control
        /// characters.
        #[test]
        fn a_stored_name_keeps_the_rules(raw in any::<String>()) {
            if let Ok(name) = display_name(&raw) {
                prop_assert_eq!(name.trim(), name.as_str());
                prop_assert!(!name.is_empty());
                prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!name.chars().any(is_control_like));
            }
        }
    }
}
