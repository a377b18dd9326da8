//! Profiles: a display name and an avatar per user, set by the user (`profile.set`) and read
//! by the people they share a conversation or a group with (`profile.get`), and finding a user
//! by exact id (`user.find`). Nothing here lists users: every answer is about ids the caller
//! names, and an id whose profile the caller may not see gets the same empty answer as an id
//! that does not exist.
//!
//! Profiles are kept through the [`ProfileStore`] port; who may see whom is
//! [`visibility`]; avatars are checked by the media service's [`MediaGate`] (an image the
//! caller uploaded), and the media service lets a viewer download an avatar through
//! [`AvatarAccess`], which this service implements.

pub mod args;
pub mod visibility;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::accounts::{AccountError, AccountStatus, Accounts};
use crate::avatar_access::AvatarAccess;
use crate::media_gate::MediaGate;
use crate::ports::accounts::RecordError;
use crate::ports::log::MessageLog;
use crate::ports::profiles::{FieldChange, Profile, ProfileStore};
use chatd_wire::reply::{ErrorCode, Failure};
use chatd_wire::request::{ops, Answer, AnswerFuture, Caller, Outcome, Request, RpcHandler};
use visibility::{Viewer, VisibilityError};

/// The profiles service; the broker registers it for the ops of
/// [`ops::PROFILES`](chatd_wire::request::ops::PROFILES).
pub struct Profiles {
    inner: Arc<Inner>,
    /// Checks an avatar: media the caller uploaded, verified, an image.
    gate: Arc<dyn MediaGate>,
}

/// What the blocking reads and writes need (moved to a blocking thread).
struct Inner {
    store: Arc<dyn ProfileStore>,
    log: Arc<dyn MessageLog>,
    accounts: Accounts,
    /// Most groups one user belongs to (`limits.max_groups_per_user`).
    max_groups: usize,
}

/// One entry of `profile.get`: `name` and `avatar` are `null` when unset or not visible.
#[derive(Debug, Serialize)]
struct Entry {
    user: String,
    name: Option<String>,
    avatar: Option<String>,
}

impl Profiles {
    /// Profiles kept in `store`, visible along the conversations of `log` and the accounts of
    /// `accounts` (users belong to at most `max_groups` groups), avatars checked by `gate`.
    pub fn new(
        store: Arc<dyn ProfileStore>,
        log: Arc<dyn MessageLog>,
        accounts: Accounts,
        gate: Arc<dyn MediaGate>,
        max_groups: usize,
    ) -> Profiles {
        Profiles {
            inner: Arc::new(Inner {
                store,
                log,
                accounts,
                max_groups,
            }),
            gate,
        }
    }

    /// `profile.set`: checks the arguments and the avatar, then stores the change durably.
    async fn set(&self, me: &str, request: &Request) -> Outcome {
        let change = args::parse_set(&request.obj)?;
        if let FieldChange::Set(media) = &change.avatar {
            self.gate
                .check_message(me, media, "image")
                .await
                .map_err(|f| {
                    Failure::new(
                        f.code,
                        format!("`avatar` must be an image you uploaded: {}", f.message),
                    )
                })?;
        }
        let inner = self.inner.clone();
        let me = me.to_string();
        blocking(move || {
            inner
                .store
                .change(&me, &change)
                .map_err(|e| store_failure("the profile could not be stored", e))
        })
        .await?;
        Answer::of(&serde_json::json!({}))
    }

    /// `profile.get`: each named user's profile, in the request's order; `null`s for the ones
    /// the caller may not see.
    async fn get(&self, me: &str, request: &Request) -> Outcome {
        let users = args::parse_get(&request.obj)?;
        let inner = self.inner.clone();
        let me = me.to_string();
        let profiles = blocking(move || inner.profiles(&me, users)).await?;
        Answer::of(&serde_json::json!({ "profiles": profiles }))
    }

    /// `user.find`: the id back when that exact account exists, else `not_found`.
    async fn find(&self, request: &Request) -> Outcome {
        let user = args::parse_find(&request.obj)?;
        let inner = self.inner.clone();
        let found = blocking(move || {
            let live = matches!(
                inner.accounts.status(&user).map_err(account_failure)?,
                AccountStatus::Live { .. }
            );
            Ok(live.then_some(user))
        })
        .await?;
        match found {
            Some(user) => Answer::of(&serde_json::json!({ "user": user })),
            None => Err(Failure::new(ErrorCode::NotFound, "no such user")),
        }
    }
}

impl Inner {
    /// The entries of `profile.get` for `me`.
    fn profiles(&self, me: &str, users: Vec<String>) -> Result<Vec<Entry>, Failure> {
        let viewer = Viewer::new(self.log.as_ref(), &self.accounts, me, self.max_groups)
            .map_err(visibility_failure)?;
        let mut seen: HashMap<String, Profile> = HashMap::new();
        let mut entries = Vec::with_capacity(users.len());
        for user in users {
            let profile = match seen.get(&user) {
                Some(profile) => profile.clone(),
                None => {
                    let profile = if viewer.sees(&user).map_err(visibility_failure)? {
                        self.store
                            .profile(&user)
                            .map_err(|e| store_failure("a profile could not be read", e))?
                    } else {
                        Profile::default()
                    };
                    seen.insert(user.clone(), profile.clone());
                    profile
                }
            };
            entries.push(Entry {
                user,
                name: profile.name,
                avatar: profile.avatar,
            });
        }
        Ok(entries)
    }
}

impl RpcHandler for Profiles {
    fn ops(&self) -> &'static [&'static str] {
        ops::PROFILES
    }

    fn answer<'a>(&'a self, caller: Caller<'a>, request: &'a Request) -> AnswerFuture<'a> {
        Box::pin(async move {
            match request.op.as_str() {
                "profile.set" => self.set(caller.user, request).await,
                "profile.get" => self.get(caller.user, request).await,
                "user.find" => self.find(request).await,
                op => Err(Failure::bad(format!("unknown op `{op}`"))),
            }
        })
    }
}

impl AvatarAccess for Profiles {
    fn may_see_avatar(&self, viewer: &str, owner: &str, media: &str) -> Result<bool, RecordError> {
        let inner = &self.inner;
        if inner.store.profile(owner)?.avatar.as_deref() != Some(media) {
            return Ok(false);
        }
        let view = Viewer::new(
            inner.log.as_ref(),
            &inner.accounts,
            viewer,
            inner.max_groups,
        )
        .map_err(as_record_error)?;
        view.sees(owner).map_err(as_record_error)
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(Failure::internal("the request could not be answered")))
}

/// A store failure as the client sees it: `unavailable` when the store failed (retrying
/// later works), `internal` when a record is unreadable.
fn store_failure(what: &str, e: RecordError) -> Failure {
    tracing::error!("profiles: {what}: {e}");
    match e {
        RecordError::Store(_) => Failure::unavailable(format!(
            "{what}: the server's storage is failing; retry later"
        )),
        RecordError::Corrupt { .. } => Failure::internal(what.to_string()),
    }
}

fn account_failure(e: AccountError) -> Failure {
    match e {
        AccountError::Store(e) => store_failure("the account could not be looked up", e),
        other => {
            tracing::error!("profiles: account lookup failed: {other}");
            Failure::internal("the account could not be looked up")
        }
    }
}

fn visibility_failure(e: VisibilityError) -> Failure {
    match e {
        VisibilityError::Log(e) => store_failure("the conversations could not be read", e),
        VisibilityError::Account(e) => account_failure(e),
    }
}

/// For the media service, which knows only record errors.
fn as_record_error(e: VisibilityError) -> RecordError {
    match e {
        VisibilityError::Log(e) | VisibilityError::Account(AccountError::Store(e)) => e,
        VisibilityError::Account(other) => RecordError::Store(other.to_string()),
    }
}
