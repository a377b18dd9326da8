//! The topics chatd writes to a user's devices, `user/{me}/{name}`: plugins name a delivery by
//! its [`Channel`] and only the broker turns it into a topic string.

/// What a delivery to a user is, and so the `user/{me}/…` topic it is published on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A message for the user (`user/{me}/inbox`), 1:1 or group, kept in the user's queue.
    Inbox,
    /// A delivered/read receipt for a message the user sent (`user/{me}/receipt`), queued too.
    Receipt,
    /// The answer to a send or a refused receipt (`user/{me}/ack`).
    Ack,
    /// The reply to a request (`user/{me}/rpc`).
    Rpc,
    /// A typing indicator (`user/{me}/typing`), never stored.
    Typing,
}

impl Channel {
    /// Every channel, the queue-fed ones first (the broker keeps a granted QoS per channel in
    /// this order).
    pub const ALL: [Channel; 5] = [
        Channel::Inbox,
        Channel::Receipt,
        Channel::Ack,
        Channel::Rpc,
        Channel::Typing,
    ];

    /// The channel whose [`Channel::name`] is `name`.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The last level of the channel's topic.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Receipt => "receipt",
            Channel::Ack => "ack",
            Channel::Rpc => "rpc",
            Channel::Typing => "typing",
        }
    }

    /// The channel's position in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The full topic of the channel for `user`.
    pub fn topic(self, user: &str) -> String {
        format!("user/{user}/{}", self.name())
    }

    /// Whether deliveries on this channel sit in the user's queue until a device acknowledges
    /// them (and are replayed from the store to a device that subscribes).
    pub fn is_queued(self) -> bool {
        matches!(self, Channel::Inbox | Channel::Receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_topics_are_the_contracts() {
        for (i, channel) in Channel::ALL.iter().enumerate() {
            assert_eq!(channel.index(), i);
        }
        assert_eq!(Channel::Inbox.topic("bob"), "user/bob/inbox");
        assert_eq!(Channel::Typing.topic("bob"), "user/bob/typing");
        let queued: Vec<_> = Channel::ALL.iter().filter(|c| c.is_queued()).collect();
        assert_eq!(queued, [&Channel::Inbox, &Channel::Receipt]);
    }
}
