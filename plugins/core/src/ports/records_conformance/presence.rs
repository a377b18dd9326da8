//! The last-seen port's checks.

use super::Ports;

/// A last-seen time is read back until replaced, per user.
pub fn last_seen_times_round_trip_per_user(ports: &Ports) {
    let seen = &ports.last_seen;
    assert_eq!(seen.last_seen("bob").unwrap(), None);
    seen.set_last_seen("bob", 1_732_790_000_123).unwrap();
    assert_eq!(seen.last_seen("bob").unwrap(), Some(1_732_790_000_123));
    assert_eq!(seen.last_seen("carol").unwrap(), None);
    seen.set_last_seen("bob", 1_732_790_000_456).unwrap();
    seen.set_last_seen("carol", 5).unwrap();
    assert_eq!(seen.last_seen("bob").unwrap(), Some(1_732_790_000_456));
    assert_eq!(seen.last_seen("carol").unwrap(), Some(5));
}
