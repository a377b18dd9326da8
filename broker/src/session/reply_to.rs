//! MQTT 5 request / response (section 4.10) for `chat/{me}/rpc`: a request's Correlation Data
//! comes back on its reply unchanged, and a Response Topic in the caller's own `user/{me}/…`
//! space that the session is subscribed to receives the reply instead of `user/{me}/rpc`.
//!
//! A Response Topic anywhere else is not refused: the specification leaves topic authorization
//! to the server (section 4.10.1) and names no error for it, so the caller still gets its answer,
//! on `user/{me}/rpc` as without the property. What a client may read stays what the
//! "Authorization" rules say: a reply is never written to a topic outside the caller's space.
//! A Response Topic with wildcard characters breaks [MQTT-3.3.2-14] and closes the session
//! (DISCONNECT 0x82 protocol error), as a malformed topic would.
//!
//! Requests without these properties (every 3.1.1 request, and most 5.0 ones) carry no
//! [`ReplyTo`] at all: their replies take the usual path, with nothing allocated.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use chatd_wire::topics::Channel;
use rumqttd::protocol::{DisconnectReasonCode, PublishProperties};

use super::subscriptions::Subscriptions;

/// The PUBLISH property identifier of Correlation Data.
const CORRELATION_DATA: u8 = 0x09;

/// Where an rpc request's reply goes, and the PUBLISH properties it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The request's Response Topic, when it lies in the caller's `user/{me}/…` space.
    topic: Option<String>,
    /// The reply's PUBLISH properties, encoded (the request's Correlation Data, or nothing).
    properties: Bytes,
}

impl ReplyTo {
    /// What the properties of `me`'s rpc request ask of its reply: `None` when nothing (no
    /// Correlation Data, no usable Response Topic), an error for a Response Topic with
    /// wildcards.
    pub fn of(
        me: &str,
        request: &PublishProperties,
    ) -> Result<Option<Box<ReplyTo>>, DisconnectReasonCode> {
        let topic = match request.response_topic.as_deref() {
            Some(topic) if topic.contains(['+', '#']) => {
                return Err(DisconnectReasonCode::ProtocolError)
            }
            Some(topic) if in_own_space(me, topic) => Some(topic.to_string()),
            _ => None,
        };
        let properties = match request.correlation_data.as_deref() {
            Some(data) => encode_correlation(data),
            None => Bytes::new(),
        };
        if topic.is_none() && properties.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(ReplyTo { topic, properties })))
    }

    /// The topic the reply of `channel` is written to, and the QoS the session receives it at
    /// (`None`: not written to this session). The Response Topic when the session is
    /// subscribed to it, else the channel's own topic.
    pub fn target(&self, subs: &Subscriptions, channel: Channel) -> (Arc<str>, Option<u8>) {
        if let Some(topic) = &self.topic {
            if let Some(qos) = subs.granted(topic) {
                return (Arc::from(topic.as_str()), Some(qos));
            }
        }
        subs.on(channel)
    }

    /// The reply's PUBLISH properties, encoded.
    pub fn properties(&self) -> &[u8] {
        &self.properties
    }
}

/// Whether `topic` names a topic below `user/{me}/`.
fn in_own_space(me: &str, topic: &str) -> bool {
    topic
        .strip_prefix("user/")
        .and_then(|rest| rest.strip_prefix(me))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|below| !below.is_empty())
}

/// Correlation Data as a PUBLISH property. The decoder read it with a two-byte length, so it
/// always fits one; should it not, the property is left out rather than written wrong.
fn encode_correlation(data: &[u8]) -> Bytes {
    let Ok(len) = u16::try_from(data.len()) else {
        return Bytes::new();
    };
    let mut out = BytesMut::with_capacity(3 + data.len());
    out.put_u8(CORRELATION_DATA);
    out.put_u16(len);
    out.put_slice(data);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(topic: Option<&str>, data: Option<&[u8]>) -> PublishProperties {
        PublishProperties {
            payload_format_indicator: None,
            message_expiry_interval: None,
            topic_alias: None,
            response_topic: topic.map(str::to_string),
            correlation_data: data.map(Bytes::copy_from_slice),
            user_properties: Vec::new(),
            subscription_identifiers: Vec::new(),
            content_type: None,
        }
    }

    #[test]
    fn only_what_the_request_asks_is_kept() {
        assert_eq!(ReplyTo::of("al", &request(None, None)), Ok(None));
        // Outside the caller's space: the usual topic, so nothing to keep.
        for topic in [
            "user/bob/x",
            "user/al",
            "user/al/",
            "user/alice/x",
            "chat/al/x",
        ] {
            assert_eq!(
                ReplyTo::of("al", &request(Some(topic), None)),
                Ok(None),
                "{topic}"
            );
        }
        let own = ReplyTo::of("al", &request(Some("user/al/answers"), Some(b"c1")))
            .unwrap()
            .unwrap();
        assert_eq!(own.topic.as_deref(), Some("user/al/answers"));
        assert_eq!(own.properties(), &[0x09, 0x00, 0x02, b'c', b'1'][..]);
        assert_eq!(
            ReplyTo::of("al", &request(Some("user/al/+"), None)),
            Err(DisconnectReasonCode::ProtocolError)
        );
    }
}
