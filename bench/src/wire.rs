//! The few MQTT 3.1.1 packets `chatbench connect` speaks: CONNECT and SUBSCRIBE out (written by
//! rumqttc's packet encoders), CONNACK and SUBACK in (decoded here, without a client state
//! machine). Everything else the server sends is skipped whole.

use anyhow::{anyhow, bail, Result};
use bytes::BytesMut;
use chatd_wire::mqtt::frame::read_header;
use rumqttc::mqttbytes::{v4, QoS};

/// Fixed-header type of CONNACK.
const CONNACK: u8 = 0x20;
/// Fixed-header type of SUBACK.
const SUBACK: u8 = 0x90;

/// What goes into one CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectPacket<'a> {
    /// MQTT client id.
    pub client_id: &'a str,
    /// User name and password; `None` connects anonymously.
    pub login: Option<(&'a str, &'a str)>,
    /// Keep-alive in seconds (0: the server never times the client out).
    pub keep_alive: u16,
}

/// Encodes CONNECT (protocol level 4, clean session) with rumqttc's packet writer.
pub fn encode_connect(p: &ConnectPacket<'_>) -> Result<Vec<u8>> {
    let mut connect = v4::Connect::new(p.client_id);
    connect.keep_alive = p.keep_alive;
    connect.clean_session = true;
    connect.login = p
        .login
        .map(|(user, password)| v4::Login::new(user, password));
    let mut out = BytesMut::with_capacity(64);
    connect
        .write(&mut out)
        .map_err(|e| anyhow!("CONNECT not encodable: {e:?}"))?;
    Ok(out.to_vec())
}

/// Encodes SUBSCRIBE of `filters`, each at QoS 0 (so the server expects no PUBACK from us).
pub fn encode_subscribe(packet_id: u16, filters: &[String]) -> Result<Vec<u8>> {
    if filters.is_empty() {
        bail!("SUBSCRIBE needs at least one filter");
    }
    let mut subscribe = v4::Subscribe::new_many(
        filters
            .iter()
            .map(|f| v4::SubscribeFilter::new(f.clone(), QoS::AtMostOnce)),
    );
    subscribe.pkid = packet_id;
    let mut out = BytesMut::with_capacity(64);
    subscribe
        .write(&mut out)
        .map_err(|e| anyhow!("SUBSCRIBE not encodable: {e:?}"))?;
    Ok(out.to_vec())
}

/// A complete packet at the start of a buffer: its first byte and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Type and flags (the fixed header's first byte).
    pub kind: u8,
    /// The bytes after the fixed header.
    pub body: &'a [u8],
    /// Length of the whole packet in the buffer.
    pub len: usize,
}

/// The first complete packet of `buf`, or `None` when more bytes are needed.
pub fn frame(buf: &[u8]) -> Result<Option<Frame<'_>>> {
    let Some(header) = read_header(buf).map_err(|_| anyhow!("malformed remaining length"))? else {
        return Ok(None);
    };
    let len = header.packet_len();
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind: header.first_byte,
        body: &buf[header.header_len..len],
        len,
    }))
}

/// What a server answered to CONNECT or SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// CONNACK with this return code (0 = accepted).
    ConnAck(u8),
    /// SUBACK for this packet id, with its return codes (0x80 = refused).
    SubAck(u16, Vec<u8>),
    /// Any other packet (a PUBLISH of retained presence, say).
    Other(u8),
}

/// Decodes a frame into the answers this tool cares about.
pub fn answer(f: &Frame<'_>) -> Result<Answer> {
    match f.kind {
        CONNACK => match f.body {
            [_, code] => Ok(Answer::ConnAck(*code)),
            _ => bail!("CONNACK of {} bytes", f.body.len()),
        },
        SUBACK => match f.body {
            [hi, lo, codes @ ..] if !codes.is_empty() => Ok(Answer::SubAck(
                u16::from_be_bytes([*hi, *lo]),
                codes.to_vec(),
            )),
            _ => bail!("SUBACK of {} bytes", f.body.len()),
        },
        other => Ok(Answer::Other(other)),
    }
}

/// Text for a 3.1.1 CONNACK return code.
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "client id rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_with_login_matches_the_spec_layout() -> Result<()> {
        let bytes = encode_connect(&ConnectPacket {
            client_id: "u1:c",
            login: Some(("u1", "pw")),
            keep_alive: 600,
        })?;
        let expected: Vec<u8> = [
            &[0x10, 24][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0x02, 0x58],
            &[0, 4, b'u', b'1', b':', b'c'],
            &[0, 2, b'u', b'1'],
            &[0, 2, b'p', b'w'],
        ]
        .concat();
        assert_eq!(bytes, expected);
        Ok(())
    }

    #[test]
    fn anonymous_connect_has_no_login_flags() -> Result<()> {
        let bytes = encode_connect(&ConnectPacket {
            client_id: "x",
            login: None,
            keep_alive: 0,
        })?;
        assert_eq!(
            bytes,
            [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'x']
        );
        Ok(())
    }

    #[test]
    fn long_packets_get_a_multi_byte_remaining_length() -> Result<()> {
        let password = "p".repeat(300);
        let bytes = encode_connect(&ConnectPacket {
            client_id: "c",
            login: Some(("u", &password)),
            keep_alive: 0,
        })?;
        let f = frame(&bytes)?.ok_or_else(|| anyhow::anyhow!("incomplete"))?;
        assert_eq!(f.len, bytes.len());
        assert_eq!(f.body.len(), 10 + 3 + 3 + 302);
        assert_eq!(&bytes[1..3], &[(318 % 128) as u8 | 0x80, (318 / 128) as u8]);
        Ok(())
    }

    #[test]
    fn subscribe_asks_for_qos_0() -> Result<()> {
        let bytes = encode_subscribe(7, &["user/u1/#".to_string()])?;
        let mut expected = vec![0x82, 14, 0, 7, 0, 9];
        expected.extend_from_slice(b"user/u1/#");
        expected.push(0);
        assert_eq!(bytes, expected);
        Ok(())
    }

    #[test]
    fn frames_are_split_and_answers_decoded() -> Result<()> {
        let buf = [0x20, 2, 0, 0, 0x90, 4, 0, 1, 0, 0x80, 0x30];
        let first = frame(&buf)?.ok_or_else(|| anyhow::anyhow!("incomplete"))?;
        assert_eq!(answer(&first)?, Answer::ConnAck(0));
        let rest = &buf[first.len..];
        let second = frame(rest)?.ok_or_else(|| anyhow::anyhow!("incomplete"))?;
        assert_eq!(answer(&second)?, Answer::SubAck(1, vec![0, 0x80]));
        assert_eq!(frame(&rest[second.len..])?, None);
        assert_eq!(frame(&[0x20])?, None);
        Ok(())
    }

    #[test]
    fn refused_connack_keeps_its_code() -> Result<()> {
        let f = frame(&[0x20, 2, 0, 5])?.ok_or_else(|| anyhow::anyhow!("incomplete"))?;
        assert_eq!(answer(&f)?, Answer::ConnAck(5));
        assert_eq!(connack_reason(5), "not authorized");
        Ok(())
    }
}
