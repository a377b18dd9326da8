//! What a group is: its record and one membership record per user who ever belonged to it,
//! the in-memory form that holds both, and the value of a group history entry.
//!
//! Membership is a list of windows `[from, to]` of message ids: from the event that added
//! the user (inclusive) to the event that removed them or recorded their leaving (inclusive,
//! so they see why they are gone), `to` open while they are a member. History, receipts and
//! media rights all ask the same question — "was this user a member when message `id` was
//! accepted?" — and answer it from these windows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A group's own record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The display name.
    pub name: String,
    /// Who created it.
    pub creator: String,
    /// When it was created, ms since the epoch.
    pub created: u64,
    /// Set once the last member has gone: the group takes no more messages or changes.
    #[serde(default)]
    pub closed: bool,
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May change membership, roles and the name.
    Admin,
    /// May send and read.
    Member,
}

impl Role {
    /// The contract's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// One user's membership of one group, current or past.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The role while a member (kept as it was after leaving).
    pub role: Role,
    /// Membership windows `[from, to]` (message ids, inclusive), oldest first; the last one
    /// has no `to` while the user is a member.
    pub windows: Vec<(String, Option<String>)>,
}

impl MemberRecord {
    /// True while the user is a member.
    pub fn active(&self) -> bool {
        self.windows.last().is_some_and(|(_, to)| to.is_none())
    }

    /// The start of the current window: the id of the event that (last) added the user.
    pub fn since(&self) -> Option<&str> {
        match self.windows.last() {
            Some((from, None)) => Some(from),
            _ => None,
        }
    }

    /// True when message `id` falls inside one of the windows.
    pub fn saw(&self, id: &str) -> bool {
        self.windows
            .iter()
            .any(|(from, to)| from.as_str() <= id && to.as_deref().is_none_or(|to| id <= to))
    }

    /// The first and last id this user may see (`None` as the upper end = no limit).
    pub fn bounds(&self) -> Option<(&str, Option<&str>)> {
        let first = self.windows.first()?;
        let last = self.windows.last()?;
        Some((first.0.as_str(), last.1.as_deref()))
    }
}

/// A group as the committer holds it: its record and every membership record.
#[derive(Clone, Debug)]
pub struct Group {
    /// The group id.
    pub id: String,
    /// The stored record.
    pub record: GroupRecord,
    /// Membership records by user, current and past.
    pub members: BTreeMap<String, MemberRecord>,
}

impl Group {
    /// Current members, in user id order.
    pub fn active(&self) -> impl Iterator<Item = (&String, &MemberRecord)> {
        self.members.iter().filter(|(_, m)| m.active())
    }

    /// How many current members there are.
    pub fn size(&self) -> usize {
        self.active().count()
    }

    /// The role of `user` if they are a current member.
    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.members
            .get(user)
            .filter(|m| m.active())
            .map(|m| m.role)
    }

    /// True when at least one current member is an admin.
    pub fn has_admin(&self) -> bool {
        self.active().any(|(_, m)| m.role == Role::Admin)
    }

    /// The current member who has been one the longest (earliest current window; ties by
    /// user id): who gets promoted when the last admin goes.
    pub fn longest_standing(&self) -> Option<String> {
        self.active()
            .filter_map(|(u, m)| m.since().map(|since| (since, u)))
            .min()
            .map(|(_, u)| u.clone())
    }
}

/// The value of a group history index entry: who sent the message (empty
/// for events) and how many members it went to, so unread counts and receipt totals need no
/// message loads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupIndex {
    /// The sender; empty for a group event.
    #[serde(rename = "f")]
    pub from: String,
    /// Members the message went to (the sender excluded).
    #[serde(rename = "n")]
    pub recipients: u32,
}

impl GroupIndex {
    /// Reads an index value; an unreadable one counts as an event (never unread).
    pub fn decode(bytes: &[u8]) -> GroupIndex {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(windows: &[(&str, Option<&str>)]) -> MemberRecord {
        MemberRecord {
            role: Role::Member,
            windows: windows
                .iter()
                .map(|(a, b)| (a.to_string(), b.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn windows_decide_what_a_member_saw() {
        let rec = m(&[("10", Some("20")), ("30", None)]);
        assert!(rec.active());
        assert_eq!(rec.since(), Some("30"));
        for (id, saw) in [
            ("09", false),
            ("10", true),
            ("20", true),
            ("25", false),
            ("99", true),
        ] {
            assert_eq!(rec.saw(id), saw, "{id}");
        }
        let gone = m(&[("10", Some("20"))]);
        assert!(!gone.active());
        assert_eq!(gone.since(), None);
        assert_eq!(gone.bounds(), Some(("10", Some("20"))));
    }
}
