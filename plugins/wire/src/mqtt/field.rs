//! Length-prefixed fields (MQTT strings and binary data): a two-byte big-endian length, then
//! that many bytes.

/// The longest field a two-byte length prefix carries.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// A field longer than [`MAX_FIELD_LEN`] bytes, which no length prefix can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field of {0} bytes is longer than {MAX_FIELD_LEN}")]
pub struct FieldTooLong(pub usize);

/// Appends `data` to `out` with its two-byte length in front.
pub fn encode_field(data: &[u8], out: &mut Vec<u8>) -> Result<(), FieldTooLong> {
    let len = u16::try_from(data.len()).map_err(|_| FieldTooLong(data.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_comes_first_big_endian() {
        let mut out = vec![0xaa];
        encode_field(b"MQTT", &mut out).unwrap();
        assert_eq!(out, [0xaa, 0x00, 0x04, b'M', b'Q', b'T', b'T']);
        let mut out = Vec::new();
        encode_field(&[], &mut out).unwrap();
        assert_eq!(out, [0, 0]);
    }

    #[test]
    fn the_longest_field_fits_and_one_more_byte_does_not() {
        let mut out = Vec::new();
        encode_field(&vec![b'x'; MAX_FIELD_LEN], &mut out).unwrap();
        assert_eq!(&out[..2], &[0xff, 0xff]);
        assert_eq!(out.len(), 2 + MAX_FIELD_LEN);
        let mut out = Vec::new();
        assert_eq!(
            encode_field(&vec![b'x'; MAX_FIELD_LEN + 1], &mut out),
            Err(FieldTooLong(MAX_FIELD_LEN + 1))
        );
        assert!(out.is_empty(), "nothing is written for a refused field");
    }
}
