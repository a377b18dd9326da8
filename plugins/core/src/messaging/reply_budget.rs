//! The byte budget of replies that list stored things (`conversations`, `history`,
//! `group.info`): a reply stops adding entries before its JSON passes the budget
//! (`ChatConfig::max_reply_bytes`, half the packet size limit), and an entry too big on its own
//! is shortened rather than left out, so every reply fits in a packet and still moves on.
//!
//! One group message can name up to two lists of ~1023 members in its receipts; a `history`
//! page of 100 of them once came to ~13 MB.

use serde::Serialize;

use crate::records::chat::Message;

/// Room kept in a budget for what surrounds the entries: `rid` (at most 128 characters, up to
/// six bytes each once escaped), `ok`, `more`, `next` and the like.
pub const ENVELOPE_BYTES: usize = 1024;

/// The size of `item` as JSON.
pub fn encoded_len<T: Serialize>(item: &T) -> usize {
    serde_json::to_vec(item).map_or(0, |v| v.len())
}

/// A reply entry built around one message, which can be shortened to fit.
pub trait Trimmable: Serialize {
    /// The message whose lists and text go first.
    fn message(&mut self) -> &mut Message;
    /// Marks the entry as shortened (`trimmed: true` in the reply).
    fn mark_trimmed(&mut self);
}

impl Trimmable for Message {
    fn message(&mut self) -> &mut Message {
        self
    }

    fn mark_trimmed(&mut self) {
        self.trimmed = true;
    }
}

/// What is left of one reply's budget while its entries are added.
pub struct Room {
    /// Bytes the entries may still take.
    left: usize,
    /// No entry taken yet.
    empty: bool,
}

impl Room {
    /// The room of a reply of at most `budget` bytes.
    pub fn new(budget: usize) -> Room {
        Room {
            left: budget.saturating_sub(ENVELOPE_BYTES),
            empty: true,
        }
    }

    /// Whether `size` more bytes fit; taken when they do.
    pub fn fits(&mut self, size: usize) -> bool {
        if size > self.left {
            return false;
        }
        self.left -= size;
        self.empty = false;
        true
    }

    /// Takes `entry` when it fits. The first entry is always taken, shortened (see [`shorten`])
    /// when it alone passes the room, so a reply never stalls on one entry. `false`: the reply
    /// is full; the caller stops and answers `more`.
    pub fn take<T: Trimmable>(&mut self, entry: &mut T) -> bool {
        let size = encoded_len(entry) + 1;
        if self.fits(size) {
            return true;
        }
        if !self.empty {
            return false;
        }
        let size = shorten(entry, self.left);
        self.left = self.left.saturating_sub(size);
        self.empty = false;
        true
    }
}

/// Empties the name lists of `message` (a group event's `users`, the receipts' `delivered_by`
/// and `read_by`); the counts stay.
pub fn empty_lists(message: &mut Message) {
    if let Some(users) = message.users.as_mut() {
        users.clear();
    }
    if let Some(receipts) = message.receipts.as_mut() {
        receipts.empty_names();
    }
}

/// Shortens an entry that alone exceeds `room`: first the name lists of its message, then its
/// text. Returns its size after.
fn shorten<T: Trimmable>(entry: &mut T, room: usize) -> usize {
    entry.mark_trimmed();
    empty_lists(entry.message());
    let size = encoded_len(entry) + 1;
    if size <= room {
        return size;
    }
    entry.message().text = None;
    encoded_len(entry) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::chat::GroupReceipts;

    fn message(text: &str, names: usize) -> Message {
        let mut m = Message::new("1796326683029-00001-00000".into(), "text", 1);
        m.text = Some(text.into());
        let names: Vec<String> = (0..names).map(|i| format!("user{i:04}")).collect();
        m.receipts = Some(GroupReceipts {
            members: names.len() as u32,
            delivered: names.len() as u32,
            read: names.len() as u32,
            delivered_by: names.clone(),
            read_by: names,
        });
        m
    }

    #[test]
    fn the_first_entry_is_shortened_and_later_ones_end_the_reply() {
        let mut room = Room::new(ENVELOPE_BYTES + 400);
        let mut big = message("hello", 100);
        assert!(room.take(&mut big), "the first entry is always taken");
        assert!(big.trimmed);
        assert_eq!(big.text.as_deref(), Some("hello"), "the text fitted");
        let receipts = big.receipts.as_ref().expect("receipts");
        assert!(receipts.read_by.is_empty() && receipts.delivered_by.is_empty());
        assert_eq!(receipts.read, 100, "counts stay");
        let mut next = message("x", 20);
        assert!(!room.take(&mut next), "no room left");
        assert!(!next.trimmed, "only the first entry is shortened");

        let mut room = Room::new(ENVELOPE_BYTES + 100);
        let mut long = message(&"y".repeat(1000), 0);
        assert!(room.take(&mut long));
        assert!(long.trimmed && long.text.is_none(), "text dropped last");
    }
}
