//! The outbox of a cluster node: every delivery goes to this node's sessions, as on one node,
//! and is announced to the other nodes through the wake-up bus.

use std::sync::Arc;

use chatd_core::outbox::{Deliver, Outgoing};

use super::wake_bus::WakeBus;
use crate::hub::Hub;

/// [`Deliver`] for a node of a cluster.
pub struct ClusterDeliver {
    hub: Arc<Hub>,
    bus: Arc<WakeBus>,
}

impl ClusterDeliver {
    /// Delivers to `hub` and tells the other nodes through `bus`.
    pub fn new(hub: Arc<Hub>, bus: Arc<WakeBus>) -> ClusterDeliver {
        ClusterDeliver { hub, bus }
    }
}

impl Deliver for ClusterDeliver {
    fn deliver(&self, item: Outgoing) {
        // The item itself travels, queued or not: a user's devices on other nodes get it
        // live, as devices on this node do. (Waking them to read it from the queue instead
        // would race with this node's devices, whose acknowledgement takes it out of the
        // queue.) A node that misses it reads the queue when it sweeps.
        self.bus.forward(&item);
        self.hub.deliver(item);
    }

    fn is_online(&self, user: &str) -> bool {
        // This node's devices only (it must not block). A user whose devices are all on
        // other nodes therefore gets push jobs written; not sending those is the push
        // bridge's part of cluster mode, not done yet.
        self.hub.is_online(user)
    }
}
