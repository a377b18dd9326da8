//! Live deliveries of queued entries that arrive while a session still reads its queue from the
//! store, held until the read comes to their ids.
//!
//! Why: the queue is the user's, shared by the user's devices. A session that is replaying used
//! to drop such a delivery, since the read would find the entry in the store; but when another
//! device of the user acknowledged it meanwhile, it has left the queue, and the device never got
//! the new message live. Held, it is sent when the read passes its id without finding it (or
//! reaches the end), so the replay still sends in id order; when the read finds it, the held copy
//! is dropped.
//!
//! Bounded: at most [`MAX_HELD`] deliveries and `limits.max_session_buffer_bytes` of payload;
//! a delivery past either is not held, and the read alone brings it (as before). Their bytes
//! are reported to the hub with those in flight, so what a session holds for its client —
//! deliveries waiting or held, PUBLISHes in flight — stays within that one budget.

use std::collections::BTreeMap;

use bytes::Bytes;
use chatd_core::outbox::Channel;

/// Deliveries held at most per session.
pub const MAX_HELD: usize = 64;

/// One held delivery.
#[derive(Debug)]
pub struct HeldItem {
    /// Its channel (the subscription is checked again when it is sent).
    pub channel: Channel,
    /// Its payload.
    pub payload: Bytes,
}

/// The deliveries one session holds, by queue id.
#[derive(Debug, Default)]
pub struct Held {
    items: BTreeMap<String, HeldItem>,
    bytes: usize,
}

impl Held {
    /// Holds `item` as queue entry `id`; false (not held) past the bounds.
    pub fn hold(&mut self, id: String, item: HeldItem, max_bytes: usize) -> bool {
        let size = item.payload.len();
        if self.items.contains_key(&id) {
            return true;
        }
        if self.items.len() >= MAX_HELD || self.bytes + size > max_bytes {
            return false;
        }
        self.bytes += size;
        self.items.insert(id, item);
        true
    }

    /// The read found entry `id`: its held copy, if any, is not needed.
    pub fn found(&mut self, id: &str) {
        if let Some(item) = self.items.remove(id) {
            self.bytes -= item.payload.len();
        }
    }

    /// The lowest held entry below `id` (all of them when `None`), taken out.
    pub fn take_below(&mut self, id: Option<&str>) -> Option<(String, HeldItem)> {
        let first = self.items.first_key_value()?.0;
        if id.is_some_and(|id| first.as_str() >= id) {
            return None;
        }
        let (id, item) = self.items.pop_first()?;
        self.bytes -= item.payload.len();
        Some((id, item))
    }

    /// Whether an entry below `id` (any entry, when `None`) is held.
    pub fn has_below(&self, id: Option<&str>) -> bool {
        self.items
            .first_key_value()
            .is_some_and(|(first, _)| id.is_none_or(|id| first.as_str() < id))
    }

    /// The bytes of the payloads held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything held.
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> HeldItem {
        HeldItem {
            channel: Channel::Inbox,
            payload: Bytes::from(vec![b'x'; n]),
        }
    }

    #[test]
    fn holds_within_bounds_and_gives_back_in_id_order() {
        let mut held = Held::default();
        assert!(held.hold("3".into(), item(10), 100));
        assert!(held.hold("1".into(), item(10), 100));
        assert!(held.hold("2".into(), item(10), 100));
        assert!(!held.hold("4".into(), item(80), 100), "past the bytes");
        held.found("2");
        assert!(held.has_below(Some("2")));
        assert_eq!(
            held.take_below(Some("2")).map(|(id, _)| id),
            Some("1".into())
        );
        assert!(!held.has_below(Some("2")));
        assert_eq!(held.take_below(Some("2")).map(|(id, _)| id), None);
        assert_eq!(held.take_below(None).map(|(id, _)| id), Some("3".into()));
        assert_eq!(held.bytes, 0);
        for i in 0..MAX_HELD {
            assert!(held.hold(format!("{i:03}"), item(1), usize::MAX));
        }
        assert!(
            !held.hold("999".into(), item(1), usize::MAX),
            "past the count"
        );
        held.clear();
        assert!(!held.has_below(None));
    }
}
