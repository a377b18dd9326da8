//! A session's subscriptions, checked against the contract's rules: its own `user/{me}/…`
//! filters (served by the hub) and `presence/{user}` topics (served by the presence relay).
//!
//! Both are bounded (`limits.max_filters_per_subscribe`, `max_subscriptions`,
//! `max_presence_watches`) and kept in maps, so a SUBSCRIBE costs constant work per filter; the
//! QoS granted to each topic the hub delivers is worked out when the filters change, so a
//! delivery costs a lookup, not a scan of the filters.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use chatd_auth::acl::{self, SubscribeRule};
use chatd_wire::topics::Channel;
use rumqttd::protocol::{
    Packet, QoS, RetainForwardRule, SubAck, Subscribe, SubscribeReasonCode, UnsubAck,
    UnsubAckReason, Unsubscribe,
};

use crate::wire::Version;

/// The result of a SUBSCRIBE.
pub struct SubscribeOutcome {
    /// The SUBACK to write.
    pub packet: Packet,
    /// Users whose presence the session starts watching (new ones).
    pub watch: Vec<String>,
    /// Presence topics granted by this SUBSCRIBE whose current state is due now, as MQTT 5's
    /// Retain Handling asks (3.1.1: every one granted, new or repeated).
    pub presence: Vec<String>,
    /// How many filters were refused (not authorized or over a limit).
    pub refused: usize,
    /// How many of them were refused because a limit was reached.
    pub over_quota: usize,
}

/// How much one session may subscribe to.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Filters one SUBSCRIBE may add or change; the rest of the packet is refused.
    pub per_packet: usize,
    /// `user/{me}/…` filters held at once.
    pub filters: usize,
    /// `presence/{user}` subscriptions held at once.
    pub watches: usize,
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
    quota: Quota,
    /// The topic of each [`Channel`] (in [`Channel::ALL`] order: the queue-fed ones first),
    /// with the QoS the filters grant it; shared by every publish on it.
    delivered: [(Arc<str>, Option<u8>); 5],
    own: HashMap<String, u8>,
    /// `presence/{user}` topics with their granted QoS and the number of the newest change
    /// the client has (older relayed changes are skipped).
    presence: HashMap<String, (u8, u64)>,
}

impl Subscriptions {
    /// No subscriptions yet, for user `me`, within `quota`.
    pub fn new(me: &str, quota: Quota) -> Subscriptions {
        Subscriptions {
            me: me.to_string(),
            quota,
            delivered: Channel::ALL.map(|channel| (Arc::from(channel.topic(me)), None)),
            own: HashMap::new(),
            presence: HashMap::new(),
        }
    }

    /// Applies a SUBSCRIBE: each filter is granted (QoS at most 1) or refused on its own. A
    /// filter the session already holds is granted again whatever the limits; a new one past a
    /// limit, and every filter past the packet's limit, is refused (5.0: 0x97 quota exceeded,
    /// 3.1.1: 0x80) without being looked at.
    pub fn subscribe(&mut self, subscribe: Subscribe, version: Version) -> SubscribeOutcome {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut watch = Vec::new();
        let mut presence = Vec::new();
        let mut refused = 0;
        let mut over_quota = 0;
        let mut own_changed = false;
        let quota_code = match version {
            Version::V4 => SubscribeReasonCode::Failure,
            Version::V5 => SubscribeReasonCode::QuotaExceeded,
        };
        for (i, filter) in subscribe.filters.into_iter().enumerate() {
            if i >= self.quota.per_packet {
                over_quota += 1;
                codes.push(quota_code);
                continue;
            }
            let qos = (filter.qos as u8).min(1);
            match acl::can_subscribe(&self.me, &filter.path) {
                SubscribeRule::Own => {
                    let held = self.own.len();
                    match self.own.entry(filter.path) {
                        Entry::Occupied(mut known) => *known.get_mut() = qos,
                        Entry::Vacant(new) if held < self.quota.filters => {
                            new.insert(qos);
                        }
                        Entry::Vacant(_) => {
                            over_quota += 1;
                            codes.push(quota_code);
                            continue;
                        }
                    }
                    own_changed = true;
                    codes.push(granted_code(qos));
                }
                SubscribeRule::Presence(user) => {
                    // A repeated subscription changes the QoS and keeps what the client has.
                    let held = self.presence.len();
                    let created = match self.presence.entry(filter.path.clone()) {
                        Entry::Occupied(mut known) => {
                            known.get_mut().0 = qos;
                            false
                        }
                        Entry::Vacant(new) if held < self.quota.watches => {
                            new.insert((qos, 0));
                            watch.push(user);
                            true
                        }
                        Entry::Vacant(_) => {
                            over_quota += 1;
                            codes.push(quota_code);
                            continue;
                        }
                    };
                    // The current state is what a retained message is elsewhere, so Retain
                    // Handling decides when it is sent ([MQTT-3.3.1-9] to [MQTT-3.3.1-11]);
                    // 3.1.1 filters always ask for it.
                    let send_state = match filter.retain_forward_rule {
                        RetainForwardRule::OnEverySubscribe => true,
                        RetainForwardRule::OnNewSubscribe => created,
                        RetainForwardRule::Never => false,
                    };
                    if send_state {
                        presence.push(filter.path);
                    }
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
        if own_changed {
            self.regrant();
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
            refused: refused + over_quota,
            over_quota,
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
        let mut own_changed = false;
        for filter in unsubscribe.filters {
            let mut existed = self.own.remove(&filter).is_some();
            own_changed |= existed;
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
        if own_changed {
            self.regrant();
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
        match self.delivered.iter().find(|(t, _)| &**t == topic) {
            Some((_, qos)) => *qos,
            None => self.scan(topic),
        }
    }

    /// The topic of `channel` for this user and the QoS the filters grant it (`None`: the
    /// session does not receive it).
    pub fn on(&self, channel: Channel) -> (Arc<str>, Option<u8>) {
        let (topic, qos) = &self.delivered[channel.index()];
        (topic.clone(), *qos)
    }

    /// The highest QoS any filter grants `topic`.
    fn scan(&self, topic: &str) -> Option<u8> {
        self.own
            .iter()
            .filter(|(f, _)| acl::topic_matches(topic, f))
            .map(|(_, q)| *q)
            .max()
    }

    /// Works out again what the filters grant each delivered topic (after they changed: once
    /// per SUBSCRIBE or UNSUBSCRIBE, not per filter).
    fn regrant(&mut self) {
        for i in 0..self.delivered.len() {
            self.delivered[i].1 = self.scan(&self.delivered[i].0);
        }
    }

    /// Which topics fed from the user's queue the session receives: bit 0 inbox, bit 1
    /// receipts (0 = none).
    pub fn queue_coverage(&self) -> u8 {
        Channel::ALL
            .iter()
            .filter(|channel| channel.is_queued())
            .filter(|channel| self.delivered[channel.index()].1.is_some())
            .fold(0, |bits, channel| bits | (1 << channel.index()))
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

    /// Every filter held with its QoS, `user/{me}/…` and `presence/{user}` alike, in a
    /// stable order: what a kept session saves.
    pub fn filters(&self) -> Vec<(String, u8)> {
        let mut filters: Vec<(String, u8)> = self
            .own
            .iter()
            .map(|(f, q)| (f.clone(), *q))
            .chain(self.presence.iter().map(|(t, (q, _))| (t.clone(), *q)))
            .collect();
        filters.sort();
        filters
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

    const QUOTA: Quota = Quota {
        per_packet: 64,
        filters: 256,
        watches: 1024,
    };

    fn subscribe_all(subs: &mut Subscriptions, topics: &[&str], version: Version) -> Vec<u8> {
        let filters = topics
            .iter()
            .map(|topic| Filter {
                path: topic.to_string(),
                qos: QoS::AtLeastOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: rumqttd::protocol::RetainForwardRule::OnEverySubscribe,
            })
            .collect();
        let outcome = subs.subscribe(Subscribe { pkid: 1, filters }, version);
        match outcome.packet {
            Packet::SubAck(ack, _) => ack
                .return_codes
                .iter()
                .map(|code| match code {
                    SubscribeReasonCode::Success(qos) => *qos as u8,
                    SubscribeReasonCode::QuotaExceeded => 0x97,
                    SubscribeReasonCode::Failure => 0x80,
                    _ => 0x87,
                })
                .collect(),
            _ => unreachable!("SUBSCRIBE is answered by SUBACK"),
        }
    }

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
    fn limits_refuse_the_excess_and_keep_what_is_held() {
        let quota = Quota {
            per_packet: 3,
            filters: 4,
            watches: 2,
        };
        let mut subs = Subscriptions::new("carol", quota);
        let codes = subscribe_all(
            &mut subs,
            &[
                "user/carol/a",
                "user/carol/b",
                "user/carol/c",
                "user/carol/d",
            ],
            Version::V5,
        );
        assert_eq!(codes, vec![1, 1, 1, 0x97]);
        let codes = subscribe_all(
            &mut subs,
            &["user/carol/a", "user/carol/inbox", "user/carol/e"],
            Version::V4,
        );
        assert_eq!(codes, vec![1, 1, 0x80]);
        assert_eq!(subs.granted("user/carol/inbox"), Some(1));
        assert_eq!(subs.queue_coverage(), 1);
        let codes = subscribe_all(
            &mut subs,
            &["presence/a", "presence/b", "presence/c"],
            Version::V5,
        );
        assert_eq!(codes, vec![1, 1, 0x97]);
        let codes = subscribe_all(&mut subs, &["presence/a"], Version::V5);
        assert_eq!(codes, vec![1]);
    }

    #[test]
    fn grants_follow_subscribe_and_unsubscribe() {
        let mut subs = Subscriptions::new("carol", QUOTA);
        assert_eq!(subs.granted("user/carol/rpc"), None);
        subscribe_all(&mut subs, &["user/carol/#"], Version::V5);
        assert_eq!(subs.granted("user/carol/rpc"), Some(1));
        assert_eq!(subs.granted("user/carol/other"), Some(1));
        assert_eq!(subs.queue_coverage(), 3);
        subs.unsubscribe(
            Unsubscribe {
                pkid: 2,
                filters: vec!["user/carol/#".to_string()],
            },
            Version::V5,
        );
        assert_eq!(subs.granted("user/carol/rpc"), None);
        assert_eq!(subs.queue_coverage(), 0);
    }

    #[test]
    fn retain_handling_decides_when_the_current_state_is_due() {
        let mut subs = Subscriptions::new("carol", QUOTA);
        let mut with_rule = |rule: RetainForwardRule| {
            let filter = Filter {
                path: "presence/bob".to_string(),
                qos: QoS::AtLeastOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: rule,
            };
            let subscribe = Subscribe {
                pkid: 1,
                filters: vec![filter],
            };
            subs.subscribe(subscribe, Version::V5).presence.len()
        };
        // 2: never at subscribe time, even for a new subscription.
        assert_eq!(with_rule(RetainForwardRule::Never), 0);
        // 1: only for a new one (this one exists now).
        assert_eq!(with_rule(RetainForwardRule::OnNewSubscribe), 0);
        // 0: on every SUBSCRIBE.
        assert_eq!(with_rule(RetainForwardRule::OnEverySubscribe), 1);
        let mut fresh = Subscriptions::new("carol", QUOTA);
        let filter = Filter {
            path: "presence/dave".to_string(),
            qos: QoS::AtMostOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnNewSubscribe,
        };
        let outcome = fresh.subscribe(
            Subscribe {
                pkid: 2,
                filters: vec![filter],
            },
            Version::V5,
        );
        assert_eq!(outcome.presence, vec!["presence/dave".to_string()]);
    }

    #[test]
    fn presence_changes_older_than_what_the_client_has_are_skipped() {
        let mut subs = Subscriptions::new("carol", QUOTA);
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
