//! A session's subscriptions, checked against the contract's rules: its own `user/{me}/…`
//! filters (served by the hub) and `presence/{user}` topics (served by the rumqttd router).

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
    /// Filters to subscribe to on the router (new ones).
    pub router_subscribe: Vec<String>,
    /// Presence topics granted by this SUBSCRIBE (new or repeated): each gets the current state.
    pub presence: Vec<String>,
    /// How many filters were refused.
    pub refused: usize,
}

/// The result of an UNSUBSCRIBE.
pub struct UnsubscribeOutcome {
    /// The UNSUBACK to write.
    pub packet: Packet,
    /// Filters to drop on the router.
    pub router_unsubscribe: Vec<String>,
}

/// Filters with their granted QoS (0 or 1).
pub struct Subscriptions {
    me: String,
    queued_topics: [String; 2],
    own: Vec<(String, u8)>,
    router: HashMap<String, u8>,
}

impl Subscriptions {
    /// No subscriptions yet, for user `me`.
    pub fn new(me: &str) -> Subscriptions {
        Subscriptions {
            me: me.to_string(),
            queued_topics: [format!("user/{me}/inbox"), format!("user/{me}/receipt")],
            own: Vec::new(),
            router: HashMap::new(),
        }
    }

    /// Applies a SUBSCRIBE: each filter is granted (QoS at most 1) or refused on its own.
    pub fn subscribe(&mut self, subscribe: Subscribe, version: Version) -> SubscribeOutcome {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut router_subscribe = Vec::new();
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
                SubscribeRule::Presence(_) => {
                    if self.router.insert(filter.path.clone(), qos).is_none() {
                        router_subscribe.push(filter.path.clone());
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
            router_subscribe,
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
        let mut router_unsubscribe = Vec::new();
        for filter in unsubscribe.filters {
            let before = self.own.len();
            self.own.retain(|(f, _)| f != &filter);
            let mut existed = self.own.len() != before;
            if self.router.remove(&filter).is_some() {
                existed = true;
                router_unsubscribe.push(filter);
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
            router_unsubscribe,
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

    /// The QoS at which the session receives router topic `topic`.
    pub fn router_granted(&self, topic: &str) -> Option<u8> {
        self.router.get(topic).copied()
    }
}

fn granted_code(qos: u8) -> SubscribeReasonCode {
    SubscribeReasonCode::Success(if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    })
}
