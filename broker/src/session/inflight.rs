//! The QoS 1 PUBLISHes a session has written and the client has not yet acknowledged: by packet
//! id (what a PUBACK names), with their size and the moment each was written.
//!
//! Two things are read from them besides the PUBACK lookup. Their bytes count against the
//! session's byte budget (`limits.max_session_buffer_bytes`), so a client that stops reading
//! cannot make the session keep writing up to a window of the largest messages. And the oldest
//! one's age: a client that leaves it unacknowledged past `limits.ack_timeout_secs` is closed.
//! The payloads are kept only for a persistent session, which saves them when its connection
//! ends so that they can be resent, with their packet ids, when it is resumed (a message is
//! in the store until acknowledged anyway; replies and acks are not).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::time::Instant;

use crate::kept::state::Unacked;

/// One PUBLISH in flight.
#[derive(Debug)]
struct Sent {
    /// The queue entry it carries (acknowledged in the store on PUBACK), if any.
    queue_id: Option<String>,
    /// Its place in the order of writing (the key of `by_age`).
    seq: u64,
    /// Its size on the wire.
    size: usize,
    /// Its topic and payload, kept for a persistent session.
    kept: Option<(String, Bytes)>,
}

/// The PUBLISHes in flight to one client.
#[derive(Debug, Default)]
pub struct InFlight {
    by_pkid: HashMap<u16, Sent>,
    /// When each was written, oldest first (packet ids are reused, so keyed by `seq`).
    by_age: BTreeMap<u64, Instant>,
    next_seq: u64,
    bytes: usize,
}

impl InFlight {
    /// Whether queue entry `queue_id` is in flight. A scan of the whole window: only a
    /// rescan of the queue (cluster mode) asks, so the hot path keeps no index for it.
    pub fn carries(&self, queue_id: &str) -> bool {
        self.by_pkid
            .values()
            .any(|sent| sent.queue_id.as_deref() == Some(queue_id))
    }

    /// PUBLISHes in flight.
    pub fn len(&self) -> usize {
        self.by_pkid.len()
    }

    /// Their size on the wire, together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `pkid` is in use.
    pub fn contains(&self, pkid: u16) -> bool {
        self.by_pkid.contains_key(&pkid)
    }

    /// Records a PUBLISH of `size` bytes written now with `pkid` (which must be free); `kept`
    /// holds its topic and payload when the session must be able to resend it later.
    pub fn insert(
        &mut self,
        pkid: u16,
        queue_id: Option<String>,
        size: usize,
        now: Instant,
        kept: Option<(String, Bytes)>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_age.insert(seq, now);
        self.bytes += size;
        if let Some(old) = self.by_pkid.insert(
            pkid,
            Sent {
                queue_id,
                seq,
                size,
                kept,
            },
        ) {
            // Not expected (ids are allocated free), but the books must stay right.
            self.forget(&old);
        }
    }

    /// The PUBLISH acknowledged by a PUBACK for `pkid`: `Some(its queue id)` when it was in
    /// flight, `None` for an id not in use (ignored, as MQTT asks).
    pub fn remove(&mut self, pkid: u16) -> Option<Option<String>> {
        let sent = self.by_pkid.remove(&pkid)?;
        self.forget(&sent);
        if self.by_pkid.is_empty() && self.by_pkid.capacity() > 0 {
            // A burst's table is not kept by an idle session.
            self.by_pkid = HashMap::new();
        }
        Some(sent.queue_id)
    }

    /// The PUBLISHes in flight whose payload was kept, in the order they were written.
    pub fn unacked(&self) -> Vec<Unacked> {
        let mut sent: Vec<(&u16, &Sent)> = self.by_pkid.iter().collect();
        sent.sort_by_key(|(_, s)| s.seq);
        sent.into_iter()
            .filter_map(|(pkid, s)| {
                let (topic, payload) = s.kept.as_ref()?;
                Some(Unacked {
                    pkid: *pkid,
                    topic: topic.clone(),
                    payload: payload.clone(),
                    queue_id: s.queue_id.clone(),
                })
            })
            .collect()
    }

    /// When the oldest PUBLISH still unacknowledged was written.
    pub fn oldest(&self) -> Option<Instant> {
        self.by_age.first_key_value().map(|(_, at)| *at)
    }

    fn forget(&mut self, sent: &Sent) {
        self.by_age.remove(&sent.seq);
        self.bytes -= sent.size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tracks_bytes_and_the_oldest_across_reused_ids() {
        let t0 = Instant::now();
        let mut inflight = InFlight::default();
        assert_eq!(inflight.oldest(), None);
        inflight.insert(1, Some("a".into()), 100, t0, None);
        inflight.insert(2, None, 50, t0 + Duration::from_secs(1), None);
        inflight.insert(3, Some("c".into()), 10, t0 + Duration::from_secs(2), None);
        assert_eq!((inflight.len(), inflight.bytes()), (3, 160));
        assert_eq!(inflight.oldest(), Some(t0));
        // Acknowledged out of order: the oldest is the oldest still unacknowledged.
        assert_eq!(inflight.remove(2), Some(None));
        assert_eq!(inflight.oldest(), Some(t0));
        assert_eq!(inflight.remove(1), Some(Some("a".into())));
        assert_eq!(inflight.oldest(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(inflight.remove(1), None, "an id not in use");
        // Id 1 again, newer than id 3.
        inflight.insert(1, None, 7, t0 + Duration::from_secs(3), None);
        assert!(inflight.contains(1));
        assert_eq!(inflight.oldest(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(inflight.remove(3), Some(Some("c".into())));
        assert_eq!(inflight.oldest(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(inflight.remove(1), Some(None));
        assert_eq!(
            (inflight.len(), inflight.bytes(), inflight.oldest()),
            (0, 0, None)
        );
        assert_eq!(inflight.by_pkid.capacity(), 0);
    }
}
