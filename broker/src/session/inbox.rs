//! Where a session stands in delivering its user's undelivered queue (inbox messages and
//! receipts share one queue, in id order).
//!
//! A session that subscribes to a queued topic first *replays* the queue from the store in id order,
//! ignoring live deliveries meanwhile (they are in the store too), then goes *live*, taking only
//! live deliveries newer than the last id it sent. The hub marks a session lagged when it had to
//! drop a delivery; the session then replays again from where it was.

/// The inbox state of one session.
#[derive(Debug, Default)]
pub struct Inbox {
    state: State,
    cursor: Option<String>,
    coverage: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Off,
    Replaying,
    Live,
}

impl Inbox {
    /// The queued topics the session's filters cover changed to `coverage` (a bit per topic).
    /// A newly covered topic replays the queue from its start: entries for it were passed over
    /// before (anything sent twice is de-duplicated by id on the client).
    pub fn set_coverage(&mut self, coverage: u8) {
        if coverage == 0 {
            self.state = State::Off;
            self.cursor = None;
        } else if coverage & !self.coverage != 0 {
            self.state = State::Replaying;
            self.cursor = None;
        }
        self.coverage = coverage;
    }

    /// Deliveries were dropped: read the rest from the store.
    pub fn lagged(&mut self) {
        if self.state != State::Off {
            self.state = State::Replaying;
        }
    }

    /// True while the queue is being read from the store.
    pub fn is_replaying(&self) -> bool {
        self.state == State::Replaying
    }

    /// The last queued id sent to the client.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
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

    /// Queued message `id` was written to the client.
    pub fn sent(&mut self, id: &str) {
        if self.cursor.as_deref().is_none_or(|c| id > c) {
            self.cursor = Some(id.to_string());
        }
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
        assert_eq!(inbox.cursor(), Some("2"));
        inbox.caught_up();
        inbox.set_coverage(1);
        assert!(!inbox.is_replaying());
        inbox.set_coverage(3);
        assert!(inbox.is_replaying());
        assert_eq!(inbox.cursor(), None);
        inbox.set_coverage(0);
        assert!(!inbox.is_replaying());
    }
}
