//! A memory of recent successful password logins, so a device that reconnects (or a thousand
//! that reconnect after a restart) costs a keyed hash instead of an argon2 verification
//! (~60 ms of CPU and 19 MB each).
//!
//! Only successes are remembered, keyed by user and tied to the stored password hash: a
//! changed password or a removed account never matches again, and a wrong password always
//! pays full argon2. The remembered digest is a keyed BLAKE2b of the password under a random
//! per-process key, so it is useless outside this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blake2::digest::{FixedOutput, Mac};
use blake2::Blake2bMac512;
use rand::RngCore;

/// How long a successful login is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(3600);

/// Most users remembered; beyond it the cache starts over (it only saves work).
const MAX_ENTRIES: usize = 500_000;

struct Entry {
    /// The stored argon2 PHC string the password was verified against.
    phc: String,
    /// Keyed digest of the password.
    digest: [u8; 64],
    /// When it was verified.
    at: Instant,
}

/// Recent successful logins.
pub struct VerifiedLogins {
    key: [u8; 32],
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for VerifiedLogins {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        VerifiedLogins {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl VerifiedLogins {
    fn digest(&self, user: &str, password: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        // A 32-byte key is always a valid BLAKE2b key; on the impossible error the digest
        // stays zero and is simply never remembered (see `remember`).
        if let Ok(mut mac) = <Blake2bMac512 as Mac>::new_from_slice(&self.key) {
            mac.update(user.as_bytes());
            mac.update(&[0]);
            mac.update(password.as_bytes());
            out.copy_from_slice(&mac.finalize_fixed());
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `password` was verified for `user` against the stored hash `phc` within
    /// [`VERIFIED_TTL`].
    pub fn matches(&self, user: &str, phc: &str, password: &str) -> bool {
        let digest = self.digest(user, password);
        let entries = self.lock();
        entries.get(user).is_some_and(|e| {
            e.phc == phc
                && e.at.elapsed() < VERIFIED_TTL
                && digest != [0u8; 64]
                && constant_time_eq(&e.digest, &digest)
        })
    }

    /// Remembers a successful argon2 verification of `password` for `user` against `phc`.
    pub fn remember(&self, user: &str, phc: &str, password: &str) {
        let digest = self.digest(user, password);
        if digest == [0u8; 64] {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(user) {
            entries.clear();
        }
        entries.insert(
            user.to_string(),
            Entry {
                phc: phc.to_string(),
                digest,
                at: Instant::now(),
            },
        );
    }

    /// Forgets `user` (password changed or account removed).
    pub fn forget(&self, user: &str) {
        self.lock().remove(user);
    }
}

/// Compares without an early exit, so the time taken does not tell how many bytes matched.
fn constant_time_eq(a: &[u8; 64], b: &[u8; 64]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_remembered_password_and_hash_match() {
        let v = VerifiedLogins::default();
        assert!(!v.matches("alice", "$phc1", "pw"));
        v.remember("alice", "$phc1", "pw");
        assert!(v.matches("alice", "$phc1", "pw"));
        assert!(!v.matches("alice", "$phc1", "pw2"));
        assert!(
            !v.matches("alice", "$phc2", "pw"),
            "a changed hash never matches"
        );
        assert!(!v.matches("bob", "$phc1", "pw"));
        v.forget("alice");
        assert!(!v.matches("alice", "$phc1", "pw"));
    }
}
