//! What a node of a cluster adds to a single node: the other nodes write to this node's users'
//! queues in the shared database, so it has to hear about it. After each commit a node tells
//! the others through Redis which users have something new ([`wake_bus`]); the nodes that hold
//! a device of one of them make its sessions read their queue from the store. Redis is never
//! the truth: a hint that is lost (Redis down, a node's bus cut off) only delays a delivery
//! until the next sweep, in which every session reads its queue again.

pub mod deliver;
pub mod wake_bus;
