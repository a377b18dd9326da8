//! A session's subscriptions, checked against the contract's rules: its own `user/{me}/…`
//! filters (served by the hub) and `presence/{user}` topics (served by the presence relay).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use chatd_auth::acl::{self, SubscribeRule};
use rumqttd::protocol::{
    Packet, QoS, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};

use crate::wire::Version;

/// The result of a SUBSCRIBE.
pub struct SubscribeOutcome {
    /// The SUBACK to write.
    pub packet: Packet,
    /// Users whose presence the session starts watching (new ones).
    pub watch: Vec<String>,
    /// Presence topics granted by this SUBSCRIBE (new or repeated): each gets the current state.
    pub presence: Vec<String>,
    /// How many filters were refused.
    pub refused: usize,
}

/// The result of an UNSUBSCRIBE.
pub struct UnsubscribeOutcome {
    /// The UNSUBACK to write.
    pub packet: Packet,
    /// Users whose presence the session stops watching.
    pub unwatch: Vec<String>,
}

/// Filters with their granted QoS (0 or 1).
pub struct Subscriptions {
    me: String,
    queued_topics: [String; 2],
    own: Vec<(String, u8)>,
    /// `presence/{user}` topics with their granted QoS and the number of the newest change
    /// the client has (older relayed changes are skipped).
    presence: HashMap<String, (u8, u64)>,
}

impl Subscriptions {
    /// No subscriptions yet, for user `me`.
    pub fn new(me: &str) -> Subscriptions {
        Subscriptions {
            me: me.to_string(),
            queued_topics: [format!("user/{me}/inbox"), format!("user/{me}/receipt")],
            own: Vec::new(),
            presence: HashMap::new(),
        }
    }

    /// Applies a SUBSCRIBE: each filter is granted (QoS at most 1) or refused on its own.
    pub fn subscribe(&mut self, subscribe: Subscribe, version: Version) -> SubscribeOutcome {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut watch = Vec::new();
        let mut presence = Vec::new();
        let mut refused = 0;
        for filter in subscribe.filters {
            let qos = (filter.qos as u8).min(1);
            match acl::can_subscribe(&self.me, &filter.path) {
                SubscribeRule::Own => {
                    self.own.retain(|(f, _)| f != &filter.path);
                    self.own.push((filter.path, qos));
                    codes.push(granted_code(qos));
                }
                SubscribeRule::Presence(user) => {
                    // A repeated subscription changes the QoS and keeps what the client has.
                    match self.presence.entry(filter.path.clone()) {
                        Entry::Occupied(mut known) => known.get_mut().0 = qos,
                        Entry::Vacant(new) => {
                            new.insert((qos, 0));
                            watch.push(user);
                        }
                    }
                    presence.push(filter.path);
                    codes.push(granted_code(qos));
                }
                SubscribeRule::Denied(_) => {
                    refused += 1;
                    codes.push(match version {
                        Version::V4 => SubscribeReasonCode::Failure,
                        Version::V5 => SubscribeReasonCode::NotAuthorized,
                    });
                }
            }
        }
        SubscribeOutcome {
            packet: Packet::SubAck(
                SubAck {
                    pkid: subscribe.pkid,
                    return_codes: codes,
                },
                None,
            ),
            watch,
            presence,
            refused,
        }
    }

    /// Applies an UNSUBSCRIBE.
    pub fn unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        version: Version,
    ) -> UnsubscribeOutcome {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        let mut unwatch = Vec::new();
        for filter in unsubscribe.filters {
            let before = self.own.len();
            self.own.retain(|(f, _)| f != &filter);
            let mut existed = self.own.len() != before;
            if self.presence.remove(&filter).is_some() {
                existed = true;
                if let Some(user) = filter.strip_prefix("presence/") {
                    unwatch.push(user.to_string());
                }
            }
            reasons.push(if existed {
                UnsubAckReason::Success
            } else {
                UnsubAckReason::NoSubscriptionExisted
            });
        }
        if version == Version::V4 {
            reasons.clear();
        }
        UnsubscribeOutcome {
            packet: Packet::UnsubAck(
                UnsubAck {
                    pkid: unsubscribe.pkid,
                    reasons,
                },
                None,
            ),
            unwatch,
        }
    }

    /// The QoS at which the session receives `topic` (one of its own), if it is subscribed.
    pub fn granted(&self, topic: &str) -> Option<u8> {
        self.own
            .iter()
            .filter(|(f, _)| acl::topic_matches(topic, f))
            .map(|(_, q)| *q)
            .max()
    }

    /// Which topics fed from the user's queue the session receives: bit 0 inbox, bit 1
    /// receipts (0 = none).
    pub fn queue_coverage(&self) -> u8 {
        self.queued_topics
            .iter()
            .enumerate()
            .filter(|(_, t)| self.granted(t).is_some())
            .fold(0, |bits, (i, _)| bits | (1 << i))
    }

    /// The QoS at which the session receives presence topic `topic`.
    pub fn presence_granted(&self, topic: &str) -> Option<u8> {
        self.presence.get(topic).map(|(qos, _)| *qos)
    }

    /// Whether change number `seq` on `topic` is newer than what the client has; if so it
    /// becomes what the client has. `Some(qos)` to send it.
    pub fn presence_change(&mut self, topic: &str, seq: u64) -> Option<u8> {
        let (qos, floor) = self.presence.get_mut(topic)?;
        if seq <= *floor {
            return None;
        }
        *floor = seq;
        Some(*qos)
    }

    /// The client was sent the state of `topic` as of change number `seq`.
    pub fn presence_sent(&mut self, topic: &str, seq: u64) {
        if let Some((_, floor)) = self.presence.get_mut(topic) {
            *floor = (*floor).max(seq);
        }
    }

    /// Every presence topic the session is subscribed to, with its QoS.
    pub fn presence_topics(&self) -> impl Iterator<Item = (&str, u8)> {
        self.presence.iter().map(|(t, (q, _))| (t.as_str(), *q))
    }
}

fn granted_code(qos: u8) -> SubscribeReasonCode {
    SubscribeReasonCode::Success(if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::Filter;

    fn subscribe(subs: &mut Subscriptions, topic: &str) -> SubscribeOutcome {
        let filter = Filter {
            path: topic.to_string(),
            qos: QoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: rumqttd::protocol::RetainForwardRule::OnEverySubscribe,
        };
        subs.subscribe(
            Subscribe {
                pkid: 1,
                filters: vec![filter],
            },
            Version::V4,
        )
    }

    #[test]
    fn presence_changes_older_than_what_the_client_has_are_skipped() {
        let mut subs = Subscriptions::new("carol");
        let first = subscribe(&mut subs, "presence/bob");
        assert_eq!(first.watch, vec!["bob".to_string()]);
        // The state written on SUBSCRIBE was as of change 7.
        subs.presence_sent("presence/bob", 7);
        assert_eq!(subs.presence_change("presence/bob", 6), None);
        assert_eq!(subs.presence_change("presence/bob", 7), None);
        assert_eq!(subs.presence_change("presence/bob", 9), Some(1));
        assert_eq!(subs.presence_change("presence/bob", 8), None);
        assert_eq!(subs.presence_change("presence/alice", 10), None);

        // Subscribing again is no new watch and keeps what the client has.
        let again = subscribe(&mut subs, "presence/bob");
        assert!(again.watch.is_empty());
        assert_eq!(again.presence, vec!["presence/bob".to_string()]);
        assert_eq!(subs.presence_change("presence/bob", 9), None);
    }
}
