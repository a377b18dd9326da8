//! Checks of the settings an operator writes, shared by every plugin's section: the error that
//! names the offending key, and the messaging limits the chat core owns.
//!
//! Messaging has no section of its own in the TOML file: its limits (`max_group_members`,
//! `fanout_slice`, `max_groups_per_user`, `groups_created_per_hour`) are keys of the broker's
//! `[limits]`, which the broker reads and passes on in a [`ChatConfig`]. The checks live here,
//! beside the code that relies on them, and name the keys as the operator wrote them.

use crate::messaging::ChatConfig;

/// A setting that parses but cannot work, naming its full dotted key (e.g. `media.s3.bucket`)
/// so that the operator knows which line of the file to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {why}")]
pub struct InvalidSetting {
    /// Dotted key path, e.g. `limits.fanout_slice`.
    pub key: &'static str,
    /// What is wrong with it.
    pub why: String,
}

impl InvalidSetting {
    /// The error for `key`.
    pub fn new(key: &'static str, why: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            key,
            why: why.into(),
        }
    }
}

/// The first failed check of a list of `(key, holds, why)`, as the error naming its key; the
/// order of the list is the order in which an operator learns about mistakes.
pub fn first_invalid(checks: &[(&'static str, bool, &str)]) -> Result<(), InvalidSetting> {
    match checks.iter().find(|(_, ok, _)| !ok) {
        Some((key, _, why)) => Err(InvalidSetting::new(key, *why)),
        None => Ok(()),
    }
}

impl ChatConfig {
    /// Checks the limits an operator sets for messaging (keys of `[limits]`), naming the first
    /// that cannot work. Settings the broker derives itself (node id, batch size, reply budget,
    /// push jobs) are not the operator's and are checked when messaging starts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        first_invalid(&[
            (
                "limits.max_group_members",
                (2..=100_000).contains(&self.max_group_members),
                "must be between 2 and 100000",
            ),
            (
                "limits.fanout_slice",
                (1..=100_000).contains(&self.fanout_slice),
                "must be between 1 and 100000",
            ),
            (
                "limits.max_groups_per_user",
                (1..=100_000).contains(&self.max_groups_per_user),
                "must be between 1 and 100000",
            ),
            (
                "limits.groups_created_per_hour",
                self.groups_created_per_hour <= 1_000_000,
                "must be between 0 (no limit) and 1000000",
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ChatConfig::default().validate().unwrap();
    }

    #[test]
    fn each_limit_is_named() {
        let cases: [(ChatConfig, &str); 5] = [
            (
                ChatConfig {
                    max_group_members: 1,
                    ..ChatConfig::default()
                },
                "limits.max_group_members",
            ),
            (
                ChatConfig {
                    fanout_slice: 0,
                    ..ChatConfig::default()
                },
                "limits.fanout_slice",
            ),
            (
                ChatConfig {
                    max_groups_per_user: 100_001,
                    ..ChatConfig::default()
                },
                "limits.max_groups_per_user",
            ),
            (
                ChatConfig {
                    groups_created_per_hour: 1_000_001,
                    ..ChatConfig::default()
                },
                "limits.groups_created_per_hour",
            ),
            (
                ChatConfig {
                    max_group_members: 0,
                    fanout_slice: 0,
                    ..ChatConfig::default()
                },
                "limits.max_group_members",
            ),
        ];
        for (cfg, key) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err
                .to_string()
                .starts_with(&format!("config key `{key}`: ")));
        }
        let unlimited = ChatConfig {
            groups_created_per_hour: 0,
            ..ChatConfig::default()
        };
        unlimited.validate().unwrap();
    }
}
