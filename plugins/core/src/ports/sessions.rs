//! The MQTT sessions port: the small record a persistent MQTT session keeps between
//! connections (its subscriptions and the messages in flight to it, as the broker encodes
//! them), by client id. The messages themselves stay in the user's queue, which is the
//! user's, not the session's.

use super::accounts::RecordError;

/// One kept session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The MQTT client id (`{user}` or `{user}:{device}`), the session's key.
    pub client_id: String,
    /// The user it belongs to (removing the user removes its sessions).
    pub user: String,
    /// How long the session outlives its connection, in seconds.
    pub expiry_secs: u32,
    /// When its last connection ended (ms since the epoch); `None` while one was open.
    pub ended_ms: Option<u64>,
    /// The session's state, opaque to the store.
    pub state: Vec<u8>,
}

/// Where persistent MQTT sessions are kept.
pub trait SessionStore: Send + Sync + 'static {
    /// The session of `client_id`, if one is kept.
    fn get(&self, client_id: &str) -> Result<Option<StoredSession>, RecordError>;

    /// Keeps `session`, replacing what `client_id` had; durable when it returns (a session
    /// announced as present must not lose its subscriptions in a crash).
    fn put(&self, session: &StoredSession) -> Result<(), RecordError>;

    /// Forgets the session of `client_id` (nothing happens when there is none).
    fn remove(&self, client_id: &str) -> Result<(), RecordError>;

    /// Every kept session without its state (`state` empty), in client id order: read once
    /// at start-up, so it must not need memory for every session's state at once.
    fn list(&self) -> Result<Vec<StoredSession>, RecordError>;
}
