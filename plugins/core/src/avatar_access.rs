//! The one thing the media service asks of profiles: may this viewer download this media
//! because it is the avatar of someone whose profile they see? A trait, so the media service
//! does not depend on profiles (profiles already depend on the media service's gate).

use crate::ports::accounts::RecordError;

/// Decides whether a media id may be downloaded as an avatar.
pub trait AvatarAccess: Send + Sync + 'static {
    /// True when `media` is the current avatar of `owner` (the user who uploaded it) and
    /// `viewer` may see `owner`'s profile. Blocking: it reads the store.
    fn may_see_avatar(&self, viewer: &str, owner: &str, media: &str) -> Result<bool, RecordError>;
}
