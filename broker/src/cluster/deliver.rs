//! The outbox of a cluster node: every delivery is published on the wake-up bus, and reaches
//! this node's sessions when that publish comes back, in the order every node sees.

use std::sync::Arc;

use chatd_core::outbox::{Answers, Deliver, Outgoing};

use super::wake_bus::WakeBus;
use crate::hub::Hub;
use crate::presence::Presence;

/// [`Deliver`] for a node of a cluster.
pub struct ClusterDeliver {
    hub: Arc<Hub>,
    bus: Arc<WakeBus>,
    presence: Arc<Presence>,
}

impl ClusterDeliver {
    /// Delivers through `bus` to every node's sessions, `hub`'s too; `presence` knows who is
    /// online on any node.
    pub fn new(hub: Arc<Hub>, bus: Arc<WakeBus>, presence: Arc<Presence>) -> ClusterDeliver {
        ClusterDeliver { hub, bus, presence }
    }
}

impl Deliver for ClusterDeliver {
    fn deliver(&self, item: Outgoing) {
        // The item itself travels, queued or not: a user's devices on other nodes get it
        // live, as devices on this node do. (Waking them to read it from the queue instead
        // would race with this node's devices, whose acknowledgement takes it out of the
        // queue.) A node that misses it reads the queue when it sweeps. This node's sessions
        // get it when its publish comes back (`local_echo.rs`); at once when the bus is behind
        // and could not take it.
        if let Err(item) = self.bus.forward(item) {
            self.hub.deliver(item);
        }
    }

    fn is_online(&self, user: &str) -> bool {
        // Any node's devices: no push job for a user connected elsewhere.
        self.presence.is_online(user)
    }

    fn answer(&self, answers: Answers) {
        // Not before the other nodes have the deliveries: a sender that has its ack may send
        // again through another node, whose publish must not overtake this one.
        self.bus.answer(answers);
    }
}
