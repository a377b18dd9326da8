//! A node's own deliveries reach its sessions when its publish comes back from Redis, so that
//! they take their place in the one order every node sees.
//!
//! The channel's order is the order Redis took the publishes in. A node that handed its own
//! deliveries to its sessions at once, while another node's earlier publish still waited in
//! its subscription, could give its devices a message sent *after* that earlier one was
//! acknowledged before it. Held until the node hears its own publish back (each message
//! carries a number, `k`), they come after everything Redis took before them, as the other
//! nodes see them.
//!
//! Redis is never the truth, and never holds up a node's own devices for long: the deliveries
//! go to the sessions at once while the node is not subscribed, when their publish fails, and
//! after [`ECHO_WAIT`] at the latest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chatd_core::outbox::{Deliver, Outgoing};

use crate::hub::Hub;

/// How long a node's own deliveries wait for their publish to come back at most.
pub const ECHO_WAIT: Duration = Duration::from_millis(500);

/// The deliveries of one published message.
struct Waiting {
    /// The message's number.
    k: u64,
    /// When they go to the sessions whatever happens.
    deadline: Instant,
    items: Vec<Outgoing>,
}

/// A node's own deliveries waiting for their publish to come back.
#[derive(Default)]
pub struct LocalEcho {
    /// In publish order; delivered under the lock, so that they reach the sessions in it.
    waiting: Mutex<VecDeque<Waiting>>,
    /// Whether the node is subscribed, so that it can hear its publishes.
    subscribed: AtomicBool,
}

impl LocalEcho {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `items` are about to be published in message `k`: they wait for it to come back, or go
    /// to `hub`'s sessions at once when the node cannot hear it.
    pub fn publishing(&self, k: u64, items: Vec<Outgoing>, hub: &Hub) {
        if items.is_empty() {
            return;
        }
        let mut waiting = self.lock();
        if !self.subscribed.load(Ordering::Acquire) {
            deliver_all(&mut waiting, hub);
            deliver(items, hub);
            return;
        }
        waiting.push_back(Waiting {
            k,
            deadline: Instant::now() + ECHO_WAIT,
            items,
        });
    }

    /// Message `k` came back (or will not: its publish failed): it and everything published
    /// before it go to the sessions.
    pub fn heard(&self, k: u64, hub: &Hub) {
        let mut waiting = self.lock();
        while waiting.front().is_some_and(|w| w.k <= k) {
            if let Some(w) = waiting.pop_front() {
                deliver(w.items, hub);
            }
        }
    }

    /// Sends what waited past [`ECHO_WAIT`].
    pub fn overdue(&self, hub: &Hub) {
        let now = Instant::now();
        let mut waiting = self.lock();
        // Deadlines grow along the queue: the overdue ones are its front.
        while waiting.front().is_some_and(|w| w.deadline <= now) {
            if let Some(w) = waiting.pop_front() {
                deliver(w.items, hub);
            }
        }
    }

    /// The node's subscription is up or down; while it is down nothing waits (whatever waits
    /// goes to the sessions now).
    pub fn set_subscribed(&self, subscribed: bool, hub: &Hub) {
        let mut waiting = self.lock();
        self.subscribed.store(subscribed, Ordering::Release);
        if !subscribed {
            deliver_all(&mut waiting, hub);
        }
    }
}

fn deliver_all(waiting: &mut VecDeque<Waiting>, hub: &Hub) {
    for w in waiting.drain(..) {
        deliver(w.items, hub);
    }
}

fn deliver(items: Vec<Outgoing>, hub: &Hub) {
    for item in items {
        hub.deliver(item);
    }
}

#[cfg(test)]
mod tests {
    use chatd_core::outbox::Channel;

    use super::*;
    use crate::hub::{Delivery, Registration};

    fn item(id: &str) -> Outgoing {
        Outgoing {
            user: "bob".into(),
            channel: Channel::Inbox,
            payload: bytes::Bytes::from_static(b"{}"),
            queue_id: Some(id.into()),
            skip_client: None,
        }
    }

    /// The queue ids `reg`'s session has been handed, in order.
    fn handed(reg: &Registration) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(d) = reg.entry.try_next_delivery() {
            if let Delivery::Item(item) = d {
                ids.extend(item.queue_id);
            }
        }
        ids
    }

    #[test]
    fn own_deliveries_wait_for_their_echo_and_keep_their_order() {
        let hub = Hub::new();
        let bob = hub.register("bob", "bob", hub.ticket(), 0);
        let echo = LocalEcho::default();
        echo.set_subscribed(true, &hub);
        echo.publishing(1, vec![item("1")], &hub);
        echo.publishing(2, vec![item("2"), item("3")], &hub);
        echo.publishing(3, vec![item("4")], &hub);
        assert!(handed(&bob).is_empty(), "not before their publish is heard");
        // What another node published meanwhile is delivered as it is heard.
        hub.deliver_from_elsewhere(item("x"));
        echo.heard(2, &hub);
        assert_eq!(handed(&bob), ["x", "1", "2", "3"]);
        // A failed publish, or the subscription lost: at once.
        echo.set_subscribed(false, &hub);
        assert_eq!(handed(&bob), ["4"]);
        echo.publishing(4, vec![item("5")], &hub);
        assert_eq!(handed(&bob), ["5"]);
    }

    #[test]
    fn an_echo_that_does_not_come_holds_nothing_for_long() {
        let hub = Hub::new();
        let bob = hub.register("bob", "bob", hub.ticket(), 0);
        let echo = LocalEcho::default();
        echo.set_subscribed(true, &hub);
        echo.publishing(1, vec![item("1")], &hub);
        echo.overdue(&hub);
        assert!(handed(&bob).is_empty());
        std::thread::sleep(ECHO_WAIT + Duration::from_millis(50));
        echo.overdue(&hub);
        assert_eq!(handed(&bob), ["1"]);
    }
}
