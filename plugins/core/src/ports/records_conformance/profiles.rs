//! The profiles port's checks.

use super::Ports;
use crate::ports::profiles::{FieldChange, Profile, ProfileChange};

fn change(name: FieldChange, avatar: FieldChange) -> ProfileChange {
    ProfileChange { name, avatar }
}

fn profile(name: Option<&str>, avatar: Option<&str>) -> Profile {
    Profile {
        name: name.map(str::to_string),
        avatar: avatar.map(str::to_string),
    }
}

/// A profile is empty until set; each change sets, keeps or clears each field, per user.
pub fn profiles_change_field_by_field_per_user(ports: &Ports) {
    let profiles = &ports.profiles;
    assert_eq!(profiles.profile("bob").unwrap(), Profile::default());
    profiles
        .change(
            "bob",
            &change(FieldChange::Set("Bob".into()), FieldChange::Keep),
        )
        .unwrap();
    assert_eq!(profiles.profile("bob").unwrap(), profile(Some("Bob"), None));
    // Another field alone: the name stays.
    profiles
        .change(
            "bob",
            &change(FieldChange::Keep, FieldChange::Set("m_1".into())),
        )
        .unwrap();
    assert_eq!(
        profiles.profile("bob").unwrap(),
        profile(Some("Bob"), Some("m_1"))
    );
    profiles
        .change(
            "carol",
            &change(
                FieldChange::Set("Carol ☂".into()),
                FieldChange::Set("m_2".into()),
            ),
        )
        .unwrap();
    profiles
        .change(
            "bob",
            &change(FieldChange::Clear, FieldChange::Set("m_3".into())),
        )
        .unwrap();
    assert_eq!(profiles.profile("bob").unwrap(), profile(None, Some("m_3")));
    assert_eq!(
        profiles.profile("carol").unwrap(),
        profile(Some("Carol ☂"), Some("m_2"))
    );
    // Emptied: read back as never set, and set again from nothing.
    profiles
        .change("bob", &change(FieldChange::Keep, FieldChange::Clear))
        .unwrap();
    assert_eq!(profiles.profile("bob").unwrap(), Profile::default());
    profiles
        .change(
            "bob",
            &change(FieldChange::Set("B".into()), FieldChange::Keep),
        )
        .unwrap();
    assert_eq!(profiles.profile("bob").unwrap(), profile(Some("B"), None));
    assert_eq!(profiles.profile("dave").unwrap(), Profile::default());
}
