//! What the plugins hand to the broker for delivery, so that messaging never needs to know
//! about MQTT sessions: typed values (what a delivery is, for whom), never topic strings.

use bytes::Bytes;
pub use chatd_wire::topics::Channel;

/// One publish to make to every connected device of `user`.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The user whose devices receive it.
    pub user: String,
    /// What it is (an inbox message, a receipt, a reply, a typing indicator); the broker
    /// publishes it on that channel's topic, e.g. `user/bob/inbox`.
    pub channel: Channel,
    /// The JSON payload, exactly as published.
    pub payload: Bytes,
    /// `Some(message id)` when the item sits in the user's undelivered queue: the broker then
    /// calls `Chat::acked` (messaging) once a device acknowledges it.
    pub queue_id: Option<String>,
    /// A client id of `user` that must not get this item: the device that sent a group
    /// message, whose other devices do get it.
    pub skip_client: Option<String>,
}

/// What a committed batch owes the clients that sent its jobs (acks, replies), sent at once.
pub type Answers = Box<dyn FnOnce() + Send>;

/// The broker's side of delivery.
pub trait Deliver: Send + Sync + 'static {
    /// Hands one item over. Must never block: it is called from the committer thread, and a
    /// slow device must not hold up everybody's acks (dropping is fine for queued items, which
    /// are redelivered from the queue).
    fn deliver(&self, item: Outgoing);

    /// Whether `user` has a device connected (to this node) right now; decides whether a
    /// push job is written for a message queued for them. Must never block.
    fn is_online(&self, user: &str) -> bool;

    /// Sends `answers`, the acks and replies of a batch whose items were just handed to
    /// [`Deliver::deliver`], once those items are on their way to every device that may get
    /// them: a sender who has its ack and sends again must not overtake its own message
    /// anywhere. On one node that is at once (the items are in the sessions' mailboxes
    /// already). Must never block, and must run `answers` exactly once, soon, even when the
    /// items are lost.
    fn answer(&self, answers: Answers) {
        answers();
    }
}
