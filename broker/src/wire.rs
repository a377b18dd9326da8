//! The MQTT wire format, through rumqttd's v4 (3.1.1) and v5 codecs.
//!
//! rumqttd keeps a PUBLISH's QoS and packet id crate-private, so this module reads them from the
//! frame's own bytes before handing the frame to the codec, and encodes outgoing PUBLISH frames
//! itself (a few lines, and no copy of the payload into an intermediate packet). It also turns the
//! codecs' panics on hostile input into errors: a bad client must never take a task down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, BytesMut};
use chatd_wire::mqtt::frame::{self, FixedHeader};
use chatd_wire::mqtt::varint;
use rumqttd::protocol::{self, v4::V4, v5::V5, DisconnectReasonCode, Packet, Protocol};

mod checks;

/// The MQTT protocol version a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// Why bytes from a client could not be turned into a packet.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The first packet was not a CONNECT.
    #[error("the first packet must be CONNECT")]
    NotConnect,
    /// CONNECT named a protocol level other than 4 or 5.
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// The packet is larger than the configured maximum.
    #[error("packet of {0} bytes is larger than the limit")]
    TooLarge(usize),
    /// Anything else the codec refused.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A well-formed packet that the protocol does not allow (MQTT 5: DISCONNECT 0x82).
    #[error("protocol error: {0}")]
    ProtocolError(String),
}

/// QoS, packet id and dup flag of an incoming PUBLISH, read from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishMeta {
    /// 0, 1 or 2.
    pub qos: u8,
    /// Packet id (0 for QoS 0).
    pub pkid: u16,
}

/// One decoded packet, with the PUBLISH facts the codec hides.
#[derive(Debug)]
pub struct Incoming {
    /// The packet as rumqttd's codec decoded it.
    pub packet: Packet,
    /// Set for PUBLISH packets.
    pub publish: Option<PublishMeta>,
}

/// Reads a fixed header with the shared codec, or None if incomplete.
fn fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, WireError> {
    frame::read_header(buf)
        .map_err(|_| WireError::Malformed("remaining length longer than 4 bytes".into()))
}

/// Looks at the first packet of a connection and says which protocol version it speaks.
/// Returns `Ok(None)` until enough bytes have arrived.
pub fn detect_version(buf: &[u8]) -> Result<Option<Version>, WireError> {
    let Some(header) = fixed_header(buf)? else {
        return Ok(None);
    };
    if header.packet_type() != 1 {
        return Err(WireError::NotConnect);
    }
    let rest = &buf[header.header_len..];
    if rest.len() < 2 {
        return Ok(None);
    }
    let name_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    if name_len > 6 {
        return Err(WireError::Malformed("bad protocol name".into()));
    }
    let Some(&level) = rest.get(2 + name_len) else {
        return Ok(None);
    };
    match level {
        4 => Ok(Some(Version::V4)),
        5 => Ok(Some(Version::V5)),
        other => Err(WireError::UnsupportedLevel(other)),
    }
}

/// Reads the QoS and packet id of a complete PUBLISH frame at the start of `buf`.
fn publish_meta(buf: &[u8]) -> Result<Option<PublishMeta>, WireError> {
    let Some(header) = fixed_header(buf)? else {
        return Ok(None);
    };
    if header.packet_type() != 3 {
        return Ok(None);
    }
    if buf.len() < header.packet_len() {
        return Ok(None);
    }
    let qos = (header.first_byte >> 1) & 0b11;
    let body = &buf[header.header_len..header.packet_len()];
    if qos == 0 {
        return Ok(Some(PublishMeta { qos, pkid: 0 }));
    }
    if body.len() < 2 {
        return Err(WireError::Malformed("publish too short".into()));
    }
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    match body.get(2 + topic_len..4 + topic_len) {
        Some(id) => Ok(Some(PublishMeta {
            qos,
            pkid: u16::from_be_bytes([id[0], id[1]]),
        })),
        None => Err(WireError::Malformed("publish without packet id".into())),
    }
}

/// Packet types a client sends: CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE,
/// UNSUBSCRIBE, PINGREQ, DISCONNECT.
const CLIENT_PACKET_TYPES: [u8; 10] = [1, 3, 4, 5, 6, 7, 8, 10, 12, 14];

/// The error for input that made the codec panic (caught; the property tests check that none
/// does, since every panic also goes through the panic hook).
pub const CODEC_PANICKED: &str = "packet the codec cannot decode";

/// Decodes and encodes packets for one session.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    version: Version,
    max_packet_size: usize,
    /// The largest packet the client accepts (MQTT 5 Maximum Packet Size; otherwise the largest
    /// packet MQTT can express).
    client_max_packet: usize,
}

impl Codec {
    /// A codec for `version` that refuses packets larger than `max_packet_size` bytes.
    pub fn new(version: Version, max_packet_size: usize) -> Codec {
        Codec {
            version,
            max_packet_size,
            client_max_packet: frame::MAX_PACKET_LEN,
        }
    }

    /// Packets for this client must not be larger than `bytes` (its MQTT 5 Maximum Packet
    /// Size, which counts the whole packet, fixed header included). A limit above what MQTT can
    /// express changes nothing.
    pub fn limit_output(&mut self, bytes: u32) {
        self.client_max_packet = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(frame::MAX_PACKET_LEN);
    }

    /// The largest packet the client accepts.
    pub fn client_max_packet(&self) -> usize {
        self.client_max_packet
    }

    /// Whole encoded size of a PUBLISH of `payload_len` bytes on `topic` at `qos` (as
    /// [`Codec::write_publish`] writes it), so that its size is known before it is written.
    /// One whose remaining length MQTT cannot express comes out larger than
    /// [`frame::MAX_PACKET_LEN`], so that no client accepts it. (Sessions use
    /// [`Codec::publish_size_with`]; this is its form without properties.)
    #[cfg(test)]
    pub fn publish_size(&self, topic: &str, payload_len: usize, qos: u8) -> usize {
        self.publish_size_with(topic, payload_len, qos, &[])
    }

    /// Whole encoded size of a PUBLISH of `payload_len` bytes on `topic` at `qos` that carries
    /// the encoded MQTT 5 `properties`, as [`Codec::write_publish_with`] writes it. One whose
    /// remaining length MQTT cannot express comes out larger than [`frame::MAX_PACKET_LEN`], so
    /// that no client accepts it.
    pub fn publish_size_with(
        &self,
        topic: &str,
        payload_len: usize,
        qos: u8,
        properties: &[u8],
    ) -> usize {
        let remaining = self.publish_remaining(topic, payload_len, qos, properties.len());
        let length_bytes = varint::encoded_len(remaining).unwrap_or(varint::MAX_LEN);
        1 + length_bytes + remaining
    }

    /// Remaining length of a PUBLISH; `props_len` counts for MQTT 5 only (3.1.1 has no
    /// properties), with its own length field.
    fn publish_remaining(
        &self,
        topic: &str,
        payload_len: usize,
        qos: u8,
        props_len: usize,
    ) -> usize {
        let props = match self.version {
            Version::V4 => 0,
            Version::V5 => varint::encoded_len(props_len).unwrap_or(varint::MAX_LEN) + props_len,
        };
        let id_len = if qos > 0 { 2 } else { 0 };
        2 + topic.len() + id_len + props + payload_len
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Takes one complete packet off the front of `buf`; `Ok(None)` when more bytes are needed.
    pub fn read(&self, buf: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(header) = fixed_header(buf)? {
            // The limit is what MQTT 5 calls the packet size, and CONNACK announces as Maximum
            // Packet Size: the whole packet, fixed header included (MQTT 5 section 3.2.2.3.6),
            // for both versions so that one setting means one thing.
            if header.packet_len() > self.max_packet_size {
                return Err(WireError::TooLarge(header.packet_len()));
            }
            // Only what a client may send reaches the codec: rumqttd's v5 decoder reaches
            // `unreachable!()` on CONNACK, UNSUBACK and AUTH (no enhanced authentication here),
            // and type 0 is reserved.
            if !CLIENT_PACKET_TYPES.contains(&header.packet_type()) {
                return Err(WireError::Malformed(format!(
                    "packet type {} is not one a client sends",
                    header.packet_type()
                )));
            }
            // The codec takes flag bits and reserved bits as they come: checked here, from the
            // bytes, before it decodes (see `checks`).
            checks::fixed_header_flags(header.first_byte)?;
            if let Some(body) = buf.get(header.header_len..header.packet_len()) {
                match header.packet_type() {
                    1 => checks::connect_flags(self.version, body)?,
                    8 => checks::subscribe_options(self.version, body)?,
                    _ => {}
                }
            }
        }
        let publish = publish_meta(buf)?;
        let max = self.max_packet_size;
        let version = self.version;
        let result = catch_unwind(AssertUnwindSafe(|| match version {
            Version::V4 => V4.read_mut(buf, max),
            Version::V5 => V5.read_mut(buf, max),
        }));
        match result {
            Ok(Ok(packet)) => {
                checks::decoded(&packet)?;
                Ok(Some(Incoming { packet, publish }))
            }
            Ok(Err(protocol::Error::InsufficientBytes(_))) => Ok(None),
            Ok(Err(protocol::Error::PayloadSizeLimitExceeded(n))) => Err(WireError::TooLarge(n)),
            Ok(Err(e)) => Err(WireError::Malformed(e.to_string())),
            Err(_) => Err(WireError::Malformed(CODEC_PANICKED.into())),
        }
    }

    /// Appends a control packet (not PUBLISH) to `out`. A packet larger than the client
    /// accepts is taken back out and refused with [`WireError::TooLarge`].
    pub fn write(&self, packet: Packet, out: &mut BytesMut) -> Result<(), WireError> {
        let version = self.version;
        let start = out.len();
        let result = catch_unwind(AssertUnwindSafe(|| match version {
            Version::V4 => V4.write(packet, out),
            Version::V5 => V5.write(packet, out),
        }));
        match result {
            Ok(Ok(_)) if out.len() - start > self.client_max_packet => {
                let size = out.len() - start;
                out.truncate(start);
                Err(WireError::TooLarge(size))
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(WireError::Malformed(e.to_string())),
            Err(_) => Err(WireError::Malformed(
                "packet the codec cannot encode".into(),
            )),
        }
    }

    /// Appends an MQTT 5 DISCONNECT with `reason` (nothing for 3.1.1, where servers close, nor
    /// for a client that accepts no packet of 4 bytes).
    /// Written here because rumqttd's v5 encoder gets the remaining length wrong for it.
    pub fn write_disconnect(&self, reason: DisconnectReasonCode, out: &mut BytesMut) {
        if self.version == Version::V5 && self.client_max_packet >= 4 {
            out.put_slice(&[0xe0, 0x02, disconnect_code(reason), 0x00]);
        }
    }

    /// Appends a PUBLISH to `out`: `pkid` is used only when `qos` is 1. Callers check
    /// [`Codec::publish_size`] against [`Codec::client_max_packet`] first: a PUBLISH larger than
    /// MQTT can express is never written. (Sessions use [`Codec::write_publish_with`]; this is
    /// its form without properties.)
    #[cfg(test)]
    pub fn write_publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        pkid: u16,
        retain: bool,
        out: &mut BytesMut,
    ) {
        self.write_publish_with(topic, payload, qos, pkid, retain, &[], out);
    }

    /// Appends a PUBLISH with MQTT 5 PUBLISH `properties`, already encoded (identifier and value
    /// each, without the property length, which is written here) to `out`; 3.1.1 has no
    /// properties: they are left out. `pkid` is used only when `qos` is 1. Callers check
    /// [`Codec::publish_size_with`] against [`Codec::client_max_packet`] first: a PUBLISH larger
    /// than MQTT can express is never written.
    #[allow(clippy::too_many_arguments)]
    pub fn write_publish_with(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        pkid: u16,
        retain: bool,
        properties: &[u8],
        out: &mut BytesMut,
    ) {
        let remaining = self.publish_remaining(topic, payload.len(), qos, properties.len());
        let Ok(length) = varint::encode(remaining) else {
            return;
        };
        let props_len = match self.version {
            Version::V4 => None,
            Version::V5 => match varint::encode(properties.len()) {
                Ok(len) => Some(len),
                Err(_) => return,
            },
        };
        let byte1 = 0x30 | (qos << 1) | retain as u8;
        out.reserve(remaining + 5);
        out.put_u8(byte1);
        out.put_slice(length.as_bytes());
        out.put_u16(topic.len() as u16);
        out.put_slice(topic.as_bytes());
        if qos > 0 {
            out.put_u16(pkid);
        }
        if let Some(props_len) = props_len {
            out.put_slice(props_len.as_bytes());
            out.put_slice(properties);
        }
        out.put_slice(payload);
    }
}

/// The MQTT 5 reason code byte of the reasons the server sends.
fn disconnect_code(reason: DisconnectReasonCode) -> u8 {
    use DisconnectReasonCode as R;
    match reason {
        R::NormalDisconnection => 0x00,
        R::MalformedPacket => 0x81,
        R::ProtocolError => 0x82,
        R::NotAuthorized => 0x87,
        R::ServerBusy => 0x89,
        R::ServerShuttingDown => 0x8b,
        R::KeepAliveTimeout => 0x8d,
        R::SessionTakenOver => 0x8e,
        R::TopicNameInvalid => 0x90,
        R::ReceiveMaximumExceeded => 0x93,
        R::TopicAliasInvalid => 0x94,
        R::PacketTooLarge => 0x95,
        R::QuotaExceeded => 0x97,
        R::AdministrativeAction => 0x98,
        R::RetainNotSupported => 0x9a,
        R::QoSNotSupported => 0x9b,
        R::SharedSubscriptionNotSupported => 0x9e,
        R::SubscriptionIdentifiersNotSupported => 0xa1,
        _ => 0x80,
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip_keeps_qos_and_id() {
        for version in [Version::V4, Version::V5] {
            let codec = Codec::new(version, 1 << 20);
            let mut buf = BytesMut::new();
            codec.write_publish("user/a/inbox", b"{\"x\":1}", 1, 77, false, &mut buf);
            let incoming = codec.read(&mut buf).unwrap().unwrap();
            assert_eq!(incoming.publish, Some(PublishMeta { qos: 1, pkid: 77 }));
            match incoming.packet {
                Packet::Publish(p, _) => {
                    assert_eq!(&p.topic[..], b"user/a/inbox");
                    assert_eq!(&p.payload[..], b"{\"x\":1}");
                }
                other => panic!("{other:?}"),
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn publish_size_is_what_is_written() {
        for version in [Version::V4, Version::V5] {
            let codec = Codec::new(version, 1 << 20);
            for len in [0, 1, 100, 127, 128, 16_000, 16_383, 16_384, 70_000] {
                for qos in [0, 1] {
                    let payload = vec![b'x'; len];
                    let mut buf = BytesMut::new();
                    codec.write_publish("user/a/rpc", &payload, qos, 9, false, &mut buf);
                    assert_eq!(codec.publish_size("user/a/rpc", len, qos), buf.len());
                }
            }
        }
    }

    #[test]
    fn control_packets_larger_than_the_client_takes_are_refused() {
        use rumqttd::protocol::{SubAck, SubscribeReasonCode};
        let mut codec = Codec::new(Version::V5, 1 << 20);
        codec.limit_output(16);
        let suback = |n: usize| {
            Packet::SubAck(
                SubAck {
                    pkid: 1,
                    return_codes: vec![SubscribeReasonCode::QuotaExceeded; n],
                },
                None,
            )
        };
        let mut out = BytesMut::from(&b"kept"[..]);
        assert!(codec.write(suback(2), &mut out).is_ok());
        let written = out.len();
        assert!(matches!(
            codec.write(suback(20), &mut out),
            Err(WireError::TooLarge(_))
        ));
        assert_eq!(out.len(), written, "the refused packet is taken back out");
    }

    #[test]
    fn a_publish_mqtt_cannot_express_is_larger_than_any_client_takes() {
        for version in [Version::V4, Version::V5] {
            let mut codec = Codec::new(version, 1 << 20);
            let most = varint::MAX - codec.publish_remaining("t", 0, 1, 0);
            assert_eq!(codec.publish_size("t", most, 1), frame::MAX_PACKET_LEN);
            assert!(codec.publish_size("t", most, 1) <= codec.client_max_packet());
            assert!(codec.publish_size("t", most + 1, 1) > codec.client_max_packet());
            codec.limit_output(u32::MAX);
            assert!(codec.publish_size("t", most + 1, 1) > codec.client_max_packet());
        }
    }

    #[test]
    fn incomplete_frames_wait_for_more() {
        let codec = Codec::new(Version::V4, 1 << 20);
        let mut full = BytesMut::new();
        codec.write_publish("t", b"payload", 1, 1, false, &mut full);
        let mut part = BytesMut::from(&full[..full.len() - 1]);
        assert!(codec.read(&mut part).unwrap().is_none());
    }

    #[test]
    fn the_packet_size_limit_counts_the_whole_packet() {
        for version in [Version::V4, Version::V5] {
            let codec = Codec::new(version, 1024);
            // A PUBLISH of exactly 1024 bytes passes; one byte more does not, although its
            // remaining length (1022) is below the limit. (Both take 2 length bytes, an empty
            // one 1.)
            let payload_len = 1024 - codec.publish_size("t", 0, 1) - 1;
            for (extra, allowed) in [(0, true), (1, false)] {
                let payload = vec![b'x'; payload_len + extra];
                let mut buf = BytesMut::new();
                codec.write_publish("t", &payload, 1, 1, false, &mut buf);
                assert_eq!(buf.len(), 1024 + extra);
                match codec.read(&mut buf) {
                    Ok(Some(_)) => assert!(allowed, "{version:?}: 1025 bytes accepted"),
                    Err(WireError::TooLarge(n)) => {
                        assert!(!allowed, "{version:?}: 1024 bytes refused");
                        assert_eq!(n, 1025);
                    }
                    other => panic!("{version:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn publish_properties_are_written_for_mqtt_5_only() {
        // Correlation Data (0x09) "ab".
        let props = [0x09, 0x00, 0x02, b'a', b'b'];
        for version in [Version::V4, Version::V5] {
            let codec = Codec::new(version, 1 << 20);
            let mut buf = BytesMut::new();
            codec.write_publish_with("user/a/rpc", b"{}", 1, 5, false, &props, &mut buf);
            assert_eq!(
                codec.publish_size_with("user/a/rpc", 2, 1, &props),
                buf.len()
            );
            match codec.read(&mut buf).unwrap().unwrap().packet {
                Packet::Publish(p, properties) => {
                    assert_eq!(&p.payload[..], b"{}");
                    let data = properties.and_then(|p| p.correlation_data);
                    match version {
                        Version::V4 => assert_eq!(data, None),
                        Version::V5 => assert_eq!(data.as_deref(), Some(&b"ab"[..])),
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn oversized_is_refused_from_the_header() {
        let codec = Codec::new(Version::V4, 1024);
        let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0x7f][..]);
        assert!(matches!(codec.read(&mut buf), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let codec = Codec::new(Version::V5, 1 << 20);
        for bytes in [
            &[0xf0u8, 0x00][..],
            &[0x82, 0x01, 0x00],
            &[0x30, 0x02, 0xff, 0xff],
            &[0x10, 0x01, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut buf = BytesMut::from(bytes);
            let _ = codec.read(&mut buf);
        }
    }

    #[test]
    fn disconnect_decodes_with_its_reason() {
        let codec = Codec::new(Version::V5, 1 << 20);
        let mut buf = BytesMut::new();
        codec.write_disconnect(DisconnectReasonCode::SessionTakenOver, &mut buf);
        assert_eq!(&buf[..], &[0xe0, 0x02, 0x8e, 0x00]);
        match codec.read(&mut buf).unwrap().unwrap().packet {
            Packet::Disconnect(d, _) => {
                assert_eq!(d.reason_code, DisconnectReasonCode::SessionTakenOver)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn detects_versions() {
        let v4 = [
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0,
        ];
        assert_eq!(detect_version(&v4).unwrap(), Some(Version::V4));
        let mut v5 = v4;
        v5[8] = 5;
        assert_eq!(detect_version(&v5).unwrap(), Some(Version::V5));
        let mut v3 = v4;
        v3[8] = 3;
        assert!(matches!(
            detect_version(&v3),
            Err(WireError::UnsupportedLevel(3))
        ));
        assert!(matches!(
            detect_version(&[0x30, 0x00]),
            Err(WireError::NotConnect)
        ));
    }
}
