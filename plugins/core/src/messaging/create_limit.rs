//! `limits.groups_created_per_hour`: how many groups one user may create, as a token bucket per
//! user that holds `per_hour` tokens and refills at `per_hour` an hour. Without it one account
//! could create thousands of groups a second, each with anyone as a member.
//!
//! A creation takes a token before it goes to the committer; one the committer refuses (unknown
//! members, a member in too many groups…) changed nothing and gets its token back.
//!
//! Memory is bounded: only authenticated users have buckets, a bucket that is full again is
//! forgotten, and at most [`MAX_TRACKED`] users are tracked — when that many are, the fullest
//! half is forgotten (they lose at most half a budget of history).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most users whose buckets are kept at once.
const MAX_TRACKED: usize = 100_000;

/// One user's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens left at `at`.
    tokens: f64,
    /// When `tokens` was computed.
    at: Instant,
}

/// The group-creation budgets of every user.
#[derive(Debug)]
pub struct CreateLimit {
    /// Tokens per hour, also the bucket size; 0 turns the limit off.
    per_hour: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl CreateLimit {
    /// A limit of `per_hour` creations per user per hour (0: no limit).
    pub fn new(per_hour: u32) -> CreateLimit {
        CreateLimit {
            per_hour,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `user`; `Err(wait)` when none is left, with how long until one is.
    pub fn take(&self, user: &str) -> Result<(), Duration> {
        self.take_at(user, Instant::now())
    }

    /// Gives back the token of a creation that changed nothing.
    pub fn give_back(&self, user: &str) {
        if self.per_hour == 0 {
            return;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get_mut(user) {
            let tokens = self.refilled(b, now) + 1.0;
            if tokens >= self.capacity() {
                buckets.remove(user);
            } else {
                *b = Bucket { tokens, at: now };
            }
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_hour)
    }

    /// Tokens per second.
    fn rate(&self) -> f64 {
        self.capacity() / 3600.0
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate()).min(self.capacity())
    }

    fn take_at(&self, user: &str, now: Instant) -> Result<(), Duration> {
        if self.per_hour == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = match buckets.get(user) {
            Some(b) => self.refilled(b, now),
            None => {
                if buckets.len() >= MAX_TRACKED {
                    self.forget_fullest(&mut buckets, now);
                }
                self.capacity()
            }
        };
        if tokens < 1.0 {
            let wait = (1.0 - tokens) / self.rate();
            return Err(Duration::from_secs_f64(wait.max(0.0)));
        }
        buckets.insert(
            user.to_string(),
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Drops the buckets that have refilled, and if that is not enough the fullest half.
    fn forget_fullest(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let cap = self.capacity();
        buckets.retain(|_, b| self.refilled(b, now) < cap);
        if buckets.len() < MAX_TRACKED {
            return;
        }
        let mut levels: Vec<f64> = buckets.values().map(|b| self.refilled(b, now)).collect();
        levels.sort_by(f64::total_cmp);
        let median = levels[levels.len() / 2];
        buckets.retain(|_, b| self.refilled(b, now) < median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_refills_and_is_per_user() {
        let limit = CreateLimit::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.take_at("alice", t0).is_ok());
        }
        let wait = limit
            .take_at("alice", t0)
            .expect_err("4th in the same instant");
        // One token every 20 minutes.
        assert!((1199..=1200).contains(&wait.as_secs()), "{wait:?}");
        assert!(limit.take_at("bob", t0).is_ok());
        assert!(limit
            .take_at("alice", t0 + Duration::from_secs(1201))
            .is_ok());
        assert!(limit
            .take_at("alice", t0 + Duration::from_secs(1201))
            .is_err());
    }

    #[test]
    fn a_refused_creation_gives_its_token_back_and_zero_is_off() {
        let limit = CreateLimit::new(1);
        assert!(limit.take("alice").is_ok());
        assert!(limit.take("alice").is_err());
        limit.give_back("alice");
        assert!(limit.take("alice").is_ok());
        let off = CreateLimit::new(0);
        for _ in 0..1000 {
            assert!(off.take("alice").is_ok());
        }
    }
}
