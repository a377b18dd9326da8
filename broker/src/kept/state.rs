//! What a kept MQTT session holds between connections, and its stored form: the filters it
//! subscribed to and the QoS 1 PUBLISHes written to it and not yet acknowledged (resent first,
//! with DUP and their packet ids, when the session is resumed).
//!
//! The form is a compact binary one, written by this module only: version byte 1; a u32 count
//! of filters, each a u16-length filter and its QoS byte; a u32 count of messages in flight,
//! each its packet id (u16), a u16-length topic, a u32-length payload and, after a flag byte,
//! a u16-length queue id. All integers big-endian. A record that does not decode is treated as
//! no session at all (the client then hears "session present 0" and subscribes again).

use bytes::{Buf, BufMut, Bytes};

const VERSION: u8 = 1;

/// One QoS 1 PUBLISH written to the client and not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unacked {
    /// Its packet id.
    pub pkid: u16,
    /// The topic it was written on.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// The queue entry it carries, if it came from the user's queue.
    pub queue_id: Option<String>,
}

/// The state of a kept session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptState {
    /// Filters with their granted QoS, `user/{me}/…` and `presence/{user}` alike.
    pub filters: Vec<(String, u8)>,
    /// QoS 1 PUBLISHes in flight, in the order they were written.
    pub unacked: Vec<Unacked>,
}

/// Why stored bytes are not a session state.
#[derive(Debug, thiserror::Error)]
#[error("not a session state: {0}")]
pub struct BadState(&'static str);

impl KeptState {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let size = 9
            + self.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
            + self
                .unacked
                .iter()
                .map(|u| {
                    11 + u.topic.len()
                        + u.payload.len()
                        + u.queue_id.as_ref().map_or(0, String::len)
                })
                .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.put_u8(VERSION);
        out.put_u32(self.filters.len() as u32);
        for (filter, qos) in &self.filters {
            put_str16(&mut out, filter);
            out.put_u8(*qos);
        }
        out.put_u32(self.unacked.len() as u32);
        for u in &self.unacked {
            out.put_u16(u.pkid);
            put_str16(&mut out, &u.topic);
            out.put_u32(u.payload.len() as u32);
            out.put_slice(&u.payload);
            match &u.queue_id {
                Some(id) => {
                    out.put_u8(1);
                    put_str16(&mut out, id);
                }
                None => out.put_u8(0),
            }
        }
        out
    }

    /// Reads the stored form back; never panics on bad bytes.
    pub fn decode(bytes: &[u8]) -> Result<KeptState, BadState> {
        let mut buf = bytes;
        if take_u8(&mut buf)? != VERSION {
            return Err(BadState("unknown version"));
        }
        let count = take_u32(&mut buf)? as usize;
        // Each filter takes at least 3 bytes: a count larger than the rest is a lie.
        if count > buf.len() / 3 {
            return Err(BadState("filter count"));
        }
        let mut filters = Vec::with_capacity(count);
        for _ in 0..count {
            let filter = take_str16(&mut buf)?;
            filters.push((filter, take_u8(&mut buf)?.min(1)));
        }
        let count = take_u32(&mut buf)? as usize;
        if count > buf.len() / 9 {
            return Err(BadState("message count"));
        }
        let mut unacked = Vec::with_capacity(count);
        for _ in 0..count {
            let pkid = take_u16(&mut buf)?;
            let topic = take_str16(&mut buf)?;
            let len = take_u32(&mut buf)? as usize;
            if buf.len() < len {
                return Err(BadState("payload"));
            }
            let payload = Bytes::copy_from_slice(&buf[..len]);
            buf.advance(len);
            let queue_id = match take_u8(&mut buf)? {
                0 => None,
                _ => Some(take_str16(&mut buf)?),
            };
            if pkid == 0 {
                return Err(BadState("packet id 0"));
            }
            unacked.push(Unacked {
                pkid,
                topic,
                payload,
                queue_id,
            });
        }
        if !buf.is_empty() {
            return Err(BadState("trailing bytes"));
        }
        Ok(KeptState { filters, unacked })
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Topics, filters and queue ids are far below 64 KiB (MQTT's own limit for strings).
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

fn take_u8(buf: &mut &[u8]) -> Result<u8, BadState> {
    if buf.is_empty() {
        return Err(BadState("truncated"));
    }
    Ok(buf.get_u8())
}

fn take_u16(buf: &mut &[u8]) -> Result<u16, BadState> {
    if buf.len() < 2 {
        return Err(BadState("truncated"));
    }
    Ok(buf.get_u16())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, BadState> {
    if buf.len() < 4 {
        return Err(BadState("truncated"));
    }
    Ok(buf.get_u32())
}

fn take_str16(buf: &mut &[u8]) -> Result<String, BadState> {
    let len = take_u16(buf)? as usize;
    if buf.len() < len {
        return Err(BadState("truncated string"));
    }
    let s = std::str::from_utf8(&buf[..len]).map_err(|_| BadState("not UTF-8"))?;
    let s = s.to_string();
    buf.advance(len);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeptState {
        KeptState {
            filters: vec![("user/bob/#".into(), 1), ("presence/alice".into(), 0)],
            unacked: vec![
                Unacked {
                    pkid: 7,
                    topic: "user/bob/inbox".into(),
                    payload: Bytes::from_static(b"{\"id\":\"1\"}"),
                    queue_id: Some("01J0000000000000000000000A".into()),
                },
                Unacked {
                    pkid: 65535,
                    topic: "user/bob/ack".into(),
                    payload: Bytes::from_static(&[0, 255]),
                    queue_id: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let state = sample();
        assert_eq!(KeptState::decode(&state.encode()).unwrap(), state);
        let empty = KeptState::default();
        assert_eq!(KeptState::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(KeptState::decode(&bytes[..n]).is_err(), "{n} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KeptState::decode(&longer).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            // Anything may come back, but never a panic or a huge allocation.
            let _ = KeptState::decode(&bad);
        }
        assert!(KeptState::decode(&[1, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
