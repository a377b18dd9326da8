//! Where a session stands in delivering its user's undelivered queue (inbox messages and
//! receipts share one queue, in id order).
//!
//! A session that subscribes to a queued topic first *replays* the queue from the store in id order,
//! then goes *live*, taking only live deliveries newer than the last id it sent. Live deliveries
//! that arrive during the replay are held until the read comes to their ids: sent if the read
//! does not find them (another device of the user acknowledged them meanwhile), dropped if it
//! does (see [`super::held`]). The hub marks a session lagged when it had to drop a delivery;
//! the session then replays again from where it was.
//!
//! In a cluster the queue is written by several nodes, each with its own id generator, so an
//! entry committed later may carry a lower id than one already sent: reading on from the last
//! id sent would pass it over. There a session remembers the ids it sent ([`SentIds`], bounded),
//! and a live delivery below the last id sent is sent when it was not sent before: the delivery
//! in hand is the only sure way, because the queue is the user's and another device of the user
//! may have acknowledged the entry (it left the queue) before this session looks. The same holds
//! for a delivery the replay's read already went past. Only a delivery of which nothing is
//! remembered (below what the bound forgot) makes the session *rescan* its queue: read it from
//! the start (short for a connected user: what it holds is what is not yet acknowledged),
//! skipping what is in flight to the client. A lagged session rescans too. The read position is
//! therefore kept apart from the last id sent.

use super::sent_ids::{Known, SentIds};

/// The inbox state of one session.
#[derive(Debug, Default)]
pub struct Inbox {
    state: State,
    /// The highest queued id written to the client.
    cursor: Option<String>,
    /// Where the next read of the store starts (after this id; from the start when `None`).
    scan: Option<String>,
    coverage: u8,
    /// Cluster mode: lagging means reading from the start again, not from the cursor, and the
    /// ids sent are remembered.
    rescans: bool,
    /// The ids sent, in cluster mode (see the module documentation).
    remembered: SentIds,
}

/// What a session does with a live delivery of a queued entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Send it now.
    Send,
    /// Hold it until the read of the queue comes to its id.
    Hold,
    /// Drop it: it was sent, or the read sends it.
    Skip,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Off,
    Replaying,
    Live,
}

/// `Some(id)` if `id` is above `current`, else `current`.
fn raise(current: &mut Option<String>, id: &str) {
    if current.as_deref().is_none_or(|c| id > c) {
        *current = Some(id.to_string());
    }
}

impl Inbox {
    /// The inbox of a session of a cluster node (see the module documentation).
    pub fn rescanning() -> Inbox {
        Inbox {
            rescans: true,
            ..Inbox::default()
        }
    }

    /// The queued topics the session's filters cover changed to `coverage` (a bit per topic).
    /// A newly covered topic replays the queue from its start: entries for it were passed over
    /// before (anything sent twice is de-duplicated by id on the client).
    pub fn set_coverage(&mut self, coverage: u8) {
        if coverage == 0 {
            self.state = State::Off;
            self.cursor = None;
            self.scan = None;
        } else if coverage & !self.coverage != 0 {
            self.state = State::Replaying;
            self.cursor = None;
            self.scan = None;
        }
        self.coverage = coverage;
    }

    /// Deliveries were dropped, or another node committed to the queue: read the rest from
    /// the store.
    pub fn lagged(&mut self) {
        if self.state != State::Off {
            self.state = State::Replaying;
            self.scan = if self.rescans {
                None
            } else {
                self.cursor.clone()
            };
        }
    }

    /// True while the queue is being read from the store.
    pub fn is_replaying(&self) -> bool {
        self.state == State::Replaying
    }

    /// After which queued id the next read of the store starts.
    pub fn read_after(&self) -> Option<&str> {
        self.scan.as_deref()
    }

    /// The store had nothing more: take live deliveries from now on.
    pub fn caught_up(&mut self) {
        if self.state == State::Replaying {
            self.state = State::Live;
        }
    }

    /// What to do with a live delivery of queued entry `id`. Above the last id sent, while
    /// live: send it. While the queue is read, above where the read is: hold it until the read
    /// comes to it ([`super::held`]). On one node anything else was sent already, or was read.
    /// In a cluster, an entry below the last id sent, or one the read already went past, is
    /// sent unless it was sent before; when that is not known (the bound forgot it), the queue
    /// is read again from the start instead.
    pub fn takes_live(&mut self, id: &str) -> Live {
        let above = |at: &Option<String>| at.as_deref().is_none_or(|c| id > c);
        match self.state {
            State::Off => return Live::Skip,
            State::Live if above(&self.cursor) => return Live::Send,
            State::Replaying if above(&self.scan) => {
                return if self.sent_before(id) {
                    Live::Skip
                } else {
                    Live::Hold
                };
            }
            _ if !self.rescans => return Live::Skip,
            State::Live | State::Replaying => {}
        }
        match self.remembered.knows(id) {
            Known::Sent => Live::Skip,
            Known::New => Live::Send,
            Known::Unknown => {
                self.lagged();
                Live::Skip
            }
        }
    }

    /// Whether queued entry `id` is known to have been sent by this session (cluster mode: the
    /// ids sent are remembered; one node: never asked of anything but a held delivery, which
    /// the read would have found, so false).
    pub fn sent_before(&self, id: &str) -> bool {
        self.rescans && self.remembered.knows(id) == Known::Sent
    }

    /// Whether queued entry `id` is at or below the highest id written to the client (it may
    /// have been written, and may be in flight).
    pub fn was_sent(&self, id: &str) -> bool {
        self.cursor.as_deref().is_some_and(|c| id <= c)
    }

    /// Queued entry `id` was read from the store (sent, passed over or skipped as in flight):
    /// the next read starts after it.
    pub fn read(&mut self, id: &str) {
        raise(&mut self.scan, id);
    }

    /// Queued message `id` was resent from a resumed session's state (it is in flight): the
    /// replay still reads the queue from its start, and passes over it as in flight.
    pub fn resent(&mut self, id: &str) {
        raise(&mut self.cursor, id);
        self.remember(id);
    }

    /// Queued message `id` was written to the client.
    pub fn sent(&mut self, id: &str) {
        raise(&mut self.cursor, id);
        raise(&mut self.scan, id);
        self.remember(id);
    }

    fn remember(&mut self, id: &str) {
        if self.rescans {
            self.remembered.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, node: u16) -> String {
        format!("{ms:013}-{node:05}-00000")
    }

    #[test]
    fn replay_then_live_skips_what_was_sent() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.takes_live(&id(1, 1)), Live::Skip);
        inbox.set_coverage(1);
        assert!(inbox.is_replaying());
        assert_eq!(inbox.takes_live(&id(1, 1)), Live::Hold);
        inbox.sent(&id(2, 1));
        inbox.caught_up();
        assert_eq!(inbox.takes_live(&id(2, 1)), Live::Skip);
        assert_eq!(inbox.takes_live(&id(3, 1)), Live::Send);
        inbox.lagged();
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), Some(id(2, 1).as_str()));
        inbox.caught_up();
        assert_eq!(inbox.takes_live(&id(1, 1)), Live::Skip);
        assert!(
            !inbox.is_replaying(),
            "one node: a delivery below the cursor was sent already"
        );
        inbox.set_coverage(1);
        assert!(!inbox.is_replaying());
        inbox.set_coverage(3);
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), None);
        inbox.set_coverage(0);
        assert!(!inbox.is_replaying());
    }

    #[test]
    fn a_cluster_session_reads_its_queue_from_the_start_when_lagged() {
        let mut inbox = Inbox::rescanning();
        inbox.set_coverage(1);
        inbox.sent(&id(5, 1));
        inbox.read(&id(6, 1));
        assert_eq!(inbox.read_after(), Some(id(6, 1).as_str()));
        inbox.caught_up();
        inbox.lagged();
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), None);
        assert_eq!(
            inbox.takes_live(&id(5, 1)),
            Live::Skip,
            "sent before the rescan: not held"
        );
        assert_eq!(inbox.takes_live(&id(8, 1)), Live::Hold);
        // What is read again does not move the cursor back.
        inbox.read(&id(3, 1));
        inbox.sent(&id(4, 1));
        inbox.caught_up();
        assert_eq!(inbox.takes_live(&id(5, 1)), Live::Skip);
        assert_eq!(inbox.takes_live(&id(7, 1)), Live::Send);
        assert!(!inbox.is_replaying());
    }

    #[test]
    fn a_cluster_session_sends_a_lower_id_it_never_sent_once() {
        let mut inbox = Inbox::rescanning();
        inbox.set_coverage(1);
        inbox.caught_up();
        for ms in [10, 20, 30] {
            assert_eq!(inbox.takes_live(&id(ms, 2)), Live::Send);
            inbox.sent(&id(ms, 2));
        }
        // Another node's entry numbered between them: in hand, never sent, so sent now (its
        // queue entry may be gone already, acknowledged by another device).
        assert_eq!(inbox.takes_live(&id(15, 1)), Live::Send);
        inbox.sent(&id(15, 1));
        assert!(!inbox.is_replaying());
        // Delivered again (or read back): not twice.
        assert_eq!(inbox.takes_live(&id(15, 1)), Live::Skip);
        assert_eq!(inbox.takes_live(&id(20, 2)), Live::Skip);
        assert!(!inbox.is_replaying());
    }

    #[test]
    fn a_cluster_session_sends_what_its_replay_already_went_past() {
        let mut inbox = Inbox::rescanning();
        inbox.set_coverage(1);
        // Not read yet: held until the read comes to it.
        assert_eq!(inbox.takes_live(&id(10, 1)), Live::Hold);
        inbox.sent(&id(20, 2));
        // Below where the read is: committed after the read went past it.
        assert_eq!(inbox.takes_live(&id(10, 1)), Live::Send);
        inbox.sent(&id(10, 1));
        assert_eq!(inbox.takes_live(&id(10, 1)), Live::Skip);
        assert_eq!(inbox.takes_live(&id(30, 1)), Live::Hold);
        assert!(inbox.is_replaying());
    }

    #[test]
    fn a_cluster_session_reads_its_queue_again_for_what_it_forgot() {
        let mut inbox = Inbox::rescanning();
        inbox.set_coverage(1);
        inbox.caught_up();
        for ms in 0..crate::session::sent_ids::MAX_REMEMBERED as u64 + 1 {
            inbox.sent(&id(100 + ms, 2));
        }
        // Below everything remembered: perhaps sent, perhaps not; the queue says.
        assert_eq!(inbox.takes_live(&id(50, 1)), Live::Skip);
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), None);
    }
}
