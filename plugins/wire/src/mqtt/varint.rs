//! The MQTT variable byte integer: seven bits a byte, least significant group first, the high
//! bit of a byte saying that another follows. MQTT writes every packet's remaining length (and,
//! in 5.0, property lengths) this way, in at most four bytes.

/// The largest value four bytes carry: the ceiling of a remaining length.
pub const MAX: usize = 268_435_455;

/// The most bytes an encoded value takes.
pub const MAX_LEN: usize = 4;

/// Marks a byte that another byte follows.
const CONTINUES: u8 = 0x80;

/// Why a variable byte integer could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarIntError {
    /// The fourth byte announced a fifth, which MQTT never allows.
    #[error("variable byte integer longer than {MAX_LEN} bytes")]
    TooLong,
    /// The value is larger than [`MAX`], so no four bytes express it.
    #[error("{0} is larger than the largest variable byte integer ({MAX})")]
    TooLarge(usize),
}

/// An encoded value: one to four bytes, kept on the stack so that writing a header allocates
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl Encoded {
    /// The encoded bytes, to append to an output buffer.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Encoded {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A value read off the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The value.
    pub value: usize,
    /// How many bytes its encoding took (1 to 4).
    pub len: usize,
}

/// Encodes `value` in the fewest bytes; values above [`MAX`] are refused.
pub fn encode(value: usize) -> Result<Encoded, VarIntError> {
    if value > MAX {
        return Err(VarIntError::TooLarge(value));
    }
    let mut out = Encoded {
        bytes: [0; MAX_LEN],
        len: 0,
    };
    let mut rest = value;
    loop {
        // At most four rounds: `value <= MAX` has at most 28 significant bits.
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= CONTINUES;
        }
        out.bytes[usize::from(out.len)] = byte;
        out.len += 1;
        if rest == 0 {
            return Ok(out);
        }
    }
}

/// How many bytes [`encode`] writes for `value`, without writing them.
pub fn encoded_len(value: usize) -> Result<usize, VarIntError> {
    match value {
        0..=127 => Ok(1),
        128..=16_383 => Ok(2),
        16_384..=2_097_151 => Ok(3),
        2_097_152..=MAX => Ok(4),
        _ => Err(VarIntError::TooLarge(value)),
    }
}

/// Reads a value off the front of `buf`: `Ok(None)` while its last byte has not arrived, and
/// [`VarIntError::TooLong`] as soon as a fourth byte announces a fifth (without waiting for
/// it). Bytes after the value are left alone.
pub fn decode(buf: &[u8]) -> Result<Option<Decoded>, VarIntError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(MAX_LEN).enumerate() {
        value |= usize::from(byte & !CONTINUES) << (7 * i);
        if byte & CONTINUES == 0 {
            return Ok(Some(Decoded { value, len: i + 1 }));
        }
    }
    if buf.len() >= MAX_LEN {
        return Err(VarIntError::TooLong);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every boundary where the encoding gains a byte, with its neighbours.
    const EDGES: [(usize, usize); 8] = [
        (0, 1),
        (127, 1),
        (128, 2),
        (16_383, 2),
        (16_384, 3),
        (2_097_151, 3),
        (2_097_152, 4),
        (MAX, 4),
    ];

    #[test]
    fn lengths_change_at_the_spec_boundaries() {
        for (value, len) in EDGES {
            let encoded = encode(value).unwrap();
            assert_eq!(encoded.as_bytes().len(), len, "{value}");
            assert_eq!(encoded_len(value), Ok(len), "{value}");
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encode(0).unwrap().as_bytes(), [0x00]);
        assert_eq!(encode(127).unwrap().as_bytes(), [0x7f]);
        assert_eq!(encode(128).unwrap().as_bytes(), [0x80, 0x01]);
        assert_eq!(encode(321).unwrap().as_bytes(), [0xc1, 0x02]);
        assert_eq!(encode(MAX).unwrap().as_bytes(), [0xff, 0xff, 0xff, 0x7f]);
    }

    #[test]
    fn values_above_the_maximum_are_refused() {
        assert_eq!(encode(MAX + 1), Err(VarIntError::TooLarge(MAX + 1)));
        assert_eq!(encoded_len(MAX + 1), Err(VarIntError::TooLarge(MAX + 1)));
        assert_eq!(encode(usize::MAX), Err(VarIntError::TooLarge(usize::MAX)));
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0x80]), Ok(None));
        assert_eq!(decode(&[0xff, 0xff, 0xff]), Ok(None));
    }

    #[test]
    fn a_fourth_byte_announcing_a_fifth_is_refused_at_once() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(VarIntError::TooLong));
        assert_eq!(
            decode(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(VarIntError::TooLong)
        );
    }

    #[test]
    fn trailing_bytes_are_not_read() {
        assert_eq!(
            decode(&[0xc1, 0x02, 0xff, 0xff]),
            Ok(Some(Decoded { value: 321, len: 2 }))
        );
    }

    #[test]
    fn longer_than_needed_encodings_are_read_as_sent() {
        // MQTT asks senders for the shortest form; readers here, as the broker always has,
        // accept a padded one.
        assert_eq!(
            decode(&[0x80, 0x80, 0x00]),
            Ok(Some(Decoded { value: 0, len: 3 }))
        );
    }

    /// Any value up to the maximum, with the edges drawn more often than chance would.
    fn value() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..=MAX,
            prop::sample::select(EDGES.map(|(v, _)| v).to_vec()),
            prop::sample::select(EDGES.map(|(v, _)| v).to_vec())
                .prop_flat_map(|v| v.saturating_sub(2)..=(v + 2).min(MAX)),
        ]
    }

    proptest! {
        #![proptest_config(crate::mqtt::proptest_config(1024))]

        #[test]
        fn every_value_round_trips(n in value(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
            let encoded = encode(n).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Ok(encoded.as_bytes().len()), encoded_len(n));
            let mut buf = encoded.as_bytes().to_vec();
            buf.extend_from_slice(&tail);
            prop_assert_eq!(
                decode(&buf),
                Ok(Some(Decoded { value: n, len: encoded.as_bytes().len() }))
            );
            // Every proper prefix is "need more bytes", never a wrong value or an error.
            for cut in 0..encoded.as_bytes().len() {
                prop_assert_eq!(decode(&buf[..cut]), Ok(None));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            match decode(&bytes) {
                Ok(Some(d)) => {
                    prop_assert!((1..=MAX_LEN).contains(&d.len) && d.len <= bytes.len());
                    prop_assert!(d.value <= MAX);
                    prop_assert_eq!(bytes[d.len - 1] & CONTINUES, 0);
                }
                Ok(None) => prop_assert!(bytes.len() < MAX_LEN),
                Err(e) => {
                    prop_assert_eq!(e, VarIntError::TooLong);
                    prop_assert!(bytes[..MAX_LEN].iter().all(|b| b & CONTINUES != 0));
                }
            }
        }

        #[test]
        fn values_above_the_maximum_never_encode(n in (MAX + 1)..=usize::MAX) {
            prop_assert_eq!(encode(n), Err(VarIntError::TooLarge(n)));
            prop_assert_eq!(encoded_len(n), Err(VarIntError::TooLarge(n)));
        }
    }
}
