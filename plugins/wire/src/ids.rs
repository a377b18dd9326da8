//! Message ids: strings that sort in the order this node accepted the messages and that are
//! unique across nodes, so clients can de-duplicate and page by comparing strings.

use std::time::{SystemTime, UNIX_EPOCH};

/// Highest per-millisecond sequence number; the format has five digits for it.
pub const MAX_SEQ: u32 = 99_999;

/// Length of an id: 13 digits of milliseconds, `-`, 5 of node, `-`, 5 of sequence.
const ID_LEN: usize = 25;

/// Issues ids of the form `{ms:013}-{node:05}-{seq:05}`, e.g. `1732790000123-00001-00000`.
///
/// Ids never go backwards on one generator, even when the wall clock does: it keeps the last
/// millisecond it used and stays there until the clock passes it again.
#[derive(Debug, Clone)]
pub struct IdGen {
    node: u16,
    /// The last (ms, seq) issued or observed; `None` before the first id.
    last: Option<(u64, u32)>,
}

impl IdGen {
    /// A generator for node `node_id` (unique per server in a deployment).
    pub fn new(node_id: u16) -> IdGen {
        IdGen {
            node: node_id,
            last: None,
        }
    }

    /// The next id and its timestamp in milliseconds, from the wall clock.
    // Not an `Iterator`: the name is the broker's interface, and an id stream never ends.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> (String, u64) {
        self.next_at(now_ms())
    }

    /// The next id for a given clock reading; [`IdGen::next`] with an explicit clock, for
    /// callers (and tests) that bring their own time.
    pub fn next_at(&mut self, now_ms: u64) -> (String, u64) {
        let (ms, seq) = match self.last {
            None => (now_ms, 0),
            Some((ms, _)) if now_ms > ms => (now_ms, 0),
            Some((ms, seq)) if seq < MAX_SEQ => (ms, seq + 1),
            Some((ms, _)) => (ms + 1, 0),
        };
        self.last = Some((ms, seq));
        (format_id(ms, self.node, seq), ms)
    }

    /// The last id issued or observed; `None` before the first one.
    pub fn last_issued(&self) -> Option<String> {
        self.last.map(|(ms, seq)| format_id(ms, self.node, seq))
    }

    /// Makes every later id sort after `id` (an id found in the store at start-up), so a clock
    /// that is behind after a restart cannot produce ids older than existing ones. Ids of
    /// another format are ignored.
    pub fn observe(&mut self, id: &str) {
        let Some(ms) = parse_ms(id) else {
            return;
        };
        // Another node's id in the same millisecond may sort after any of ours, so the next
        // id must be in a later millisecond.
        if self.last.is_none_or(|(last_ms, _)| ms >= last_ms) {
            self.last = Some((ms, MAX_SEQ));
        }
    }
}

/// `{ms:013}-{node:05}-{seq:05}`, written digit by digit: every message takes one, and
/// `format!` with padding cost the committer more than the rest of issuing it.
fn format_id(ms: u64, node: u16, seq: u32) -> String {
    let mut id = Vec::with_capacity(ID_LEN);
    push_padded(&mut id, ms, 13);
    id.push(b'-');
    push_padded(&mut id, u64::from(node), 5);
    id.push(b'-');
    push_padded(&mut id, u64::from(seq), 5);
    // Only ASCII digits and dashes were pushed.
    String::from_utf8(id).unwrap_or_default()
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (wider numbers in full).
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
    out.extend_from_slice(&digits[start..]);
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The millisecond part of a well-formed id.
fn parse_ms(id: &str) -> Option<u64> {
    if !valid_message_id(id) {
        return None;
    }
    id.get(..13)?.parse().ok()
}

/// True when `s` has the exact shape of a message id; used to refuse malformed `reply_to`,
/// `before` and `after` values before they reach a key.
pub fn valid_message_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == ID_LEN
        && b.iter().enumerate().all(|(i, c)| match i {
            13 | 19 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        let mut g = IdGen::new(1);
        assert_eq!(
            g.next_at(1_732_790_000_123),
            ("1732790000123-00001-00000".to_string(), 1_732_790_000_123)
        );
        assert_eq!(g.next_at(1_732_790_000_123).0, "1732790000123-00001-00001");
        assert_eq!(g.next_at(1_732_790_000_124).0, "1732790000124-00001-00000");
        let mut g = IdGen::new(u16::MAX);
        assert_eq!(g.next_at(5).0, "0000000000005-65535-00000");
        for (ms, node, seq) in [
            (0, 0, 0),
            (9, 10, 99_999),
            (9_999_999_999_999, 99, 10_000),
            (10_000_000_000_000, 1, 1),
            (u64::MAX, u16::MAX, u32::MAX),
        ] {
            assert_eq!(
                format_id(ms, node, seq),
                format!("{ms:013}-{node:05}-{seq:05}")
            );
        }
    }

    #[test]
    fn monotonic_when_clock_goes_back() {
        let mut g = IdGen::new(3);
        let mut prev = String::new();
        for now in [100, 100, 99, 50, 100, 101, 101, 90, 102] {
            let (id, ts) = g.next_at(now);
            assert!(id > prev, "{id} after {prev}");
            assert!(valid_message_id(&id));
            assert_eq!(id[..13].parse::<u64>().ok(), Some(ts));
            prev = id;
        }
        assert_eq!(prev, "0000000000102-00003-00000");
    }

    #[test]
    fn sequence_overflow_moves_to_next_ms() {
        let mut g = IdGen::new(0);
        let mut last = String::new();
        for _ in 0..=MAX_SEQ {
            last = g.next_at(7).0;
        }
        assert_eq!(last, "0000000000007-00000-99999");
        let (id, ts) = g.next_at(7);
        assert_eq!(id, "0000000000008-00000-00000");
        assert_eq!(ts, 8);
        // The clock catching up to the borrowed millisecond continues the sequence.
        assert_eq!(g.next_at(8).0, "0000000000008-00000-00001");
    }

    #[test]
    fn observe_moves_past_stored_ids() {
        let mut g = IdGen::new(1);
        g.observe("0000000000500-00002-00007");
        assert_eq!(g.next_at(400).0, "0000000000501-00001-00000");
        g.observe("garbage");
        g.observe("0000000000001-00001-00000");
        assert_eq!(g.next_at(400).0, "0000000000501-00001-00001");
    }

    #[test]
    fn real_clock_is_monotonic() {
        let mut g = IdGen::new(9);
        let mut prev = String::new();
        for _ in 0..10_000 {
            let (id, _) = g.next();
            assert!(id > prev);
            prev = id;
        }
    }

    #[test]
    fn id_shape() {
        assert!(valid_message_id("1732790000123-00001-00000"));
        for bad in [
            "",
            "1732790000123-00001-0000",
            "1732790000123-00001-000000",
            "1732790000123_00001-00000",
            "173279000012a-00001-00000",
            "1732790000123-00001-0000/",
            "x".repeat(25).as_str(),
            "１732790000123-00001-0000",
        ] {
            assert!(!valid_message_id(bad), "{bad:?}");
        }
    }
}
