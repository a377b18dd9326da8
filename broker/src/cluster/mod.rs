//! What a node of a cluster adds to a single node: the other nodes write to this node's users'
//! queues in the shared database, so it has to hear about it. After each commit a node hands
//! its deliveries to the others through Redis ([`wake_bus`]); the nodes that hold a device of
//! the user deliver them as their own. Redis is never the truth: a delivery that is lost
//! (Redis down, a node's bus cut off) only waits in the store until the next sweep, in which
//! every session reads its queue again. A batch's acks wait until its deliveries are published
//! ([`held_answers`]), so nothing sent after an ack overtakes them on another node.

pub mod deliver;
pub mod held_answers;
pub mod local_echo;
pub mod peers;
pub mod wake_bus;
pub mod wire;
