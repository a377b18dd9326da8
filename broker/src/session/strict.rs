//! What an MQTT 5 client may not send because its CONNACK said so: Maximum QoS 1, Retain
//! Available 0, Receive Maximum [`SERVER_RECEIVE_MAXIMUM`], no Subscription Identifiers, no
//! Shared Subscriptions. The specification makes each a protocol error with its own DISCONNECT
//! reason code, so a client learns which promise it broke instead of a generic 0x82.
//!
//! 3.1.1 announces none of these, and its clients are not checked here: QoS 2 is accepted (and
//! answered like QoS 1), the read loop's back-pressure bounds what is in flight, and a
//! `$share/…` filter is refused in SUBACK like any other filter outside the caller's space.

use rumqttd::protocol::{DisconnectReasonCode, Subscribe, SubscribeProperties};

use super::connect::SERVER_RECEIVE_MAXIMUM;

/// The prefix of a shared subscription's filter (MQTT 5 section 4.8.2).
const SHARED_PREFIX: &str = "$share/";

/// Why an MQTT 5 PUBLISH of `qos` (`retain` set or not) ends the session, given the QoS 1
/// publishes already received and not yet acknowledged (`unacknowledged`).
pub fn publish_refusal(
    qos: u8,
    retain: bool,
    unacknowledged: usize,
) -> Option<DisconnectReasonCode> {
    if qos > 1 {
        // Section 3.3.1.2: above the announced Maximum QoS.
        return Some(DisconnectReasonCode::QoSNotSupported);
    }
    if retain {
        // Section 3.3.1.3 and [MQTT-3.2.2-14]: Retain Available 0.
        return Some(DisconnectReasonCode::RetainNotSupported);
    }
    if qos > 0 && unacknowledged >= usize::from(SERVER_RECEIVE_MAXIMUM) {
        // [MQTT-3.3.4-7]: one more than Receive Maximum without a PUBACK from the server.
        return Some(DisconnectReasonCode::ReceiveMaximumExceeded);
    }
    None
}

/// Why an MQTT 5 SUBSCRIBE ends the session: it carries a Subscription Identifier (section
/// 3.2.2.3.12) or a shared subscription's filter (section 3.2.2.3.13). The whole packet is
/// refused, none of its filters applied: the specification answers with DISCONNECT, not SUBACK.
pub fn subscribe_refusal(
    subscribe: &Subscribe,
    properties: &Option<SubscribeProperties>,
) -> Option<DisconnectReasonCode> {
    if properties.as_ref().is_some_and(|p| p.id.is_some()) {
        return Some(DisconnectReasonCode::SubscriptionIdentifiersNotSupported);
    }
    subscribe
        .filters
        .iter()
        .any(|filter| filter.path.starts_with(SHARED_PREFIX))
        .then_some(DisconnectReasonCode::SharedSubscriptionNotSupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{Filter, QoS, RetainForwardRule};

    fn subscribe(paths: &[&str]) -> Subscribe {
        Subscribe {
            pkid: 1,
            filters: paths
                .iter()
                .map(|path| Filter {
                    path: path.to_string(),
                    qos: QoS::AtLeastOnce,
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect(),
        }
    }

    #[test]
    fn publishes_beyond_what_connack_announced_are_refused() {
        assert_eq!(publish_refusal(0, false, 1000), None);
        assert_eq!(publish_refusal(1, false, 63), None);
        assert_eq!(
            publish_refusal(1, false, 64),
            Some(DisconnectReasonCode::ReceiveMaximumExceeded)
        );
        assert_eq!(
            publish_refusal(2, false, 0),
            Some(DisconnectReasonCode::QoSNotSupported)
        );
        assert_eq!(
            publish_refusal(0, true, 0),
            Some(DisconnectReasonCode::RetainNotSupported)
        );
    }

    #[test]
    fn subscription_identifiers_and_shared_filters_are_refused() {
        let plain = subscribe(&["user/a/#", "presence/b"]);
        assert_eq!(subscribe_refusal(&plain, &None), None);
        let with_id = Some(SubscribeProperties {
            id: Some(7),
            user_properties: Vec::new(),
        });
        assert_eq!(
            subscribe_refusal(&plain, &with_id),
            Some(DisconnectReasonCode::SubscriptionIdentifiersNotSupported)
        );
        assert_eq!(
            subscribe_refusal(&subscribe(&["user/a/inbox", "$share/g/user/a/#"]), &None),
            Some(DisconnectReasonCode::SharedSubscriptionNotSupported)
        );
    }
}
