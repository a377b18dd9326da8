//! The profiles port: each user's display name and avatar, set by the user (`profile.set`)
//! and read by whoever may see them (`profile.get`; the rules are the chat core's, not the
//! store's).

use serde::{Deserialize, Serialize};

use super::accounts::RecordError;

/// One user's profile; a user who never set one has the empty profile (both `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The display name (already checked and trimmed by the chat core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The media id of the avatar (one the user uploaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

impl Profile {
    /// True when neither field is set (an adapter need not keep such a profile).
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.avatar.is_none()
    }
}

/// What a change does to one field of a profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FieldChange {
    /// Left as it is.
    #[default]
    Keep,
    /// Set to this value.
    Set(String),
    /// Cleared.
    Clear,
}

impl FieldChange {
    /// The field's value after the change, given its value before.
    pub fn apply(&self, old: Option<String>) -> Option<String> {
        match self {
            FieldChange::Keep => old,
            FieldChange::Set(value) => Some(value.clone()),
            FieldChange::Clear => None,
        }
    }
}

/// A change of one user's profile, field by field: an intent, so that an adapter carries it
/// out in one step and two devices changing different fields at once lose neither change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileChange {
    /// The display name.
    pub name: FieldChange,
    /// The avatar.
    pub avatar: FieldChange,
}

impl ProfileChange {
    /// `profile` after the change.
    pub fn apply(&self, profile: Profile) -> Profile {
        Profile {
            name: self.name.apply(profile.name),
            avatar: self.avatar.apply(profile.avatar),
        }
    }
}

/// Where profiles are kept. Removing an account forgets its profile (the message log's
/// `ForgetUser`, which shares the store).
pub trait ProfileStore: Send + Sync + 'static {
    /// The profile of `user`: empty when none was set (or the user does not exist).
    fn profile(&self, user: &str) -> Result<Profile, RecordError>;

    /// Carries out `change` on `user`'s profile as one step; durable when it returns (the
    /// caller is told it is stored).
    fn change(&self, user: &str, change: &ProfileChange) -> Result<(), RecordError>;
}
