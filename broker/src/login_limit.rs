//! Login brute-force protection without a lockout switch: failed logins are counted per user
//! *and source address*, per source address, and per user across all addresses, and a CONNECT
//! that is over budget is refused before any password is hashed, so guessing costs the attacker
//! a round trip and the server a map lookup.
//!
//! * **Per user and source address** (`per_user`): the budget that stops one address guessing
//!   one user's password. It is the address's, so failures from an attacker's address never
//!   refuse the user's logins from any other address.
//! * **Per source address** (`per_source`): stops one address spraying guesses over many users.
//! * **Per user, all addresses** (twice `per_user`): when it is used up the user is being
//!   guessed at from several addresses. This never refuses an address by itself: it only slows down
//!   those that failed for the user within the last `window` — each of them gets one guess per
//!   window instead of `per_user` — so a botnet gets one guess per address and window, while an
//!   address that did not fail (the user's own phone, a new network) is let in as usual.
//!
//! Each budget is a token bucket holding `limit` tokens that refills at `limit` per `window`.
//! Every login attempt takes one token from each bucket *before* its credentials are checked
//! (so a thousand parallel guesses cannot all slip past the check), and a successful one gives
//! them back and clears its address's failures for the user: only failures consume the budget.
//! An empty bucket refuses the CONNECT; one token comes back every `window / limit`, so a user
//! who mistyped is let in again within a window, without any reset.
//!
//! Memory is bounded: a bucket that is full again is forgotten, and each table holds at most
//! [`MAX_ENTRIES`] keys. When a table is full of buckets that are not full (a distributed attack
//! on that many users or addresses), it forgets the fullest half that still has tokens; when
//! every entry is an exhausted bucket, new keys are admitted without being counted until room
//! frees up — the buckets already exhausted stay enforced.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::source_addr::SourceKey;

/// Most keys one table tracks (about 100 bytes each).
pub const MAX_ENTRIES: usize = 100_000;

/// The user-wide budget is this many times the per-address one, so that one address alone
/// (an attacker, or the user mistyping) never slows down the user's other addresses.
const USER_WIDE_FACTOR: u32 = 2;

/// Least time between two sweeps of a full table, so a flood of new keys cannot make every
/// attempt pay for a sweep.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the login limits (from `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimitConfig {
    /// Failed logins allowed per user from one source address within `window`, and per user
    /// from all addresses before those that failed are slowed down (0: no per-user limit).
    pub per_user: u32,
    /// Failed logins allowed per source address within `window` (0: no per-address limit).
    pub per_source: u32,
    /// The window the budgets refill over.
    pub window: Duration,
}

/// Which budget refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The user had too many failed logins from this source address.
    User,
    /// The user had too many failed logins from all addresses, and this one failed for it
    /// within the window.
    Spread,
    /// The source address had too many failed logins.
    Source,
}

/// A user's failures from one source address.
type PairKey = (String, SourceKey);

/// The failed-login budgets of every user and source address (clones share them).
#[derive(Clone)]
pub struct LoginLimiter {
    pairs: Option<Arc<Table<PairKey>>>,
    users: Option<Arc<Table<String>>>,
    sources: Option<Arc<Table<SourceKey>>>,
    window: Duration,
}

/// One admitted login attempt: its tokens are taken; [`Admission::succeeded`] gives them back.
/// Dropping it without that leaves them taken (the attempt failed).
#[must_use = "call succeeded() when the credentials were right"]
pub struct Admission {
    pair: Option<(Arc<Table<PairKey>>, PairKey)>,
    user: Option<(Arc<Table<String>>, String)>,
    source: Option<(Arc<Table<SourceKey>>, SourceKey)>,
}

impl Admission {
    /// The credentials were right (or the attempt ended for a reason that is not the client's
    /// fault): the attempt costs nothing, and the address's earlier failures for the user are
    /// forgotten (it proved that it knows the password).
    pub fn succeeded(self) {
        if let Some((table, key)) = &self.pair {
            table.forget(key);
        }
        if let Some((table, key)) = &self.user {
            table.refund(key);
        }
        if let Some((table, key)) = &self.source {
            table.refund(key);
        }
    }

    /// The attempt ended for a reason that is not the client's fault (the server could not
    /// check): every token goes back, nothing is forgotten.
    pub fn not_counted(self) {
        if let Some((table, key)) = &self.pair {
            table.refund(key);
        }
        if let Some((table, key)) = &self.user {
            table.refund(key);
        }
        if let Some((table, key)) = &self.source {
            table.refund(key);
        }
    }
}

impl LoginLimiter {
    /// Limits as configured; a limit of 0 turns that table off.
    pub fn new(cfg: LoginLimitConfig) -> LoginLimiter {
        LoginLimiter {
            pairs: (cfg.per_user > 0).then(|| Arc::new(Table::new(cfg.per_user, cfg.window))),
            users: (cfg.per_user > 0).then(|| {
                let limit = cfg.per_user.saturating_mul(USER_WIDE_FACTOR);
                Arc::new(Table::new(limit, cfg.window))
            }),
            sources: (cfg.per_source > 0).then(|| Arc::new(Table::new(cfg.per_source, cfg.window))),
            window: cfg.window,
        }
    }

    /// Takes one token from `source`'s, `user`'s from `source` and `user`'s buckets for a
    /// login attempt, or says which budget is used up (then nothing is taken).
    pub fn admit(&self, user: &str, source: SourceKey) -> Result<Admission, Limited> {
        let now = Instant::now();
        let source_taken = match &self.sources {
            Some(table) => {
                if !table.take(&source, now) {
                    return Err(Limited::Source);
                }
                Some((table.clone(), source))
            }
            None => None,
        };
        let give_back = |taken: &Option<(Arc<Table<SourceKey>>, SourceKey)>| {
            if let Some((table, key)) = taken {
                table.refund(key);
            }
        };
        let (Some(pairs), Some(users)) = (&self.pairs, &self.users) else {
            return Ok(Admission {
                pair: None,
                user: None,
                source: source_taken,
            });
        };
        let pair = (user.to_string(), source);
        let user = user.to_string();
        if pairs.is_empty(&pair, now) {
            give_back(&source_taken);
            return Err(Limited::User);
        }
        if users.is_empty(&user, now) && pairs.failed_within(&pair, now, self.window) {
            give_back(&source_taken);
            return Err(Limited::Spread);
        }
        if !pairs.take(&pair, now) {
            give_back(&source_taken);
            return Err(Limited::User);
        }
        // The user-wide budget never refuses by itself (see the module docs): when it is empty
        // no token is taken, and none is given back.
        let user_taken = users.take(&user, now).then(|| (users.clone(), user));
        Ok(Admission {
            pair: Some((pairs.clone(), pair)),
            user: user_taken,
            source: source_taken,
        })
    }

    /// Which budget, if any, is used up for `user` from `source` right now; takes nothing.
    /// Lets a CONNECT be refused before it waits for a password-hashing slot.
    pub fn exhausted(&self, user: &str, source: SourceKey) -> Option<Limited> {
        let now = Instant::now();
        if let Some(table) = &self.sources {
            if table.is_empty(&source, now) {
                return Some(Limited::Source);
            }
        }
        if let (Some(pairs), Some(users)) = (&self.pairs, &self.users) {
            let pair = (user.to_string(), source);
            if pairs.is_empty(&pair, now) {
                return Some(Limited::User);
            }
            if users.is_empty(&user.to_string(), now)
                && pairs.failed_within(&pair, now, self.window)
            {
                return Some(Limited::Spread);
            }
        }
        None
    }

    /// Keys tracked (user and address pairs, users, sources), for tests and diagnostics.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize, usize) {
        (
            self.pairs.as_ref().map_or(0, |t| t.lock().buckets.len()),
            self.users.as_ref().map_or(0, |t| t.lock().buckets.len()),
            self.sources.as_ref().map_or(0, |t| t.lock().buckets.len()),
        )
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Inner<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

/// Token buckets of one kind of key.
struct Table<K> {
    capacity: f64,
    per_sec: f64,
    inner: Mutex<Inner<K>>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limit: u32, window: Duration) -> Table<K> {
        let capacity = f64::from(limit);
        Table {
            capacity,
            per_sec: capacity / window.as_secs_f64().max(0.001),
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // The map stays consistent whatever panicked while it was held.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tokens of `b` at `now`.
    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec;
        (b.tokens + refill).min(self.capacity)
    }

    /// Whether `key`'s bucket has no token left.
    fn is_empty(&self, key: &K, now: Instant) -> bool {
        let inner = self.lock();
        inner
            .buckets
            .get(key)
            .is_some_and(|b| self.level(b, now) < 1.0)
    }

    /// Whether `key`'s bucket lost a token (a failure) that has not come back, taken within
    /// `within` of `now`.
    fn failed_within(&self, key: &K, now: Instant, within: Duration) -> bool {
        let inner = self.lock();
        inner.buckets.get(key).is_some_and(|b| {
            self.level(b, now) < self.capacity && now.saturating_duration_since(b.at) < within
        })
    }

    /// Drops `key`'s bucket: it starts full again.
    fn forget(&self, key: &K) {
        self.lock().buckets.remove(key);
    }

    /// Takes a token for `key`; false when its bucket is empty.
    fn take(&self, key: &K, now: Instant) -> bool {
        let mut inner = self.lock();
        if let Some(b) = inner.buckets.get(key).copied() {
            let tokens = self.level(&b, now);
            if tokens < 1.0 {
                return false;
            }
            inner.buckets.insert(
                key.clone(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
            return true;
        }
        if inner.buckets.len() >= MAX_ENTRIES && !self.sweep(&mut inner, now) {
            // Full of exhausted buckets: admit without counting rather than refuse everyone.
            return true;
        }
        inner.buckets.insert(
            key.clone(),
            Bucket {
                tokens: self.capacity - 1.0,
                at: now,
            },
        );
        true
    }

    /// Gives back a token taken by [`Table::take`]; a bucket that is full again is forgotten.
    fn refund(&self, key: &K) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(b) = inner.buckets.get(key).copied() else {
            return;
        };
        let tokens = self.level(&b, now) + 1.0;
        if tokens >= self.capacity {
            inner.buckets.remove(key);
        } else {
            inner
                .buckets
                .insert(key.clone(), Bucket { tokens, at: now });
        }
    }

    /// Makes room in a full table; false when no room could be made.
    fn sweep(&self, inner: &mut Inner<K>, now: Instant) -> bool {
        if inner
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL)
        {
            return false;
        }
        inner.last_sweep = Some(now);
        // Full buckets carry no information.
        inner
            .buckets
            .retain(|_, b| self.level(b, now) < self.capacity);
        if inner.buckets.len() < MAX_ENTRIES * 3 / 4 {
            return true;
        }
        // Still crowded: forget the buckets with the most tokens left (the least suspicious),
        // down to half, keeping every exhausted one.
        let mut levels: Vec<f64> = inner
            .buckets
            .values()
            .map(|b| self.level(b, now))
            .filter(|t| *t >= 1.0)
            .collect();
        if levels.is_empty() {
            return false;
        }
        let excess = inner.buckets.len().saturating_sub(MAX_ENTRIES / 2);
        let cut = levels.len().saturating_sub(excess.min(levels.len()));
        levels.sort_by(|a, b| a.total_cmp(b));
        let threshold = levels.get(cut).copied().unwrap_or(f64::INFINITY);
        inner
            .buckets
            .retain(|_, b| self.level(b, now) < threshold.max(1.0));
        inner.buckets.len() < MAX_ENTRIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn source(s: &str) -> SourceKey {
        SourceKey::of(s.parse::<IpAddr>().unwrap())
    }

    fn limiter(per_user: u32, per_source: u32, window_ms: u64) -> LoginLimiter {
        LoginLimiter::new(LoginLimitConfig {
            per_user,
            per_source,
            window: Duration::from_millis(window_ms),
        })
    }

    #[test]
    fn failures_use_up_the_user_budget_and_successes_do_not() {
        let l = limiter(3, 100, 60_000);
        let ip = source("10.0.0.1");
        for _ in 0..10 {
            l.admit("alice", ip).unwrap().succeeded();
        }
        for _ in 0..3 {
            drop(l.admit("alice", ip).unwrap());
        }
        assert_eq!(l.admit("alice", ip).err(), Some(Limited::User));
        // Another user from the same address is not affected.
        l.admit("bob", ip).unwrap().succeeded();
        // A refusal takes nothing from the address either.
        assert_eq!(l.tracked(), (1, 1, 1));
    }

    #[test]
    fn failures_from_one_address_never_refuse_the_user_elsewhere() {
        let l = limiter(3, 100, 60_000);
        let attacker = source("10.0.1.1");
        for _ in 0..3 {
            drop(l.admit("alice", attacker).unwrap());
        }
        assert_eq!(l.admit("alice", attacker).err(), Some(Limited::User));
        assert_eq!(l.exhausted("alice", attacker), Some(Limited::User));
        // The user's own address: no failure there, so neither budget refuses it.
        let home = source("10.0.1.2");
        assert_eq!(l.exhausted("alice", home), None);
        l.admit("alice", home).unwrap().succeeded();
        l.admit("alice", home).unwrap().succeeded();
    }

    #[test]
    fn spread_guessing_gets_one_guess_per_address_and_window() {
        let l = limiter(3, 100, 60_000);
        // Six addresses use up the user-wide budget (twice the per-address one), one failure
        // each.
        for i in 0..6 {
            drop(l.admit("alice", source(&format!("10.0.2.{i}"))).unwrap());
        }
        // Those addresses are slowed down: no second guess within the window…
        for i in 0..6 {
            let ip = source(&format!("10.0.2.{i}"));
            assert_eq!(l.exhausted("alice", ip), Some(Limited::Spread));
            assert_eq!(l.admit("alice", ip).err(), Some(Limited::Spread));
        }
        // …while a fresh address gets its guess (and is then slowed down too),
        let fresh = source("10.0.2.9");
        drop(l.admit("alice", fresh).unwrap());
        assert_eq!(l.admit("alice", fresh).err(), Some(Limited::Spread));
        // and a right password from a new address always gets in.
        l.admit("alice", source("10.0.2.10")).unwrap().succeeded();
        // Other users are not affected.
        drop(l.admit("bob", source("10.0.2.0")).unwrap());
    }

    #[test]
    fn a_success_clears_the_address_failures_for_the_user() {
        let l = limiter(3, 100, 60_000);
        let ip = source("10.0.3.1");
        drop(l.admit("alice", ip).unwrap());
        drop(l.admit("alice", ip).unwrap());
        l.admit("alice", ip).unwrap().succeeded();
        // The pair is forgotten (full again): three more failures before a refusal.
        assert_eq!(l.tracked().0, 0);
        for _ in 0..3 {
            drop(l.admit("alice", ip).unwrap());
        }
        assert_eq!(l.admit("alice", ip).err(), Some(Limited::User));
    }

    #[test]
    fn failures_use_up_the_source_budget_across_users() {
        let l = limiter(100, 4, 60_000);
        let ip = source("10.0.0.2");
        for i in 0..4 {
            drop(l.admit(&format!("u{i}"), ip).unwrap());
        }
        assert_eq!(l.admit("someone", ip).err(), Some(Limited::Source));
        l.admit("someone", source("10.0.0.3")).unwrap().succeeded();
    }

    #[test]
    fn the_budget_refills_over_the_window() {
        let l = limiter(2, 0, 200);
        let ip = source("10.0.0.4");
        drop(l.admit("carol", ip).unwrap());
        drop(l.admit("carol", ip).unwrap());
        assert!(l.admit("carol", ip).is_err());
        let deadline = Instant::now() + Duration::from_secs(10);
        while l.admit("carol", ip).is_err() {
            assert!(Instant::now() < deadline, "no token came back");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn zero_turns_a_table_off() {
        let l = limiter(0, 0, 1000);
        for _ in 0..1000 {
            drop(l.admit("dave", source("10.0.0.5")).unwrap());
        }
        assert_eq!(l.tracked(), (0, 0, 0));
    }

    #[test]
    fn a_user_refusal_gives_the_source_token_back() {
        let l = limiter(1, 2, 60_000);
        let ip = source("10.0.0.6");
        drop(l.admit("erin", ip).unwrap());
        assert_eq!(l.admit("erin", ip).err(), Some(Limited::User));
        assert_eq!(l.admit("erin", ip).err(), Some(Limited::User));
        // One source token left.
        drop(l.admit("frank", ip).unwrap());
        assert_eq!(l.admit("grace", ip).err(), Some(Limited::Source));
    }

    #[test]
    fn tables_stay_bounded_under_many_keys() {
        let l = limiter(5, 0, 60_000);
        let ip = source("10.0.0.7");
        for i in 0..MAX_ENTRIES + 1000 {
            drop(l.admit(&format!("user{i}"), ip).unwrap());
        }
        let (pairs, users, _) = l.tracked();
        assert!(pairs <= MAX_ENTRIES, "{pairs} entries");
        assert!(users <= MAX_ENTRIES, "{users} entries");
        // Exhausted buckets survive the sweep.
        for _ in 0..5 {
            drop(l.admit("target", ip));
        }
        assert!(l.admit("target", ip).is_err());
    }
}
