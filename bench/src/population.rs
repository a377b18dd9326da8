//! The users and 1:1 conversations of a generated store (`chatbench generate`), computed rather
//! than stored, so that `chatbench reads` and `chatbench replay` find the same users and peers
//! the generator wrote without reading the store.
//!
//! User `i` of `n` is `{prefix}{i}`; it talks with the `peers` users nearest to it on a ring
//! (`peers / 2` on each side), so every user has the same number of conversations and there
//! are `n * peers / 2` of them. User 0 is the one whose queue is left undelivered.

/// Who exists and who talks to whom.
#[derive(Debug, Clone)]
pub struct Population {
    /// User ids are `{prefix}{i}`.
    pub prefix: String,
    /// Number of users.
    pub users: u32,
    /// Conversation partners per user (even).
    pub peers: u32,
}

impl Population {
    /// The id of user `i`.
    pub fn user(&self, i: u32) -> String {
        format!("{}{i}", self.prefix)
    }

    /// The user whose queue the generator leaves undelivered (`chatbench replay` connects it).
    pub fn queued_user(&self) -> String {
        self.user(0)
    }

    /// Number of distinct 1:1 conversations.
    pub fn conversations(&self) -> u64 {
        u64::from(self.users) * u64::from(self.peers / 2)
    }

    /// The two users (by index) of conversation `c` (`c < conversations()`).
    pub fn conversation(&self, c: u64) -> (u32, u32) {
        let half = u64::from(self.peers / 2).max(1);
        let a = (c / half) as u32;
        let step = (c % half) as u32 + 1;
        (a, (a + step) % self.users)
    }

    /// The `k`-th conversation partner of user `i` (`k < peers`): alternately after and before
    /// it on the ring.
    pub fn peer(&self, i: u32, k: u32) -> u32 {
        let step = k / 2 + 1;
        if k.is_multiple_of(2) {
            (i + step) % self.users
        } else {
            (i + self.users - step % self.users) % self.users
        }
    }
}

/// A small deterministic random number generator (SplitMix64): runs with the same seed pick the
/// same messages and the same users to read.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop(users: u32, peers: u32) -> Population {
        Population {
            prefix: "g".into(),
            users,
            peers,
        }
    }

    #[test]
    fn every_conversation_is_between_ring_neighbours() {
        let p = pop(10, 4);
        assert_eq!(p.conversations(), 20);
        assert_eq!(p.conversation(0), (0, 1));
        assert_eq!(p.conversation(1), (0, 2));
        assert_eq!(p.conversation(19), (9, 1));
        // Each conversation is counted once: no pair appears twice, in either order.
        let mut seen = std::collections::HashSet::new();
        for c in 0..p.conversations() {
            let (a, b) = p.conversation(c);
            assert!(seen.insert((a.min(b), a.max(b))), "{a} {b} twice");
        }
    }

    #[test]
    fn peers_are_the_conversation_partners() {
        let p = pop(10, 4);
        let peers: Vec<u32> = (0..4).map(|k| p.peer(0, k)).collect();
        assert_eq!(peers, vec![1, 9, 2, 8]);
        for c in 0..p.conversations() {
            let (a, b) = p.conversation(c);
            assert!((0..4).any(|k| p.peer(a, k) == b));
            assert!((0..4).any(|k| p.peer(b, k) == a));
        }
        assert_eq!(p.queued_user(), "g0");
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.below(13);
            assert_eq!(x, b.below(13));
            assert!(x < 13);
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
