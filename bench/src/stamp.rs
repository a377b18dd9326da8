//! The text every benchmark message carries: send time, run id and sequence number, padded.
//!
//! Layout (41 ASCII bytes, then `x` padding up to the requested payload size):
//! `{sent_ns:020}|{run:08x}|{seq:010}|xxxx…` — the first 20 characters are the send timestamp in
//! nanoseconds. Only characters that need no JSON escaping are used.

/// Length of the fixed header; payloads shorter than this are sent as just the header.
pub const HEADER_LEN: usize = 41;

/// What a receiver learns from a benchmark message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, [`crate::clock::now_ns`] of the sender.
    pub sent_ns: u64,
    /// Identifies one benchmark run, so leftovers of earlier runs can be told apart.
    pub run: u32,
    /// Position of the message in its sender's sequence (0-based).
    pub seq: u64,
}

/// Builds message texts of a fixed size.
pub struct Encoder {
    filler: String,
}

impl Encoder {
    /// An encoder producing texts of `size` bytes (at least [`HEADER_LEN`]).
    pub fn new(size: usize) -> Self {
        Encoder {
            filler: "x".repeat(size.saturating_sub(HEADER_LEN)),
        }
    }

    /// The text for `stamp`.
    pub fn encode(&self, stamp: Stamp) -> String {
        let mut s = String::with_capacity(HEADER_LEN + self.filler.len());
        use std::fmt::Write;
        let _ = write!(
            s,
            "{:020}|{:08x}|{:010}|",
            stamp.sent_ns, stamp.run, stamp.seq
        );
        s.push_str(&self.filler);
        s
    }
}

/// Reads the header back; `None` if `text` is not a benchmark message.
pub fn decode(text: &[u8]) -> Option<Stamp> {
    if text.len() < HEADER_LEN || text[20] != b'|' || text[29] != b'|' || text[40] != b'|' {
        return None;
    }
    let field = |range: std::ops::Range<usize>| std::str::from_utf8(&text[range]).ok();
    Some(Stamp {
        sent_ns: field(0..20)?.parse().ok()?,
        run: u32::from_str_radix(field(21..29)?, 16).ok()?,
        seq: field(30..40)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let st = Stamp {
            sent_ns: 1_732_790_000_123_456_789,
            run: 0xdead_beef,
            seq: 42,
        };
        let text = Encoder::new(200).encode(st);
        assert_eq!(text.len(), 200);
        assert_eq!(decode(text.as_bytes()), Some(st));
        assert_eq!(Encoder::new(5).encode(st).len(), HEADER_LEN);
        assert_eq!(decode(b"hello"), None);
    }
}
