//! Who sees whose profile: a user sees their own, and the profile of every user they share a
//! 1:1 conversation with (a message either way, since the later of the two ids was last given
//! out) or a group with (both current members). Nobody else's: an unknown id and a profile
//! that is not visible look the same, so ids cannot be probed through profiles.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::accounts::{AccountError, AccountStatus, Accounts};
use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
use crate::records::chat::direct_conversation;

/// Why visibility could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum VisibilityError {
    /// The message log failed.
    #[error(transparent)]
    Log(#[from] RecordError),
    /// An account could not be looked up.
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// One viewer's view: answers "may I see this user's profile?" for many users, reading the
/// viewer's own groups at most once.
pub struct Viewer<'a> {
    log: &'a dyn MessageLog,
    accounts: &'a Accounts,
    me: &'a str,
    /// The viewer's history floor (a reclaimed id shares nothing its previous owner did).
    floor: Option<String>,
    /// Most groups read per user (a user belongs to no more).
    max_groups: usize,
    /// The viewer's current groups, read when first needed.
    groups: OnceCell<BTreeSet<String>>,
}

impl<'a> Viewer<'a> {
    /// The view of `me`, who belongs to at most `max_groups` groups.
    pub fn new(
        log: &'a dyn MessageLog,
        accounts: &'a Accounts,
        me: &'a str,
        max_groups: usize,
    ) -> Result<Viewer<'a>, VisibilityError> {
        Ok(Viewer {
            log,
            accounts,
            me,
            floor: live_floor(accounts, me)?.flatten(),
            max_groups,
            groups: OnceCell::new(),
        })
    }

    /// True when the viewer may see `user`'s profile.
    pub fn sees(&self, user: &str) -> Result<bool, VisibilityError> {
        if user == self.me {
            return Ok(true);
        }
        let Some(their_floor) = live_floor(self.accounts, user)? else {
            return Ok(false);
        };
        Ok(self.messaged(user, their_floor)? || self.share_a_group(user)?)
    }

    /// A 1:1 message either way, newer than both floors.
    fn messaged(&self, user: &str, their_floor: Option<String>) -> Result<bool, RecordError> {
        let floor = self.floor.clone().max(their_floor);
        let low = match &floor {
            Some(floor) => Bound::Excluded(floor.as_str()),
            None => Bound::Unbounded,
        };
        let conversation = direct_conversation(self.me, user);
        let newest = self
            .log
            .history(&conversation, low, Bound::Unbounded, true, 1)?;
        Ok(!newest.is_empty())
    }

    /// Both are current members of some group.
    fn share_a_group(&self, user: &str) -> Result<bool, RecordError> {
        let mine = match self.groups.get() {
            Some(mine) => mine,
            None => {
                let read = self.log.groups_of(self.me, self.max_groups)?;
                self.groups.get_or_init(|| read.into_iter().collect())
            }
        };
        if mine.is_empty() {
            return Ok(false);
        }
        let theirs = self.log.groups_of(user, self.max_groups)?;
        Ok(theirs.iter().any(|group| mine.contains(group)))
    }
}

/// `Some(floor)` for a live account (its history floor, if the id was reclaimed), `None` for
/// an id with no live account (never created, or removed).
fn live_floor(accounts: &Accounts, user: &str) -> Result<Option<Option<String>>, AccountError> {
    Ok(match accounts.status(user)? {
        AccountStatus::Live { floor } => Some(floor),
        AccountStatus::Missing | AccountStatus::Removed => None,
    })
}
