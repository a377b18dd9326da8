//! Avatars: a media id that is a user's current avatar may be downloaded by everyone who sees
//! that user's profile, besides the senders and recipients of messages carrying it. Who that
//! is, is the profiles service's call, asked through the [`AvatarAccess`] port so that this
//! crate does not depend on profiles.

use std::sync::Arc;

use chatd_core::avatar_access::AvatarAccess;

use super::{MediaError, MediaService};

impl MediaService {
    /// Lets `access` decide which avatars a viewer may download; set once, at start.
    pub fn set_avatar_access(&self, access: Arc<dyn AvatarAccess>) {
        if self.avatars.set(access).is_err() {
            tracing::warn!("media: the avatar access was set twice; the first one stays");
        }
    }

    /// True when `media` is the avatar of its uploader and `viewer` sees the uploader's
    /// profile. False for an id that does not exist, like any other refusal.
    pub(crate) fn avatar_visible(&self, viewer: &str, media: &str) -> Result<bool, MediaError> {
        let Some(access) = self.avatars.get() else {
            return Ok(false);
        };
        let Some(record) = self.store.media(media)? else {
            return Ok(false);
        };
        Ok(access.may_see_avatar(viewer, &record.uploader, media)?)
    }
}
