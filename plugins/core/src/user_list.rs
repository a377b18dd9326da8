//! The `users` list of the requests that ask about several users at once (`presence.get`,
//! `profile.get`): one reading, so that they refuse the same lists with the same words.

use chatd_wire::json::Object;
use chatd_wire::reply::Failure;
use serde_json::Value;

/// Reads `users`: 1 to `max` valid user ids, repeats allowed, in the request's order.
pub fn parse_users(obj: &Object, max: usize) -> Result<Vec<String>, Failure> {
    let Some(users) = obj.get("users").and_then(Value::as_array) else {
        return Err(Failure::bad("`users` (a list of user ids) is required"));
    };
    if users.is_empty() || users.len() > max {
        return Err(Failure::bad(format!("`users` must name 1 to {max} users")));
    }
    users
        .iter()
        .map(|user| match user.as_str() {
            Some(u) if chatd_auth::validate_user_id(u).is_ok() => Ok(u.to_string()),
            _ => Err(Failure::bad(format!("{user} is not a valid user id"))),
        })
        .collect()
}
