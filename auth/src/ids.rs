//! User ids and MQTT client ids (`{user}` or `{user}:{device}`).

use std::fmt;

/// Longest user or device id, in characters.
pub const MAX_ID_LEN: usize = 64;

/// Which kind of id an [`IdError`] is about, so messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The user part (also the MQTT username).
    User,
    /// The device part after `:` in a client id.
    Device,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::User => "user id",
            IdKind::Device => "device id",
        })
    }
}

/// Why a user id or client id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id has no characters.
    #[error("{kind} is empty")]
    Empty {
        /// Which id was empty.
        kind: IdKind,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} characters long; at most 64 are allowed")]
    TooLong {
        /// Which id was too long.
        kind: IdKind,
        /// Its length in characters.
        len: usize,
    },
    /// The id holds a character outside `A-Z a-z 0-9 _ . -`.
    #[error("{kind} contains {ch:?}; only A-Z a-z 0-9 _ . - are allowed")]
    BadChar {
        /// Which id held the character.
        kind: IdKind,
        /// The first offending character.
        ch: char,
    },
    /// The client id has more than one `:`.
    #[error("client id has more than one ':'; expected {{user}} or {{user}}:{{device}}")]
    TooManyColons,
}

/// A parsed MQTT client id: who is connecting and, optionally, from which device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId {
    /// The user id part.
    pub user: String,
    /// The device part, when the client id was `{user}:{device}`.
    pub device: Option<String>,
}

/// True for the characters allowed in user and device ids.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Checks one id of the given kind against the shared id rules.
fn validate_id(kind: IdKind, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if let Some(ch) = s.chars().find(|c| !is_id_char(*c)) {
        return Err(IdError::BadChar { kind, ch });
    }
    // Only ASCII is left at this point, so bytes == characters.
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    Ok(())
}

/// Checks a user id: 1–64 characters of `A-Z a-z 0-9 _ . -`.
pub fn validate_user_id(s: &str) -> Result<(), IdError> {
    validate_id(IdKind::User, s)
}

/// Splits and checks a client id of the form `{user}` or `{user}:{device}`.
pub fn parse_client_id(s: &str) -> Result<ClientId, IdError> {
    let mut parts = s.splitn(3, ':');
    let user = parts.next().unwrap_or_default();
    let device = parts.next();
    if parts.next().is_some() {
        return Err(IdError::TooManyColons);
    }
    validate_id(IdKind::User, user)?;
    if let Some(device) = device {
        validate_id(IdKind::Device, device)?;
    }
    Ok(ClientId {
        user: user.to_string(),
        device: device.map(str::to_string),
    })
}

/// The look-alike form of a user id: two ids with the same skeleton could be mistaken for each
/// other, so only one of them may be created (the login itself stays exact and case-sensitive).
///
/// The rule, applied in this order: ASCII letters are lowercased; `0` reads as `o`, `1` and `i`
/// as `l`, `5` as `s`; the separators `_` `.` `-` all read as `.`; then `rn` reads as `m` and
/// `vv` as `w`. So `ALICE`, `a1ice` and `alIce` share a skeleton with `alice`, and `john_doe`
/// with `john.doe`. Ids are ASCII-only, so no Unicode confusables exist beyond these.
pub fn skeleton(user: &str) -> String {
    let mapped: String = user
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            '0' => 'o',
            '1' | 'i' => 'l',
            '5' => 's',
            '_' | '.' | '-' => '.',
            c => c,
        })
        .collect();
    mapped.replace("rn", "m").replace("vv", "w")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_share_a_skeleton() {
        for (a, b) in [
            ("alice", "ALICE"),
            ("alice", "a1ice"),
            ("alice", "alIce"),
            ("bob0", "BOBO"),
            ("modern", "modem"),
            ("swan", "svvan"),
            ("john_doe", "john.doe"),
            ("john-doe", "JOHN_DOE"),
            ("sam5", "SAMS"),
        ] {
            assert_eq!(skeleton(a), skeleton(b), "{a} / {b}");
        }
        for (a, b) in [
            ("alice", "alicia"),
            ("bob", "bobb"),
            ("johndoe", "john.doe"),
        ] {
            assert_ne!(skeleton(a), skeleton(b), "{a} / {b}");
        }
    }

    #[test]
    fn user_ids_accepted() {
        for ok in [
            "a",
            "alice",
            "Bob_1",
            "x.y-z",
            "0",
            "A-Z.a_z-09",
            &"a".repeat(64),
        ] {
            assert_eq!(validate_user_id(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn user_ids_rejected() {
        assert_eq!(
            validate_user_id(""),
            Err(IdError::Empty { kind: IdKind::User })
        );
        assert_eq!(
            validate_user_id(&"a".repeat(65)),
            Err(IdError::TooLong {
                kind: IdKind::User,
                len: 65
            })
        );
        for (bad, ch) in [
            ("al ice", ' '),
            ("alice/", '/'),
            ("+", '+'),
            ("#", '#'),
            ("a:b", ':'),
            ("$SYS", '$'),
            ("é", 'é'),
            ("a\0", '\0'),
        ] {
            assert_eq!(
                validate_user_id(bad),
                Err(IdError::BadChar {
                    kind: IdKind::User,
                    ch
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = validate_user_id("a/b").unwrap_err().to_string();
        assert!(e.contains("user id") && e.contains("'/'"), "{e}");
        let e = parse_client_id("a:").unwrap_err().to_string();
        assert_eq!(e, "device id is empty");
        let e = parse_client_id("a:b:c").unwrap_err().to_string();
        assert!(e.contains("more than one ':'"), "{e}");
    }

    #[test]
    fn client_id_without_device() {
        assert_eq!(
            parse_client_id("alice"),
            Ok(ClientId {
                user: "alice".into(),
                device: None
            })
        );
    }

    #[test]
    fn client_id_with_device() {
        assert_eq!(
            parse_client_id("alice:phone-1"),
            Ok(ClientId {
                user: "alice".into(),
                device: Some("phone-1".into())
            })
        );
        let long = format!("{}:{}", "u".repeat(64), "d".repeat(64));
        assert!(parse_client_id(&long).is_ok());
    }

    #[test]
    fn client_ids_rejected() {
        assert_eq!(
            parse_client_id(""),
            Err(IdError::Empty { kind: IdKind::User })
        );
        assert_eq!(
            parse_client_id(":phone"),
            Err(IdError::Empty { kind: IdKind::User })
        );
        assert_eq!(
            parse_client_id("alice:"),
            Err(IdError::Empty {
                kind: IdKind::Device
            })
        );
        assert_eq!(parse_client_id("a:b:c"), Err(IdError::TooManyColons));
        assert_eq!(parse_client_id("a::"), Err(IdError::TooManyColons));
        assert_eq!(parse_client_id("::"), Err(IdError::TooManyColons));
        assert_eq!(
            parse_client_id("alice:ph one"),
            Err(IdError::BadChar {
                kind: IdKind::Device,
                ch: ' '
            })
        );
        assert_eq!(
            parse_client_id("al/ice:phone"),
            Err(IdError::BadChar {
                kind: IdKind::User,
                ch: '/'
            })
        );
        assert_eq!(
            parse_client_id(&format!("alice:{}", "d".repeat(65))),
            Err(IdError::TooLong {
                kind: IdKind::Device,
                len: 65
            })
        );
    }
}
