//! The MQTT sessions port's checks.

use crate::ports::log::Intent;
use crate::ports::sessions::StoredSession;

use super::Ports;

fn session(client_id: &str, user: &str, ended_ms: Option<u64>, state: &[u8]) -> StoredSession {
    StoredSession {
        client_id: client_id.into(),
        user: user.into(),
        expiry_secs: 3600,
        ended_ms,
        state: state.to_vec(),
    }
}

/// A session is read back as written until replaced or removed, per client id; `list` names
/// every one in client id order, without their states.
pub fn sessions_round_trip_by_client_id(ports: &Ports) {
    let kept = &ports.sessions;
    assert_eq!(kept.get("bob").unwrap(), None);
    assert!(kept.list().unwrap().is_empty());
    let phone = session("bob:phone", "bob", None, b"\x01subs");
    let bare = session("bob", "bob", Some(1_732_790_000_123), &[0, 255, 7]);
    let bobby = session("bobby", "bobby", Some(5), b"");
    kept.put(&phone).unwrap();
    kept.put(&bare).unwrap();
    kept.put(&bobby).unwrap();
    assert_eq!(kept.get("bob:phone").unwrap(), Some(phone.clone()));
    assert_eq!(kept.get("bob").unwrap(), Some(bare.clone()));
    assert_eq!(kept.get("bob:tablet").unwrap(), None);
    assert_eq!(
        kept.list().unwrap(),
        vec![stateless(&bare), stateless(&phone), stateless(&bobby)]
    );
    // Replaced whole: a session that ended, with a new state and expiry.
    let ended = StoredSession {
        expiry_secs: u32::MAX,
        ..session("bob:phone", "bob", Some(u64::MAX / 2), b"\x02more")
    };
    kept.put(&ended).unwrap();
    assert_eq!(kept.get("bob:phone").unwrap(), Some(ended));
    kept.remove("bob:phone").unwrap();
    kept.remove("bob:phone").unwrap();
    kept.remove("nobody").unwrap();
    assert_eq!(kept.get("bob:phone").unwrap(), None);
    assert_eq!(
        kept.list().unwrap(),
        vec![stateless(&bare), stateless(&bobby)]
    );
}

fn stateless(session: &StoredSession) -> StoredSession {
    StoredSession {
        state: Vec::new(),
        ..session.clone()
    }
}

/// Forgetting a user (the log's `ForgetUser`, run when an account is removed) removes every
/// session of that user and none of anyone else's, even one whose id begins the same.
pub fn a_forgotten_users_sessions_go(ports: &Ports) {
    let kept = &ports.sessions;
    kept.put(&session("bob", "bob", None, b"a")).unwrap();
    kept.put(&session("bob:phone", "bob", Some(9), b"b"))
        .unwrap();
    let bobby = session("bobby:phone", "bobby", None, b"c");
    kept.put(&bobby).unwrap();
    ports.commit(vec![Intent::ForgetUser { user: "bob".into() }]);
    assert_eq!(kept.get("bob").unwrap(), None);
    assert_eq!(kept.get("bob:phone").unwrap(), None);
    assert_eq!(kept.list().unwrap(), vec![stateless(&bobby)]);
}
