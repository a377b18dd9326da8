//! Where a session stands in delivering its user's undelivered queue (inbox messages and
//! receipts share one queue, in id order).
//!
//! A session that subscribes to a queued topic first *replays* the queue from the store in id order,
//! ignoring live deliveries meanwhile (they are in the store too), then goes *live*, taking only
//! live deliveries newer than the last id it sent. The hub marks a session lagged when it had to
//! drop a delivery; the session then replays again from where it was.
//!
//! In a cluster the queue is written by several nodes, each with its own id generator, so an
//! entry committed later may carry a lower id than one already sent: reading on from the last
//! id sent would pass it over. There a lagged session *rescans*: it reads its queue from the
//! start (short for a connected user: what it holds is what is not yet acknowledged), skipping
//! what is in flight to the client. The read position is therefore kept apart from the last id
//! sent.

/// The inbox state of one session.
#[derive(Debug, Default)]
pub struct Inbox {
    state: State,
    /// The highest queued id written to the client.
    cursor: Option<String>,
    /// Where the next read of the store starts (after this id; from the start when `None`).
    scan: Option<String>,
    coverage: u8,
    /// Lagging means reading from the start again (cluster mode), not from the cursor.
    rescans: bool,
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

    /// A live delivery was not taken (its id is not above the cursor). On one node that means
    /// it was sent already; in a cluster it may be an entry another generator numbered lower,
    /// so the queue is read again.
    pub fn refused_live(&mut self) {
        if self.rescans && self.state == State::Live {
            self.lagged();
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

    /// Whether a live delivery of queued message `id` should be sent now.
    pub fn accepts_live(&self, id: &str) -> bool {
        self.state == State::Live && self.cursor.as_deref().is_none_or(|c| id > c)
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
    }

    /// Queued message `id` was written to the client.
    pub fn sent(&mut self, id: &str) {
        raise(&mut self.cursor, id);
        raise(&mut self.scan, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_then_live_skips_what_was_sent() {
        let mut inbox = Inbox::default();
        assert!(!inbox.accepts_live("1"));
        inbox.set_coverage(1);
        assert!(inbox.is_replaying());
        assert!(!inbox.accepts_live("1"));
        inbox.sent("2");
        inbox.caught_up();
        assert!(!inbox.accepts_live("2"));
        assert!(inbox.accepts_live("3"));
        inbox.lagged();
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), Some("2"));
        inbox.caught_up();
        inbox.refused_live();
        assert!(
            !inbox.is_replaying(),
            "one node: a refused delivery was sent already"
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
        inbox.sent("5");
        inbox.read("6");
        assert_eq!(inbox.read_after(), Some("6"));
        inbox.caught_up();
        inbox.lagged();
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), None);
        // What is read again does not move the cursor back.
        inbox.read("3");
        inbox.sent("4");
        inbox.caught_up();
        assert!(!inbox.accepts_live("5"));
        assert!(inbox.accepts_live("7"));
        // A live entry numbered below the cursor by another node's generator: read the queue.
        inbox.refused_live();
        assert!(inbox.is_replaying());
        assert_eq!(inbox.read_after(), None);
    }
}
