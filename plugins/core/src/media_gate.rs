//! The one thing messaging asks of the media service: may this sender reference this media?
//! A trait, so messaging does not depend on where media bytes live (disk or S3).

use std::future::Future;
use std::pin::Pin;

use chatd_wire::reply::Failure;

/// A boxed future, as the gate returns it.
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// Decides whether a media message may be accepted.
pub trait MediaGate: Send + Sync + 'static {
    /// Ok when `media` was uploaded by `sender` and its bytes are verified (size and SHA-256
    /// as declared; a back end may verify lazily here). Otherwise the failure the sender's
    /// ack carries, normally `bad_request` saying why.
    fn check<'a>(&'a self, sender: &'a str, media: &'a str) -> GateFuture<'a>;

    /// [`MediaGate::check`] for a message of type `kind` (`image`, `video`, `audio`, `file`):
    /// a gate may also refuse media whose MIME type does not fit the kind (a PDF sent as an
    /// `image`). The default knows nothing of kinds and only calls `check`.
    fn check_message<'a>(
        &'a self,
        sender: &'a str,
        media: &'a str,
        kind: &'a str,
    ) -> GateFuture<'a> {
        let _ = kind;
        self.check(sender, media)
    }
}
