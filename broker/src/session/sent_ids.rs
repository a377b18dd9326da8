//! The queued ids a session of a cluster node has written to its client (or passed over),
//! remembered so that a live delivery numbered below the highest id sent can be told apart: sent
//! already, or new to this client.
//!
//! Why: in a cluster each node numbers with its own generator, so an entry committed later may
//! carry a lower id than one already sent. The queue is the user's, shared by the user's devices:
//! when another device acknowledged that entry first, it has left the queue, and the delivery in
//! hand is the only way this device gets it live.
//!
//! Bounded: at most [`MAX_REMEMBERED`] ids, the highest ones. What is forgotten raises a floor;
//! of an id at or below the floor nothing is known (the session then reads its queue instead, as
//! it did before it remembered any). Ids are kept packed in 16 bytes, in a B-tree whose nodes
//! are at least half full, so a session holds under 24 KiB for them, whatever its client does:
//! the set grows with what is written, not with what the client acknowledges or leaves waiting.
//! Only sessions of cluster nodes keep it.

use std::collections::BTreeSet;

/// Ids remembered at most per session.
pub const MAX_REMEMBERED: usize = 512;

/// What is known of a queued id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Written to the client (or passed over) by this session.
    Sent,
    /// Not sent: above the floor and not remembered.
    New,
    /// At or below the floor (or not an id of the generators' form): may have been sent.
    Unknown,
}

/// The remembered ids of one session.
#[derive(Debug, Default)]
pub struct SentIds {
    ids: BTreeSet<u128>,
    /// The highest id forgotten; every id sent above it is in `ids`.
    floor: Option<u128>,
}

/// An id of the form `{ms:013}-{node:05}-{seq:05}` as one number that sorts as the string does.
fn pack(id: &str) -> Option<u128> {
    if !chatd_wire::ids::valid_message_id(id) {
        return None;
    }
    let ms: u128 = id.get(..13)?.parse().ok()?;
    let node: u128 = id.get(14..19)?.parse().ok()?;
    let seq: u128 = id.get(20..)?.parse().ok()?;
    Some((ms * 100_000 + node) * 100_000 + seq)
}

impl SentIds {
    /// Queued id `id` was sent (or passed over).
    pub fn insert(&mut self, id: &str) {
        let Some(n) = pack(id) else {
            return;
        };
        if self.floor.is_some_and(|f| n <= f) {
            return;
        }
        self.ids.insert(n);
        if self.ids.len() > MAX_REMEMBERED {
            self.floor = self.ids.pop_first().max(self.floor);
        }
    }

    /// What is known of `id`.
    pub fn knows(&self, id: &str) -> Known {
        match pack(id) {
            Some(n) if self.ids.contains(&n) => Known::Sent,
            Some(n) if self.floor.is_none_or(|f| n > f) => Known::New,
            _ => Known::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, node: u16, seq: u32) -> String {
        format!("{ms:013}-{node:05}-{seq:05}")
    }

    #[test]
    fn packing_keeps_the_order_of_the_strings() {
        let ids = [
            id(1, 2, 3),
            id(1, 2, 99_999),
            id(1, 3, 0),
            id(2, 0, 0),
            id(9_999_999_999_999, 65_535, 99_999),
        ];
        for pair in ids.windows(2) {
            assert!(pack(&pair[0]) < pack(&pair[1]), "{pair:?}");
        }
        assert_eq!(pack("garbage"), None);
    }

    #[test]
    fn remembers_the_highest_and_knows_nothing_below_what_it_forgot() {
        let mut sent = SentIds::default();
        assert_eq!(sent.knows(&id(5, 1, 0)), Known::New);
        for ms in 0..MAX_REMEMBERED as u64 + 10 {
            sent.insert(&id(1000 + ms, 1, 0));
        }
        assert_eq!(sent.ids.len(), MAX_REMEMBERED);
        // The ten lowest were forgotten.
        assert_eq!(sent.knows(&id(1009, 1, 0)), Known::Unknown);
        assert_eq!(sent.knows(&id(1005, 2, 0)), Known::Unknown);
        assert_eq!(sent.knows(&id(1010, 1, 0)), Known::Sent);
        // Between two remembered ids: another node's entry, never sent.
        assert_eq!(sent.knows(&id(1010, 2, 0)), Known::New);
        assert_eq!(sent.knows("not an id"), Known::Unknown);
        // Below the floor is not remembered again.
        sent.insert(&id(3, 1, 0));
        assert_eq!(sent.ids.len(), MAX_REMEMBERED);
        assert_eq!(sent.knows(&id(3, 1, 0)), Known::Unknown);
    }
}
