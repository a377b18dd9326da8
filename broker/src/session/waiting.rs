//! What a session has to write at QoS 1 while the client's receive window is full: replies
//! (acks and rpc answers) and presence states. The client's Receive Maximum bounds the QoS 1
//! PUBLISHes it has not acknowledged; everything the session itself writes counts against it,
//! so what comes while the window is full waits here, in arrival order, until PUBACKs make room.
//!
//! Both parts are bounded. Replies: at most [`MAX_WAITING_REPLIES`]; the caller writes one past
//! that at QoS 0 (Receive Maximum limits only QoS 1 and 2), so a client that never acknowledges
//! costs bounded memory and the socket is still read (its PUBACKs may sit behind its requests).
//! Presence: one entry per watched user at most — presence is a state, so a user waits once
//! however many changes come, and is written with its state as of the moment it is written (the
//! newest). Nothing is allocated while nothing waits.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use chatd_wire::topics::Channel;

use super::reply_to::ReplyTo;

/// Replies that wait for the window at most; more are written at QoS 0.
pub const MAX_WAITING_REPLIES: usize = 64;

/// One PUBLISH that waited for room.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// A reply: its channel, the payload it had when it was made, and where an MQTT 5 request
    /// asked for it (see [`ReplyTo`]).
    Reply(Channel, Bytes, Option<Box<ReplyTo>>),
    /// The current state of a presence topic is due; `retain` when it answers a SUBSCRIBE.
    Presence { topic: String, retain: bool },
}

/// The waiting PUBLISHes of one session.
#[derive(Debug, Default)]
pub struct Waiting {
    replies: VecDeque<(Channel, Bytes, Option<Box<ReplyTo>>)>,
    presence: VecDeque<String>,
    /// The topics in `presence` (each is there once).
    queued: HashSet<String>,
    /// The waiting topics whose state answers a SUBSCRIBE (so it is flagged retained).
    retained: HashSet<String>,
}

impl Waiting {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.presence.is_empty()
    }

    /// Queues a reply, or hands its payload and [`ReplyTo`] back when [`MAX_WAITING_REPLIES`]
    /// already wait.
    pub fn push_reply(
        &mut self,
        channel: Channel,
        payload: Bytes,
        to: Option<Box<ReplyTo>>,
    ) -> Result<(), (Bytes, Option<Box<ReplyTo>>)> {
        if self.replies.len() >= MAX_WAITING_REPLIES {
            return Err((payload, to));
        }
        self.replies.push_back((channel, payload, to));
        Ok(())
    }

    /// The current state of presence topic `topic` is due (once, however often it is asked).
    pub fn push_presence(&mut self, topic: &str, retain: bool) {
        if retain && !self.retained.contains(topic) {
            self.retained.insert(topic.to_string());
        }
        if !self.queued.contains(topic) {
            self.queued.insert(topic.to_string());
            self.presence.push_back(topic.to_string());
        }
    }

    /// The oldest waiting reply, else the oldest waiting presence topic.
    pub fn pop(&mut self) -> Option<Waited> {
        let waited = if let Some((channel, payload, to)) = self.replies.pop_front() {
            Some(Waited::Reply(channel, payload, to))
        } else {
            self.presence.pop_front().map(|topic| {
                self.queued.remove(&topic);
                let retain = self.retained.remove(&topic);
                Waited::Presence { topic, retain }
            })
        };
        if self.is_empty() {
            // A burst's memory is not kept by an idle session.
            *self = Waiting::default();
        }
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_first_presence_once_per_topic_and_bounded() {
        let mut waiting = Waiting::default();
        assert!(waiting.is_empty());
        waiting.push_presence("presence/a", false);
        waiting.push_presence("presence/b", true);
        waiting.push_presence("presence/a", true);
        waiting.push_presence("presence/b", false);
        for i in 0..MAX_WAITING_REPLIES {
            assert!(waiting
                .push_reply(Channel::Rpc, Bytes::from(format!("r{i}")), None)
                .is_ok());
        }
        assert!(waiting
            .push_reply(Channel::Ack, Bytes::from_static(b"y"), None)
            .is_err());
        for i in 0..MAX_WAITING_REPLIES {
            assert_eq!(
                waiting.pop(),
                Some(Waited::Reply(
                    Channel::Rpc,
                    Bytes::from(format!("r{i}")),
                    None
                ))
            );
        }
        assert_eq!(
            waiting.pop(),
            Some(Waited::Presence {
                topic: "presence/a".into(),
                retain: true
            })
        );
        assert_eq!(
            waiting.pop(),
            Some(Waited::Presence {
                topic: "presence/b".into(),
                retain: true
            })
        );
        assert_eq!(waiting.pop(), None);
        assert!(waiting.is_empty());
        assert_eq!(waiting.queued.capacity(), 0);
    }
}
