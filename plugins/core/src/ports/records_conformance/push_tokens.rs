//! The push tokens port's checks.

use super::Ports;
use crate::ports::log::Intent;
use crate::ports::push::{DeviceToken, Platform, TokenChange, TokenRecord};

/// A token record registered at `ts` from `device`.
pub fn record(device: Option<&str>, ts: u64) -> TokenRecord {
    TokenRecord {
        platform: Platform::Fcm,
        device: device.map(str::to_string),
        ts,
    }
}

/// `token` becomes `user`'s.
pub fn put(user: &str, token: &str, ts: u64) -> TokenChange {
    TokenChange::Put {
        user: user.into(),
        token: token.into(),
        record: record(Some("phone"), ts),
    }
}

/// A token is read back with its owner; registered by someone else, it becomes theirs (the
/// first user's entry stays until dropped); dropping the entry and the owner forgets it.
pub fn tokens_round_trip_and_move_to_whoever_registers_them(ports: &Ports) {
    let p = &ports.tokens;
    assert_eq!(p.owner("t1").unwrap(), None);
    assert!(!p.has_token("bob", "t1").unwrap());
    p.write(vec![put("bob", "t1", 5)]).unwrap();
    p.flush().unwrap();
    assert_eq!(p.owner("t1").unwrap().as_deref(), Some("bob"));
    assert!(p.has_token("bob", "t1").unwrap());
    assert_eq!(
        p.token("bob", "t1").unwrap(),
        Some(record(Some("phone"), 5))
    );
    assert_eq!(p.token("carol", "t1").unwrap(), None);
    assert_eq!(
        p.tokens("bob", 10).unwrap(),
        vec![DeviceToken {
            token: "t1".into(),
            record: record(Some("phone"), 5),
        }]
    );
    // Registered again: the newer record replaces the older.
    p.write(vec![put("bob", "t1", 6)]).unwrap();
    assert_eq!(
        p.token("bob", "t1").unwrap(),
        Some(record(Some("phone"), 6))
    );

    p.write(vec![put("carol", "t1", 7)]).unwrap();
    assert_eq!(p.owner("t1").unwrap().as_deref(), Some("carol"));
    assert!(p.has_token("bob", "t1").unwrap());
    assert!(p.has_token("carol", "t1").unwrap());

    // Dropping bob's entry leaves the owner alone.
    p.write(vec![TokenChange::Drop {
        user: "bob".into(),
        token: "t1".into(),
    }])
    .unwrap();
    assert!(!p.has_token("bob", "t1").unwrap());
    assert!(p.tokens("bob", 10).unwrap().is_empty());
    assert_eq!(p.owner("t1").unwrap().as_deref(), Some("carol"));
    p.write(vec![
        TokenChange::Drop {
            user: "carol".into(),
            token: "t1".into(),
        },
        TokenChange::DropOwner { token: "t1".into() },
    ])
    .unwrap();
    p.flush().unwrap();
    assert_eq!(p.owner("t1").unwrap(), None);
    assert!(!p.has_token("carol", "t1").unwrap());
}

/// A user holds a token while their entry is there and they have an account record, live or
/// removed.
pub fn holding_a_token_needs_an_account_record(ports: &Ports) {
    let p = &ports.tokens;
    p.write(vec![put("bob", "t1", 5)]).unwrap();
    assert!(!p.holds("bob", "t1").unwrap());
    // The tombstone of a finished removal counts: the log writes it.
    ports.commit(vec![Intent::Account {
        user: "bob".into(),
        record: crate::ports::accounts::AccountRecord {
            removed: Some(9),
            ..Default::default()
        },
    }]);
    assert!(p.holds("bob", "t1").unwrap());
    assert!(!p.holds("bob", "t2").unwrap());
    assert!(!p.holds("carol", "t1").unwrap());
}

/// A user's tokens come in token order, at most `limit`, and nobody else's.
pub fn tokens_are_listed_in_token_order_up_to_the_limit(ports: &Ports) {
    let p = &ports.tokens;
    p.write(vec![
        put("bob", "tb", 1),
        put("bob", "ta", 2),
        put("bobby", "tc", 3),
    ])
    .unwrap();
    let tokens = |user: &str, limit: usize| -> Vec<String> {
        p.tokens(user, limit)
            .unwrap()
            .into_iter()
            .map(|t| t.token)
            .collect()
    };
    assert_eq!(tokens("bob", 10), vec!["ta", "tb"]);
    assert_eq!(tokens("bob", 1), vec!["ta"]);
    assert_eq!(tokens("bobby", 10), vec!["tc"]);
    assert!(tokens("carol", 10).is_empty());
}
