//! The receiving side of the group fan-out: what each online member got, and the sums over all
//! of them.
//!
//! Every online member keeps a [`MemberTally`]: for each group sender and sequence number, the
//! send→arrival latency of the first copy (0 = not arrived). Summing them gives deliveries,
//! missing and duplicate copies, the per-copy latency and the per-message completion latency
//! (send → the last online member has it).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use crate::stamp::{self, Stamp};
use crate::stats::{Arrival, Latency};

/// A message on `user/{me}/inbox`, as far as the fan-out cares.
#[derive(Deserialize)]
struct InboxMsg<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// What an inbox payload is.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbox {
    /// A membership (or other) event: not a message.
    Event,
    /// A message of `group` from sender number `sender` (`None`: not one of this run's
    /// senders), with its stamp if the text is a benchmark text.
    Group {
        /// Index of the sender among the run's senders.
        sender: Option<usize>,
        /// The stamp in the text.
        stamp: Option<Stamp>,
    },
    /// Anything else: another group, a 1:1 message, an unreadable payload.
    Other,
}

/// Classifies an inbox payload for group `group`; `senders` maps user ids to sender indexes.
pub fn classify(payload: &[u8], group: &str, senders: &HashMap<String, usize>) -> Inbox {
    let Ok(msg) = serde_json::from_slice::<InboxMsg>(payload) else {
        return Inbox::Other;
    };
    if msg.kind.as_deref() == Some("event") {
        return Inbox::Event;
    }
    if msg.group.as_deref() != Some(group) {
        return Inbox::Other;
    }
    Inbox::Group {
        sender: msg.from.as_deref().and_then(|f| senders.get(f).copied()),
        stamp: msg
            .text
            .as_deref()
            .and_then(|t| stamp::decode(t.as_bytes())),
    }
}

/// What one online member received.
pub struct MemberTally {
    run: u32,
    /// `arrival_us[sender][seq]`: send→arrival of the first copy in µs (at least 1), 0 = none.
    pub arrival_us: Vec<Vec<u32>>,
    /// Highest sequence number per sender delivered so far, +1.
    next_seq: Vec<u64>,
    /// Distinct group messages of this run received.
    pub delivered: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// First copies that came after a later message of the same sender.
    pub reordered: u64,
    /// Benchmark messages of other runs.
    pub stale: u64,
    /// Membership events.
    pub events: u64,
    /// Messages of this group that are not benchmark messages of a known sender, and inbox
    /// payloads that are not messages of this group.
    pub foreign: u64,
    /// Arrival time of the last first copy ([`crate::clock::now_ns`]), 0 if none.
    pub last_ns: u64,
}

impl MemberTally {
    /// A tally for run `run` with `senders` senders of `messages` messages each.
    pub fn new(run: u32, senders: usize, messages: u64) -> Self {
        MemberTally {
            run,
            arrival_us: vec![vec![0; messages as usize]; senders],
            next_seq: vec![0; senders],
            delivered: 0,
            duplicates: 0,
            reordered: 0,
            stale: 0,
            events: 0,
            foreign: 0,
            last_ns: 0,
        }
    }

    /// Counts one inbox payload, classified by [`classify`], arriving at `now_ns`.
    pub fn record(&mut self, inbox: Inbox, now_ns: u64) -> Arrival {
        let (sender, stamp) = match inbox {
            Inbox::Event => {
                self.events += 1;
                return Arrival::Other;
            }
            Inbox::Other | Inbox::Group { sender: None, .. } | Inbox::Group { stamp: None, .. } => {
                self.foreign += 1;
                return Arrival::Other;
            }
            Inbox::Group {
                sender: Some(sender),
                stamp: Some(stamp),
            } => (sender, stamp),
        };
        if stamp.run != self.run {
            self.stale += 1;
            return Arrival::Other;
        }
        let Some(slot) = self
            .arrival_us
            .get_mut(sender)
            .and_then(|s| s.get_mut(stamp.seq as usize))
        else {
            self.foreign += 1;
            return Arrival::Other;
        };
        if *slot != 0 {
            self.duplicates += 1;
            return Arrival::Other;
        }
        let micros = now_ns.saturating_sub(stamp.sent_ns) / 1000;
        *slot = micros.clamp(1, u64::from(u32::MAX)) as u32;
        self.delivered += 1;
        if let Some(next) = self.next_seq.get_mut(sender) {
            if stamp.seq < *next {
                self.reordered += 1;
            } else {
                *next = stamp.seq + 1;
            }
        }
        self.last_ns = self.last_ns.max(now_ns);
        Arrival::New
    }
}

/// The fan-out summed over all online members.
pub struct FanoutTotals {
    /// Distinct copies received.
    pub delivered: u64,
    /// Copies that should have arrived (acked messages × online members other than the sender).
    pub expected: u64,
    /// Expected copies that did not arrive.
    pub missing: u64,
    /// Second and later copies.
    pub duplicates: u64,
    /// First copies out of their sender's order.
    pub reordered: u64,
    /// Benchmark messages of other runs.
    pub stale: u64,
    /// Membership events received during the run.
    pub events: u64,
    /// Other inbox payloads.
    pub foreign: u64,
    /// Arrival of the last first copy, 0 if none.
    pub last_ns: u64,
    /// Send → arrival of every first copy.
    pub latency: Latency,
    /// Send → arrival at the last online member, for messages every online member received.
    pub complete: Latency,
}

/// Sums the tallies. `members[i]` is the tally of online member i (`None` if its task was
/// lost: all its copies count as missing), whose own sender index is `Some(i)` for i <
/// `acked.len()`; `acked[s][seq]` says whether sender s's message seq was acked.
pub fn totals(members: &[Option<MemberTally>], acked: &[Vec<bool>]) -> FanoutTotals {
    let mut t = FanoutTotals {
        delivered: 0,
        expected: 0,
        missing: 0,
        duplicates: 0,
        reordered: 0,
        stale: 0,
        events: 0,
        foreign: 0,
        last_ns: 0,
        latency: Latency::new(),
        complete: Latency::new(),
    };
    for tally in members.iter().flatten() {
        t.delivered += tally.delivered;
        t.duplicates += tally.duplicates;
        t.reordered += tally.reordered;
        t.stale += tally.stale;
        t.events += tally.events;
        t.foreign += tally.foreign;
        t.last_ns = t.last_ns.max(tally.last_ns);
        for us in tally.arrival_us.iter().flatten().filter(|us| **us != 0) {
            t.latency.record_ns(u64::from(*us) * 1000);
        }
    }
    for (s, acks) in acked.iter().enumerate() {
        for (seq, _) in acks.iter().enumerate().filter(|(_, a)| **a) {
            let mut slowest = 0u32;
            let mut complete = true;
            for (m, tally) in members.iter().enumerate() {
                if m == s {
                    continue;
                }
                t.expected += 1;
                let us = tally
                    .as_ref()
                    .and_then(|t| t.arrival_us.get(s))
                    .and_then(|a| a.get(seq))
                    .copied()
                    .unwrap_or(0);
                if us == 0 {
                    t.missing += 1;
                    complete = false;
                } else {
                    slowest = slowest.max(us);
                }
            }
            if complete && slowest > 0 {
                t.complete.record_ns(u64::from(slowest) * 1000);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senders() -> HashMap<String, usize> {
        HashMap::from([("m0".to_string(), 0), ("m1".to_string(), 1)])
    }

    fn text(run: u32, seq: u64) -> String {
        stamp::Encoder::new(60).encode(Stamp {
            sent_ns: 1_000_000,
            run,
            seq,
        })
    }

    #[test]
    fn classifies_inbox_payloads() {
        let s = senders();
        let msg = format!(
            r#"{{"id":"1","from":"m1","group":"g_1","type":"text","text":"{}","ts":1}}"#,
            text(7, 3)
        );
        match classify(msg.as_bytes(), "g_1", &s) {
            Inbox::Group {
                sender: Some(1),
                stamp: Some(st),
            } => assert_eq!((st.run, st.seq), (7, 3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(msg.as_bytes(), "g_2", &s), Inbox::Other);
        let event =
            br#"{"id":"2","group":"g_1","type":"event","event":"member_added","users":["a"]}"#;
        assert_eq!(classify(event, "g_1", &s), Inbox::Event);
        let stranger = br#"{"from":"zz","group":"g_1","type":"text","text":"hi"}"#;
        assert_eq!(
            classify(stranger, "g_1", &s),
            Inbox::Group {
                sender: None,
                stamp: None
            }
        );
        assert_eq!(classify(b"not json", "g_1", &s), Inbox::Other);
    }

    fn group(sender: usize, run: u32, seq: u64) -> Inbox {
        Inbox::Group {
            sender: Some(sender),
            stamp: Some(Stamp {
                sent_ns: 1_000_000,
                run,
                seq,
            }),
        }
    }

    #[test]
    fn member_tally_counts_kinds() {
        let mut t = MemberTally::new(7, 2, 3);
        assert_eq!(t.record(group(0, 7, 1), 3_000_000), Arrival::New);
        assert_eq!(t.record(group(0, 7, 0), 4_000_000), Arrival::New);
        assert_eq!(t.record(group(0, 7, 0), 4_000_000), Arrival::Other);
        assert_eq!(t.record(group(1, 8, 0), 4_000_000), Arrival::Other);
        assert_eq!(t.record(group(1, 7, 5), 4_000_000), Arrival::Other);
        assert_eq!(t.record(group(4, 7, 0), 4_000_000), Arrival::Other);
        assert_eq!(t.record(Inbox::Event, 4_000_000), Arrival::Other);
        assert_eq!(t.record(Inbox::Other, 4_000_000), Arrival::Other);
        assert_eq!(
            (
                t.delivered,
                t.duplicates,
                t.reordered,
                t.stale,
                t.events,
                t.foreign
            ),
            (2, 1, 1, 1, 1, 3)
        );
        assert_eq!(t.arrival_us[0], [3000, 2000, 0]);
        assert_eq!(t.last_ns, 4_000_000);
    }

    #[test]
    fn totals_count_expected_and_missing() {
        // Two senders (members 0 and 1) of 2 messages each, three online members.
        let mut m0 = MemberTally::new(7, 2, 2);
        let mut m1 = MemberTally::new(7, 2, 2);
        let mut m2 = MemberTally::new(7, 2, 2);
        m0.record(group(1, 7, 0), 2_000_000);
        m1.record(group(0, 7, 0), 3_000_000);
        m2.record(group(0, 7, 0), 5_000_000);
        m2.record(group(1, 7, 0), 2_000_000);
        m2.record(group(0, 7, 1), 2_000_000);
        // Sender 0: both acked; sender 1: only seq 0 acked.
        let acked = vec![vec![true, true], vec![true, false]];
        let t = totals(&[Some(m0), Some(m1), Some(m2)], &acked);
        assert_eq!((t.delivered, t.expected, t.missing), (5, 6, 1));
        // Complete: sender 0 seq 0 (slowest 4 ms), sender 1 seq 0 (1 ms); 0/1 misses m1.
        assert_eq!(t.complete.summary().count, 2);
        assert!((t.complete.summary().max - 4.0).abs() < 0.01);
        assert_eq!(t.latency.summary().count, 5);
        // A lost member task: its copies are missing.
        let t = totals(&[None, None, None], &acked);
        assert_eq!(
            (t.expected, t.missing, t.complete.summary().count),
            (6, 6, 0)
        );
    }
}
