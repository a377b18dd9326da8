//! Device push tokens: each user's tokens (`{"platform","device","ts"}`) and the owner of each
//! token, kept behind the [`PushTokens`] port (in the embedded store `t/{user}/{token}` and
//! `o/{token}`).
//!
//! Rules: one token per user and device (a device that registers a new token replaces its old
//! one); one owner per token, and a token stays with its owner: another user's registration of
//! it is refused until the owner lets it go — the owner unregisters it (the app does at logout),
//! replaces or evicts it, the owner's account is removed, or the push service reports it dead.
//! Nobody can redirect another user's notifications by registering their token. The same user
//! may register it from another device (it moves within the user). At most
//! [`MAX_TOKENS_PER_USER`] tokens per user (the oldest goes). Every change is one atomic batch,
//! flushed before the client is answered, and changes are serialised by one lock so that the
//! owner index never disagrees with the token records.

use std::sync::{Arc, Mutex};

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::{PushTokens, TokenChange};
use chatd_wire::ids::now_ms;

pub use chatd_core::ports::push::{DeviceToken, Platform, TokenRecord};

/// Most tokens one user keeps; registering another removes the oldest.
pub const MAX_TOKENS_PER_USER: usize = 32;

/// Longest FCM registration token accepted (real ones are about 160 characters).
pub const MAX_FCM_TOKEN: usize = 4096;

/// Longest APNs device token accepted, in hex digits (Apple's are 64 today, up to 200 allowed
/// for the future).
pub const MAX_APNS_TOKEN: usize = 200;

/// Why a token operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token does not look like one of that platform's tokens.
    #[error("{0}")]
    Invalid(String),
    /// The token is longer than any real one.
    #[error("{0}")]
    TooLong(String),
    /// This server has no adapter for the platform.
    #[error("`{0}` push is not configured on this server")]
    NotConfigured(&'static str),
    /// Another user holds the token; it moves only once they let it go.
    #[error(
        "this token is registered to another account; it can be registered here only after \
         that account unregisters it (push.unregister, e.g. at logout)"
    )]
    HeldByOther,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
}

/// Checks a token for `platform`: APNs tokens are hex digits; FCM tokens are letters, digits
/// and `- _ : . ~ + =`. Nothing else is accepted, so a token is always safe in a store key, a
/// URL path and a log line.
pub fn validate(platform: Platform, token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Invalid("`token` is empty".into()));
    }
    let (max, ok): (usize, fn(char) -> bool) = match platform {
        Platform::Apns => (MAX_APNS_TOKEN, |c| c.is_ascii_hexdigit()),
        Platform::Fcm => (MAX_FCM_TOKEN, |c| {
            c.is_ascii_alphanumeric() || "-_:.~+=".contains(c)
        }),
    };
    if token.len() > max {
        return Err(TokenError::TooLong(format!(
            "`token` is {} characters; {} tokens have at most {max}",
            token.len(),
            platform.name()
        )));
    }
    if let Some(bad) = token.chars().find(|c| !ok(*c)) {
        let allowed = match platform {
            Platform::Apns => "hex digits",
            Platform::Fcm => "letters, digits and - _ : . ~ + =",
        };
        return Err(TokenError::Invalid(format!(
            "`token` contains {bad:?}; {} tokens are {allowed}",
            platform.name()
        )));
    }
    Ok(())
}

/// Checks a token of unknown platform (for `push.unregister`): either form is accepted.
pub fn validate_any(token: &str) -> Result<(), TokenError> {
    validate(Platform::Fcm, token)
}

/// The token store.
pub struct Tokens {
    store: Arc<dyn PushTokens>,
    /// Serialises writers: each change reads the owner index and the user's tokens first.
    write: Mutex<()>,
    platforms: Vec<Platform>,
}

impl Tokens {
    /// Tokens in `store`; registrations are accepted only for `platforms` (those with an adapter).
    pub fn new(store: Arc<dyn PushTokens>, platforms: Vec<Platform>) -> Tokens {
        Tokens {
            store,
            write: Mutex::new(()),
            platforms,
        }
    }

    /// Registers `token` for `user`'s `device`: replaces the device's previous token and evicts
    /// the user's oldest tokens past [`MAX_TOKENS_PER_USER`]. Refused with
    /// [`TokenError::HeldByOther`] while another user holds the token (see [`Tokens::holder`]).
    /// Durable when it returns.
    pub fn register(
        &self,
        user: &str,
        device: Option<&str>,
        platform: Platform,
        token: &str,
    ) -> Result<(), TokenError> {
        if !self.platforms.contains(&platform) {
            return Err(TokenError::NotConfigured(platform.name()));
        }
        validate(platform, token)?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut changes = Vec::new();
        if let Some(owner) = self.owner(token)? {
            if owner != user {
                if self.holder(&owner, token)? {
                    return Err(TokenError::HeldByOther);
                }
                // A leftover of a removed account: the token is free.
                changes.push(TokenChange::Drop {
                    user: owner,
                    token: token.to_string(),
                });
            }
        }
        let mut kept: Vec<DeviceToken> = Vec::new();
        for other in self.list(user)? {
            if other.token == token {
                continue;
            }
            if other.record.device.as_deref() == device {
                changes.extend(forget(user, other.token));
            } else {
                kept.push(other);
            }
        }
        if kept.len() >= MAX_TOKENS_PER_USER {
            kept.sort_by_key(|t| t.record.ts);
            let excess = kept.len() + 1 - MAX_TOKENS_PER_USER;
            for old in kept.into_iter().take(excess) {
                changes.extend(forget(user, old.token));
            }
        }
        changes.push(TokenChange::Put {
            user: user.to_string(),
            token: token.to_string(),
            record: TokenRecord {
                platform,
                device: device.map(str::to_string),
                ts: now_ms(),
            },
        });
        self.store.write(changes)?;
        self.store.flush()?;
        Ok(())
    }

    /// Removes `token` if `user` owns it; true when something was removed. A token of another
    /// user is left alone (and the caller is not told whose it is). Durable when it returns.
    pub fn unregister(&self, user: &str, token: &str) -> Result<bool, TokenError> {
        validate_any(token)?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let owned = self.owner(token)?.as_deref() == Some(user);
        let stored = self.store.has_token(user, token)?;
        if !owned && !stored {
            return Ok(false);
        }
        let mut changes = vec![TokenChange::Drop {
            user: user.to_string(),
            token: token.to_string(),
        }];
        if owned {
            changes.push(TokenChange::DropOwner {
                token: token.to_string(),
            });
        }
        self.store.write(changes)?;
        self.store.flush()?;
        Ok(true)
    }

    /// Removes a token a push service called invalid, unless it was registered again since it
    /// was read (`ts` differs): a fresh registration of the same token must survive. Not
    /// flushed: after a crash the service simply refuses it once more.
    pub fn remove_invalid(&self, user: &str, token: &DeviceToken) -> Result<bool, RecordError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.store.token(user, &token.token)?;
        if current.as_ref() != Some(&token.record) {
            return Ok(false);
        }
        let mut changes = vec![TokenChange::Drop {
            user: user.to_string(),
            token: token.token.clone(),
        }];
        if self.owner(&token.token)?.as_deref() == Some(user) {
            changes.push(TokenChange::DropOwner {
                token: token.token.clone(),
            });
        }
        self.store.write(changes)?;
        Ok(true)
    }

    /// Every token of `user` (unreadable records are skipped).
    pub fn list(&self, user: &str) -> Result<Vec<DeviceToken>, RecordError> {
        self.store.tokens(user, MAX_TOKENS_PER_USER * 4)
    }

    /// True when `owner` (the owner index's user for `token`) still holds it: the token record
    /// is there and the account exists. A removed account's tokens are free for others.
    pub fn holder(&self, owner: &str, token: &str) -> Result<bool, RecordError> {
        self.store.holds(owner, token)
    }

    /// The user `token` belongs to, if any.
    pub fn owner(&self, token: &str) -> Result<Option<String>, RecordError> {
        self.store.owner(token)
    }
}

/// The changes that take `token` from `user` entirely: their record and the owner index.
fn forget(user: &str, token: String) -> [TokenChange; 2] {
    [
        TokenChange::Drop {
            user: user.to_string(),
            token: token.clone(),
        },
        TokenChange::DropOwner { token },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_embedded::keys;
    use chatd_embedded::push::EmbeddedPush;
    use chatd_kv::{KvStore, Op};

    /// Tokens on a sled store behind the embedded adapter, and the engine itself (to write
    /// account records as the accounts service does).
    fn tokens_and_store() -> (tempfile::TempDir, Tokens, Arc<dyn KvStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        // Token ownership needs the accounts to exist (their records' content does not matter).
        for user in ["bob", "carol"] {
            store
                .apply(vec![Op::Put(keys::account(user), b"{}".to_vec())])
                .unwrap();
        }
        let tokens = Tokens::new(
            Arc::new(EmbeddedPush::new(store.clone())),
            vec![Platform::Fcm, Platform::Apns],
        );
        (dir, tokens, store)
    }

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let (dir, tokens, _) = tokens_and_store();
        (dir, tokens)
    }

    #[test]
    fn validation() {
        assert!(validate(Platform::Apns, &"ab".repeat(32)).is_ok());
        assert!(validate(Platform::Apns, "xyz").is_err());
        assert!(validate(Platform::Apns, &"a".repeat(201)).is_err());
        assert!(validate(Platform::Fcm, "dXw1:APA91b-x_y.z").is_ok());
        for bad in ["", "a b", "a/b", "a\nb", "a?b", "a%2f", "é"] {
            assert!(validate(Platform::Fcm, bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            validate(Platform::Fcm, &"a".repeat(MAX_FCM_TOKEN + 1)),
            Err(TokenError::TooLong(_))
        ));
    }

    #[test]
    fn one_token_per_device_and_one_owner_per_token() {
        let (_dir, t) = tokens();
        t.register("bob", Some("phone"), Platform::Fcm, "t1")
            .unwrap();
        t.register("bob", Some("tablet"), Platform::Fcm, "t2")
            .unwrap();
        // The phone's new token replaces its old one.
        t.register("bob", Some("phone"), Platform::Fcm, "t3")
            .unwrap();
        let mut names: Vec<_> = t
            .list("bob")
            .unwrap()
            .into_iter()
            .map(|d| d.token)
            .collect();
        names.sort();
        assert_eq!(names, ["t2", "t3"]);
        assert_eq!(t.owner("t1").unwrap(), None);
        // Carol registers bob's tablet token: refused, it stays bob's.
        assert!(matches!(
            t.register("carol", None, Platform::Fcm, "t2"),
            Err(TokenError::HeldByOther)
        ));
        assert_eq!(t.owner("t2").unwrap().as_deref(), Some("bob"));
        assert!(t.list("carol").unwrap().is_empty());
        // Bob registers it from another device: it moves within bob.
        t.register("bob", Some("laptop"), Platform::Fcm, "t2")
            .unwrap();
        let laptop = t.list("bob").unwrap();
        assert_eq!(laptop.len(), 2);
        assert!(laptop
            .iter()
            .any(|d| d.token == "t2" && d.record.device.as_deref() == Some("laptop")));
        // Bob logs out on the tablet (unregisters): now carol may take it.
        assert!(t.unregister("bob", "t2").unwrap());
        t.register("carol", None, Platform::Fcm, "t2").unwrap();
        assert_eq!(t.owner("t2").unwrap().as_deref(), Some("carol"));
        let names: Vec<_> = t
            .list("bob")
            .unwrap()
            .into_iter()
            .map(|d| d.token)
            .collect();
        assert_eq!(names, ["t3"]);
        // Bob cannot unregister carol's token.
        assert!(!t.unregister("bob", "t2").unwrap());
        assert_eq!(t.list("carol").unwrap().len(), 1);
        assert!(t.unregister("carol", "t2").unwrap());
        assert!(t.list("carol").unwrap().is_empty());
        assert_eq!(t.owner("t2").unwrap(), None);
    }

    #[test]
    fn a_removed_account_or_a_dead_token_frees_it() {
        let (_dir, t, store) = tokens_and_store();
        t.register("bob", None, Platform::Fcm, "t1").unwrap();
        t.register("bob", Some("tab"), Platform::Fcm, "t2").unwrap();
        // The push service said t1 is dead: the next user may register it.
        let dead = t
            .list("bob")
            .unwrap()
            .into_iter()
            .find(|d| d.token == "t1")
            .unwrap();
        assert!(t.remove_invalid("bob", &dead).unwrap());
        t.register("carol", None, Platform::Fcm, "t1").unwrap();
        assert_eq!(t.owner("t1").unwrap().as_deref(), Some("carol"));
        // Bob's account is removed: his tokens are free.
        assert!(matches!(
            t.register("carol", Some("x"), Platform::Fcm, "t2"),
            Err(TokenError::HeldByOther)
        ));
        store.apply(vec![Op::Delete(keys::account("bob"))]).unwrap();
        t.register("carol", Some("x"), Platform::Fcm, "t2").unwrap();
        assert_eq!(t.owner("t2").unwrap().as_deref(), Some("carol"));
        assert!(t.list("bob").unwrap().is_empty());
    }

    #[test]
    fn oldest_tokens_are_evicted() {
        let (_dir, t) = tokens();
        for i in 0..MAX_TOKENS_PER_USER + 3 {
            t.register(
                "bob",
                Some(&format!("d{i}")),
                Platform::Fcm,
                &format!("tok{i}"),
            )
            .unwrap();
        }
        let list = t.list("bob").unwrap();
        assert_eq!(list.len(), MAX_TOKENS_PER_USER);
        assert!(list
            .iter()
            .any(|d| d.token == format!("tok{}", MAX_TOKENS_PER_USER + 2)));
    }

    #[test]
    fn unconfigured_platform_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let t = Tokens::new(Arc::new(EmbeddedPush::new(store)), vec![Platform::Fcm]);
        assert!(matches!(
            t.register("bob", None, Platform::Apns, "abcd"),
            Err(TokenError::NotConfigured("apns"))
        ));
    }

    #[test]
    fn invalid_token_removal_spares_a_fresh_registration() {
        let (_dir, t) = tokens();
        t.register("bob", None, Platform::Fcm, "t1").unwrap();
        let read = t.list("bob").unwrap().remove(0);
        let mut stale = read.clone();
        stale.record.ts -= 1;
        assert!(!t.remove_invalid("bob", &stale).unwrap());
        assert!(t.remove_invalid("bob", &read).unwrap());
        assert!(t.list("bob").unwrap().is_empty());
        assert_eq!(t.owner("t1").unwrap(), None);
    }
}
