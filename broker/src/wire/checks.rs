//! What makes a client's packet malformed (or a protocol error) that rumqttd's codec decodes
//! without looking: the flag bits of the fixed header, the reserved bit of CONNECT's flags, a
//! 3.1.1 password without a user name, the reserved bits of SUBSCRIBE's options, U+0000 in a
//! string, an UNSUBSCRIBE without a filter. Each breaks a MUST of the specifications (3.1.1
//! section 4.8, 5.0 section 4.13: close the connection); accepting such a packet as if it were
//! right would also let a client rely on bits that a later version gives another meaning.
//!
//! The checks read what is already in memory: one byte per packet, a walk over a SUBSCRIBE's
//! options, a scan of the few short strings that name topics and clients.

use rumqttd::protocol::Packet;

use super::{Version, WireError};

/// The flag bits (low nibble of the first byte) a packet type must carry: 0010 for PUBREL,
/// SUBSCRIBE and UNSUBSCRIBE, 0000 for the rest (3.1.1 section 2.2.2, 5.0 section 2.1.3).
/// PUBLISH's are its DUP, QoS and RETAIN, which the codec reads.
const fn required_flags(packet_type: u8) -> Option<u8> {
    match packet_type {
        3 => None,
        6 | 8 | 10 => Some(0b0010),
        _ => Some(0),
    }
}

/// Refuses a first byte whose flag bits are not the ones its packet type requires
/// (3.1.1 [MQTT-2.2.2-2]; 5.0 section 2.1.3, [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1],
/// [MQTT-3.14.1-1]).
pub fn fixed_header_flags(first_byte: u8) -> Result<(), WireError> {
    let packet_type = first_byte >> 4;
    match required_flags(packet_type) {
        Some(flags) if first_byte & 0x0f != flags => Err(WireError::Malformed(format!(
            "flag bits {:04b} on packet type {packet_type}",
            first_byte & 0x0f
        ))),
        _ => Ok(()),
    }
}

/// The Connect Flags bits: reserved, password, user name.
const RESERVED: u8 = 0x01;
const PASSWORD: u8 = 0x40;
const USER_NAME: u8 = 0x80;

/// Refuses a CONNECT (`body`: after the fixed header) whose reserved flag is set
/// ([MQTT-3.1.2-3], both versions) or, in 3.1.1, that has a password without a user name
/// ([MQTT-3.1.2-22]; 5.0 allows it). A body too short to hold the flags is left to the codec.
pub fn connect_flags(version: Version, body: &[u8]) -> Result<(), WireError> {
    let Some(name_len) = body.get(..2) else {
        return Ok(());
    };
    let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
    // The name, then the protocol level, then the flags.
    let Some(&flags) = body.get(2 + name_len + 1) else {
        return Ok(());
    };
    if flags & RESERVED != 0 {
        return Err(WireError::Malformed("reserved connect flag set".into()));
    }
    if version == Version::V4 && flags & PASSWORD != 0 && flags & USER_NAME == 0 {
        return Err(WireError::Malformed("password without a user name".into()));
    }
    Ok(())
}

/// Refuses a SUBSCRIBE (`body`: after the fixed header) with a subscription option the
/// specification does not allow. 3.1.1: the upper six bits of the requested QoS byte are
/// reserved and QoS 3 is not one, both malformed ([MQTT-3.8.3-4]). 5.0: bits 6 and 7 are
/// reserved, malformed ([MQTT-3.8.3-5]); QoS 3 and Retain Handling 3 are protocol errors
/// (section 3.8.3.1). A body that ends inside a filter is left to the codec, which refuses it.
pub fn subscribe_options(version: Version, body: &[u8]) -> Result<(), WireError> {
    // The packet id, then (5.0) the properties.
    let mut at = 2;
    if version == Version::V5 {
        let Some(props) = body.get(at..) else {
            return Ok(());
        };
        let Ok(Some(len)) = chatd_wire::mqtt::varint::decode(props) else {
            return Ok(());
        };
        at += len.len + len.value;
    }
    while let Some(len) = body.get(at..at + 2) {
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(&options) = body.get(at) else {
            return Ok(());
        };
        at += 1;
        option_byte(version, options)?;
    }
    Ok(())
}

/// One filter's options byte; see [`subscribe_options`].
fn option_byte(version: Version, options: u8) -> Result<(), WireError> {
    let qos = options & 0b11;
    match version {
        Version::V4 if options & 0b1111_1100 != 0 => Err(WireError::Malformed(format!(
            "reserved bits of the requested QoS set: {options:#04x}"
        ))),
        Version::V4 if qos == 3 => Err(WireError::Malformed("requested QoS 3".into())),
        Version::V5 if options & 0b1100_0000 != 0 => Err(WireError::Malformed(format!(
            "reserved bits of the subscription options set: {options:#04x}"
        ))),
        Version::V5 if qos == 3 => Err(WireError::ProtocolError("maximum QoS 3".into())),
        Version::V5 if (options >> 4) & 0b11 == 3 => {
            Err(WireError::ProtocolError("retain handling 3".into()))
        }
        _ => Ok(()),
    }
}

/// Refuses a decoded packet with U+0000 in a string that names a topic or a client (3.1.1
/// [MQTT-1.5.3-2]; 5.0 [MQTT-1.5.4-2]), or an UNSUBSCRIBE without a filter ([MQTT-3.10.3-2]:
/// a protocol violation, in 5.0 a protocol error).
pub fn decoded(packet: &Packet) -> Result<(), WireError> {
    let nul = || Err(WireError::Malformed("U+0000 in a string".into()));
    match packet {
        Packet::Publish(publish, _) if publish.topic.contains(&0) => nul(),
        Packet::Subscribe(subscribe, _) if subscribe.filters.iter().any(|f| has_nul(&f.path)) => {
            nul()
        }
        Packet::Unsubscribe(unsubscribe, _) if unsubscribe.filters.is_empty() => Err(
            WireError::ProtocolError("UNSUBSCRIBE without a topic filter".into()),
        ),
        Packet::Unsubscribe(unsubscribe, _) if unsubscribe.filters.iter().any(|f| has_nul(f)) => {
            nul()
        }
        Packet::Connect(connect, _, will, _, login) => {
            let will_topic = will.as_ref().is_some_and(|w| w.topic.contains(&0));
            let user = login.as_ref().is_some_and(|l| has_nul(&l.username));
            if has_nul(&connect.client_id) || will_topic || user {
                nul()
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn has_nul(s: &str) -> bool {
    s.as_bytes().contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_required_flag_bits_pass() {
        for packet_type in [1u8, 4, 5, 6, 7, 8, 10, 12, 14] {
            let required = required_flags(packet_type).unwrap_or(0);
            for flags in 0..16u8 {
                let ok = fixed_header_flags((packet_type << 4) | flags).is_ok();
                assert_eq!(
                    ok,
                    flags == required,
                    "type {packet_type} flags {flags:04b}"
                );
            }
        }
        // PUBLISH's flags are its own.
        assert!(fixed_header_flags(0x3d).is_ok());
    }

    /// A CONNECT body up to its flags.
    fn connect_body(flags: u8) -> Vec<u8> {
        vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60]
    }

    #[test]
    fn connect_flags_are_checked() {
        for version in [Version::V4, Version::V5] {
            assert!(connect_flags(version, &connect_body(0xc2)).is_ok());
            assert!(connect_flags(version, &connect_body(0xc3)).is_err());
            // Too short: the codec decides.
            assert!(connect_flags(version, &[0, 4, b'M']).is_ok());
        }
        assert!(connect_flags(Version::V4, &connect_body(0x42)).is_err());
        assert!(connect_flags(Version::V5, &connect_body(0x42)).is_ok());
    }

    fn subscribe_body(version: Version, options: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 1];
        if version == Version::V5 {
            body.extend([3, 0x0b, 0x01, 0x00]);
        }
        for &o in options {
            body.extend([0, 1, b'a', o]);
        }
        body
    }

    #[test]
    fn subscription_options_are_checked() {
        let v4 = |o: &[u8]| subscribe_options(Version::V4, &subscribe_body(Version::V4, o));
        assert!(v4(&[0, 1, 2]).is_ok());
        assert!(matches!(v4(&[1, 0x04]), Err(WireError::Malformed(_))));
        assert!(matches!(v4(&[0x80]), Err(WireError::Malformed(_))));
        assert!(matches!(v4(&[3]), Err(WireError::Malformed(_))));
        let v5 = |o: &[u8]| subscribe_options(Version::V5, &subscribe_body(Version::V5, o));
        assert!(v5(&[0, 0x2e, 0x1d]).is_ok());
        assert!(matches!(v5(&[0x41]), Err(WireError::Malformed(_))));
        assert!(matches!(v5(&[1, 0x81]), Err(WireError::Malformed(_))));
        assert!(matches!(v5(&[3]), Err(WireError::ProtocolError(_))));
        assert!(matches!(v5(&[0x31]), Err(WireError::ProtocolError(_))));
        // A filter cut short: the codec refuses it.
        assert!(subscribe_options(Version::V4, &[0, 1, 0, 9, b'a']).is_ok());
    }

    #[test]
    fn u0000_and_an_empty_unsubscribe_are_refused_once_decoded() {
        use super::super::Codec;
        use bytes::BytesMut;
        let read =
            |version, bytes: &[u8]| Codec::new(version, 1024).read(&mut BytesMut::from(bytes));
        for version in [Version::V4, Version::V5] {
            let v5 = version == Version::V5;
            let props: &[u8] = if v5 { &[0] } else { &[] };
            let packet = |first: u8, parts: &[&[u8]]| {
                let body = parts.concat();
                let mut out = vec![first, body.len() as u8];
                out.extend(body);
                out
            };
            let empty = packet(0xa2, &[&[0, 1], props]);
            assert!(matches!(
                read(version, &empty),
                Err(WireError::ProtocolError(_))
            ));
            let unsubscribe = packet(0xa2, &[&[0, 1], props, &[0, 3, b'a', 0, b'b']]);
            assert!(matches!(
                read(version, &unsubscribe),
                Err(WireError::Malformed(_))
            ));
            let publish = packet(0x30, &[&[0, 3, b'a', 0, b'b'], props, b"x"]);
            assert!(matches!(
                read(version, &publish),
                Err(WireError::Malformed(_))
            ));
            let fine = packet(0x30, &[&[0, 3, b'a', b'/', b'b'], props, b"x"]);
            assert!(matches!(read(version, &fine), Ok(Some(_))));
        }
    }
}
