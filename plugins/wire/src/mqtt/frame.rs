//! The fixed header that opens every MQTT packet: one byte of type and flags, then the
//! remaining length (a variable byte integer) of the bytes that follow.

use super::varint::{self, VarIntError};

/// The largest packet MQTT can express: the first byte, four length bytes, the largest body.
pub const MAX_PACKET_LEN: usize = 1 + varint::MAX_LEN + varint::MAX;

/// A fixed header read off the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub first_byte: u8,
    /// Bytes of the packet after the fixed header.
    pub remaining_length: usize,
    /// Bytes of the fixed header itself (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// The packet type: the high nibble of the first byte.
    pub fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }

    /// Bytes of the whole packet, header included.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

/// Reads the fixed header at the front of `buf`: `Ok(None)` until the header is complete (the
/// body need not have arrived), an error for a remaining length whose fourth byte announces a
/// fifth.
pub fn read_header(buf: &[u8]) -> Result<Option<FixedHeader>, VarIntError> {
    let Some((&first_byte, rest)) = buf.split_first() else {
        return Ok(None);
    };
    Ok(varint::decode(rest)?.map(|length| FixedHeader {
        first_byte,
        remaining_length: length.value,
        header_len: 1 + length.len,
    }))
}

/// A whole packet: `first_byte`, the remaining length of `body`, then `body`.
pub fn encode_frame(first_byte: u8, body: &[u8]) -> Result<Vec<u8>, VarIntError> {
    let length = varint::encode(body.len())?;
    let mut out = Vec::with_capacity(1 + length.as_bytes().len() + body.len());
    out.push(first_byte);
    out.extend_from_slice(length.as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_header_needs_its_first_byte_and_whole_length() {
        assert_eq!(read_header(&[]), Ok(None));
        assert_eq!(read_header(&[0x30]), Ok(None));
        assert_eq!(read_header(&[0x30, 0x80]), Ok(None));
        assert_eq!(
            read_header(&[0x30, 0x80, 0x01]),
            Ok(Some(FixedHeader {
                first_byte: 0x30,
                remaining_length: 128,
                header_len: 3,
            }))
        );
    }

    #[test]
    fn the_body_need_not_have_arrived() {
        let header = read_header(&[0x82, 0x0a, 0x00]).unwrap().unwrap();
        assert_eq!(header.packet_type(), 8);
        assert_eq!(header.packet_len(), 12);
    }

    #[test]
    fn a_five_byte_length_is_refused() {
        assert_eq!(
            read_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(VarIntError::TooLong)
        );
        assert_eq!(
            read_header(&[0x30, 0xff, 0xff, 0xff, 0xff]),
            Err(VarIntError::TooLong)
        );
    }

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(encode_frame(0xc0, &[]).unwrap(), [0xc0, 0x00]);
        assert_eq!(encode_frame(0x40, &[0, 7]).unwrap(), [0x40, 0x02, 0, 7]);
        let big = encode_frame(0x30, &[b'x'; 200]).unwrap();
        assert_eq!(&big[..3], &[0x30, 0xc8, 0x01]);
        assert_eq!(big.len(), 203);
    }

    #[test]
    fn the_largest_packet_is_the_largest_header_and_body() {
        assert_eq!(MAX_PACKET_LEN, 268_435_460);
    }

    proptest! {
        #![proptest_config(crate::mqtt::proptest_config(256))]

        #[test]
        fn frames_read_back(
            first in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..20_000),
            tail in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = encode_frame(first, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let whole = bytes.len();
            bytes.extend_from_slice(&tail);
            let header = read_header(&bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .ok_or_else(|| TestCaseError::fail("incomplete"))?;
            prop_assert_eq!(header.first_byte, first);
            prop_assert_eq!(header.remaining_length, body.len());
            prop_assert_eq!(header.packet_len(), whole);
            prop_assert_eq!(&bytes[header.header_len..header.packet_len()], &body[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(Some(header)) = read_header(&bytes) {
                prop_assert!((2..=5).contains(&header.header_len));
                prop_assert!(header.header_len <= bytes.len());
                prop_assert!(header.packet_len() <= MAX_PACKET_LEN);
            }
        }
    }
}
