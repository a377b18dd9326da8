//! Send acks on `user/{me}/ack`: matching them to the messages of this run.
//!
//! Every benchmark send carries the cid `{run:08x}-{seq}-{sent_ns}` (see [`cid`]), so an ack
//! alone tells which message it settles and gives the send→ack latency.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::stats::Latency;

/// An ack on `user/{me}/ack`.
#[derive(Deserialize)]
struct AckMsg {
    cid: Option<String>,
    status: Option<String>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
}

/// The cid of message `seq` of run `run`, sent at `sent_ns`.
pub fn cid(run: u32, seq: u64, sent_ns: u64) -> String {
    format!("{run:08x}-{seq}-{sent_ns}")
}

/// Per-message ack state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckState {
    /// No ack yet.
    None,
    /// Acked with status `sent`.
    Sent,
    /// Refused (the ack carried an `error`).
    Failed,
}

/// What one sender's event loop saw on its ack topic.
pub struct AckTally {
    run: u32,
    /// State of every message of this sender, by sequence number.
    pub state: Vec<AckState>,
    /// Send → ack latency of the `sent` acks.
    pub latency: Latency,
    /// Acks with status `sent`.
    pub acked: u64,
    /// Acks carrying an `error`.
    pub errors: u64,
    /// Error acks by error code.
    pub by_code: BTreeMap<String, u64>,
    /// Acks that match no message of this run, repeated acks, unparsable payloads.
    pub other: u64,
    /// Arrival time of the last `sent` ack ([`crate::clock::now_ns`]), 0 if none.
    pub last_ns: u64,
    /// Send → ack latency of the last `sent` ack, ns (for the per-window figures).
    pub last_latency_ns: u64,
}

impl AckTally {
    /// A tally for `messages` messages of run `run`.
    pub fn new(run: u32, messages: u64) -> Self {
        AckTally {
            run,
            state: vec![AckState::None; messages as usize],
            latency: Latency::new(),
            acked: 0,
            errors: 0,
            by_code: BTreeMap::new(),
            other: 0,
            last_ns: 0,
            last_latency_ns: 0,
        }
    }

    /// Parses `{run:08x}-{seq}-{sent_ns}`.
    fn parse_cid(cid: &str) -> Option<(u32, u64, u64)> {
        let mut parts = cid.split('-');
        let run = u32::from_str_radix(parts.next()?, 16).ok()?;
        let seq = parts.next()?.parse().ok()?;
        let sent = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((run, seq, sent))
    }

    /// Records one ack payload; returns the new state if it settled one of our messages.
    pub fn record(&mut self, payload: &[u8], now_ns: u64) -> Option<AckState> {
        let Ok(ack) = serde_json::from_slice::<AckMsg>(payload) else {
            self.other += 1;
            return None;
        };
        let parsed = ack.cid.as_deref().and_then(Self::parse_cid);
        let Some((_, seq, sent_ns)) = parsed.filter(|(run, _, _)| *run == self.run) else {
            self.other += 1;
            return None;
        };
        let Some(slot) = self.state.get_mut(seq as usize) else {
            self.other += 1;
            return None;
        };
        if *slot != AckState::None {
            self.other += 1;
            return None;
        }
        let new = if let Some(err) = ack.error {
            self.errors += 1;
            let code = err.code.unwrap_or_else(|| "unknown".into());
            *self.by_code.entry(code).or_default() += 1;
            AckState::Failed
        } else if ack.status.as_deref() == Some("sent") {
            self.acked += 1;
            self.last_latency_ns = now_ns.saturating_sub(sent_ns);
            self.latency.record_ns(self.last_latency_ns);
            self.last_ns = now_ns;
            AckState::Sent
        } else {
            self.other += 1;
            return None;
        };
        *slot = new;
        Some(new)
    }

    /// Whether message `seq` was acked with status `sent`.
    pub fn is_sent(&self, seq: usize) -> bool {
        self.state.get(seq) == Some(&AckState::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_tally_settles_once() {
        let mut t = AckTally::new(0xab, 3);
        let ok = br#"{"cid":"000000ab-1-1000000","id":"x","ts":1,"status":"sent"}"#;
        assert_eq!(t.record(ok, 3_000_000), Some(AckState::Sent));
        assert_eq!(t.last_latency_ns, 2_000_000);
        assert_eq!(t.record(ok, 3_000_000), None);
        let err = br#"{"cid":"000000ab-2-1000000","error":{"code":"too_large","message":"m"}}"#;
        assert_eq!(t.record(err, 3_000_000), Some(AckState::Failed));
        let old = br#"{"cid":"000000ac-0-1000000","status":"sent"}"#;
        assert_eq!(t.record(old, 3_000_000), None);
        assert_eq!((t.acked, t.errors, t.other), (1, 1, 2));
        assert_eq!(t.by_code.get("too_large"), Some(&1));
        assert!(t.is_sent(1) && !t.is_sent(2) && !t.is_sent(9));
        assert_eq!(cid(0xab, 1, 1_000_000), "000000ab-1-1000000");
    }
}
