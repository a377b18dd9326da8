//! The MQTT sessions port over the key-value engine: `e/{user}/{client_id}` = version byte 1,
//! expiry (u32, big-endian), end of the last connection (u64 ms, big-endian, `u64::MAX` while
//! connected), then the state as the broker encoded it.

use std::sync::Arc;

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::sessions::{SessionStore, StoredSession};
use chatd_kv::{KvStore, Op};

use crate::accounts::failed;
use crate::keys;

/// The layout's version byte.
const VERSION: u8 = 1;
/// Bytes before the state.
const HEADER: usize = 1 + 4 + 8;
/// Pairs read at a time when every session is listed.
const PAGE: usize = 1024;

/// Kept MQTT sessions in an embedded key-value store.
pub struct EmbeddedSessions {
    store: Arc<dyn KvStore>,
}

impl EmbeddedSessions {
    /// Kept sessions in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedSessions {
        EmbeddedSessions { store }
    }
}

/// The user a client id belongs to (`{user}` or `{user}:{device}`).
fn user_of(client_id: &str) -> &str {
    client_id.split(':').next().unwrap_or(client_id)
}

fn encode(session: &StoredSession) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + session.state.len());
    value.push(VERSION);
    value.extend_from_slice(&session.expiry_secs.to_be_bytes());
    value.extend_from_slice(&session.ended_ms.unwrap_or(u64::MAX).to_be_bytes());
    value.extend_from_slice(&session.state);
    value
}

fn decode(key: &[u8], value: &[u8], with_state: bool) -> Result<StoredSession, RecordError> {
    let corrupt = |why: &str| RecordError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    };
    let rest = key
        .strip_prefix(keys::SESSIONS_PREFIX.as_bytes())
        .ok_or_else(|| corrupt("not a session key"))?;
    let rest = std::str::from_utf8(rest).map_err(|_| corrupt("key is not UTF-8"))?;
    let (user, client_id) = rest
        .split_once('/')
        .ok_or_else(|| corrupt("key names no client id"))?;
    if value.len() < HEADER || value[0] != VERSION {
        return Err(corrupt("unknown layout"));
    }
    let mut expiry = [0u8; 4];
    expiry.copy_from_slice(&value[1..5]);
    let mut ended = [0u8; 8];
    ended.copy_from_slice(&value[5..HEADER]);
    let ended = u64::from_be_bytes(ended);
    Ok(StoredSession {
        client_id: client_id.to_string(),
        user: user.to_string(),
        expiry_secs: u32::from_be_bytes(expiry),
        ended_ms: (ended != u64::MAX).then_some(ended),
        state: if with_state {
            value[HEADER..].to_vec()
        } else {
            Vec::new()
        },
    })
}

impl SessionStore for EmbeddedSessions {
    fn get(&self, client_id: &str) -> Result<Option<StoredSession>, RecordError> {
        let key = keys::session(user_of(client_id), client_id);
        match self.store.get(&key).map_err(failed)? {
            Some(value) => decode(&key, &value, true).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, session: &StoredSession) -> Result<(), RecordError> {
        let key = keys::session(&session.user, &session.client_id);
        self.store
            .apply(vec![Op::Put(key, encode(session))])
            .map_err(failed)?;
        self.store.flush().map_err(failed)
    }

    fn remove(&self, client_id: &str) -> Result<(), RecordError> {
        let key = keys::session(user_of(client_id), client_id);
        self.store.apply(vec![Op::Delete(key)]).map_err(failed)?;
        self.store.flush().map_err(failed)
    }

    fn list(&self) -> Result<Vec<StoredSession>, RecordError> {
        let end = keys::prefix_end(keys::SESSIONS_PREFIX);
        let mut start = keys::SESSIONS_PREFIX.as_bytes().to_vec();
        let mut sessions = Vec::new();
        loop {
            let page = self.store.scan(&start, &end, false, PAGE).map_err(failed)?;
            let full = page.len() == PAGE;
            for (key, value) in &page {
                sessions.push(decode(key, value, false)?);
            }
            match page.last() {
                Some((last, _)) if full => {
                    start = last.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        // Keys sort by user first; the port promises client id order.
        sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(sessions)
    }
}
