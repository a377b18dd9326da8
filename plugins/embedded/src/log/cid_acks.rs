//! Remembered acks (`k/{user}/{cid}`), stored short: every send writes one, and almost all
//! are the plain `{"cid":…,"id":…,"ts":…,"status":"sent"}` of `chatd_wire::reply::ack_ok`,
//! whose cid is in the key and whose `ts` is the millisecond part of its id. Such an ack is
//! stored as its id alone (26 bytes instead of about 90), which shrinks the cids' keyspace,
//! the one whose compactions rewrite most (its keys are in no time order). A read rebuilds the
//! ack byte for byte.
//!
//! Value: `0x00` + the id (a short ack); `0x01` + the ack (an ack that starts with either
//! marker byte); else the ack itself (every other ack, and every record written before).

use bytes::Bytes;
use chatd_wire::ids::valid_message_id;
use chatd_wire::reply::ack_ok;

/// First byte of a short ack: the id follows.
const SHORT: u8 = 0;
/// First byte of an ack stored whole that would otherwise be taken for a marker.
const ESCAPED: u8 = 1;

/// The value that remembers `ack` for `cid`.
pub(super) fn encode(cid: &str, ack: &[u8]) -> Vec<u8> {
    if let Some(id) = short_id(cid, ack) {
        let mut value = Vec::with_capacity(1 + id.len());
        value.push(SHORT);
        value.extend_from_slice(id.as_bytes());
        return value;
    }
    match ack.first() {
        Some(&SHORT | &ESCAPED) => [&[ESCAPED], ack].concat(),
        _ => ack.to_vec(),
    }
}

/// The ack remembered for `cid` by the stored `value`.
pub(super) fn decode(cid: &str, value: Vec<u8>) -> Bytes {
    match value.first() {
        Some(&SHORT) => match std::str::from_utf8(&value[1..]).ok().and_then(ms_of) {
            Some((id, ms)) => ack_ok(cid, id, ms),
            // Not written by `encode`: given back as it is rather than lost.
            None => Bytes::from(value),
        },
        Some(&ESCAPED) => Bytes::copy_from_slice(&value[1..]),
        _ => Bytes::from(value),
    }
}

/// The id of `ack` when `ack_ok` rebuilds it exactly from `cid` and that id. Matched piece by
/// piece rather than by encoding the ack again (this runs for every send); a cid that JSON
/// escapes is left whole (`ack_ok` writes every other cid between quotes as it is).
fn short_id<'a>(cid: &str, ack: &'a [u8]) -> Option<&'a str> {
    if cid.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    let rest = ack
        .strip_prefix(br#"{"cid":""#)?
        .strip_prefix(cid.as_bytes())?
        .strip_prefix(br#"","id":""#)?;
    let (id, rest) = rest.split_at_checked(25)?;
    let (id, ms) = ms_of(std::str::from_utf8(id).ok()?)?;
    let ts = rest
        .strip_prefix(br#"","ts":"#)?
        .strip_suffix(br#","status":"sent"}"#)?;
    // `ts` as `ack_ok` writes `ms`: digits only, no leading zero.
    let canonical = ts.iter().all(u8::is_ascii_digit) && ts.first() != Some(&b'0');
    let same = std::str::from_utf8(ts).ok()?.parse::<u64>().ok()? == ms;
    (canonical && same).then_some(id)
}

/// A well-formed message id and its millisecond part.
fn ms_of(id: &str) -> Option<(&str, u64)> {
    if !valid_message_id(id) {
        return None;
    }
    Some((id, id.get(..13)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1732790000123-00001-00007";

    #[test]
    fn a_plain_ack_is_stored_as_its_id_and_rebuilt_exactly() {
        for cid in ["c-1", "é ü \u{7f} ,'id': 😀", &"x".repeat(128)] {
            let ack = ack_ok(cid, ID, 1_732_790_000_123);
            let value = encode(cid, &ack);
            assert_eq!(value, [&[SHORT], ID.as_bytes()].concat(), "{cid}");
            assert_eq!(decode(cid, value), ack, "{cid}");
        }
    }

    #[test]
    fn other_acks_are_stored_whole() {
        let other_ts = ack_ok("c", ID, 5);
        let cases: [&[u8]; 5] = [
            &other_ts,
            b"ack-1",
            b"",
            b"\x00starts with the short marker",
            b"\x01starts with the escape",
        ];
        for ack in cases {
            let value = encode("c", ack);
            assert_ne!(value.first(), Some(&SHORT), "{ack:?}");
            assert_eq!(decode("c", value).as_ref(), ack, "{ack:?}");
        }
        // Nor is the ack of a cid that JSON escapes.
        for cid in ["with \"quotes\"", "back\\slash", "tab\t", "nul\u{0}"] {
            let ack = ack_ok(cid, ID, 1_732_790_000_123);
            let value = encode(cid, &ack);
            assert_eq!(value, ack.to_vec(), "{cid}");
            assert_eq!(decode(cid, value), ack, "{cid}");
        }
        // An ack that names its cid differently from the key is not shortened either.
        let ack = ack_ok("c-1", ID, 1_732_790_000_123);
        assert_eq!(decode("c-2", encode("c-2", &ack)), ack);
    }

    #[test]
    fn every_character_round_trips() {
        // Whatever JSON escapes and whatever it does not: the ack read back is the ack sent.
        for c in (0..0x3000).filter_map(char::from_u32) {
            let cid = format!("a{c}b");
            let ack = ack_ok(&cid, ID, 1_732_790_000_123);
            assert_eq!(decode(&cid, encode(&cid, &ack)), ack, "{cid:?}");
        }
    }

    #[test]
    fn records_written_before_read_as_they_are() {
        let ack = ack_ok("c", ID, 1_732_790_000_123);
        assert_eq!(decode("c", ack.to_vec()), ack);
    }
}
