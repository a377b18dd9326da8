//! Push jobs: `j/{user}/{conversation}/{id}`, written by the messaging committer in the same
//! flushed batch as message `id` (or, for a group message, as the fan-out slice that queued it
//! for `user`) when `user` had no device online. The value is the message's queue id when it
//! is not `id` (group fan-out queues under a slice's id), else empty.
//!
//! Ownership is split so that nothing needs a read-modify-write: the committer only inserts
//! job keys, the bridge only deletes keys it has read and handled. A job that arrives while its
//! group is being sent simply stays and forms the next group.

use std::collections::BTreeMap;

use chatd_core::keys;
use chatd_kv::{KvStore, Op, StoreError};

/// Job keys read per scan page.
const PAGE: usize = 4096;

/// One (user, conversation) pair's pending jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobGroup {
    /// The recipient.
    pub user: String,
    /// `d:{a}:{b}` or `g:{group}`.
    pub conversation: String,
    /// Message ids, oldest first.
    pub ids: Vec<String>,
    /// Where each message of `ids` waits in the user's queue (`q/{user}/{queued}`), in the
    /// same order: its own id for a 1:1 message, the fan-out slice's id for a group message.
    pub queued: Vec<String>,
    /// The exact keys read, for deletion once handled.
    pub keys: Vec<Vec<u8>>,
}

impl JobGroup {
    /// When the oldest job was accepted (ms since the epoch, from its message id); 0 when the
    /// id carries no readable time, which makes the group due at once.
    pub fn oldest_ms(&self) -> u64 {
        self.ids.first().map_or(0, |id| id_ms(id))
    }

    /// The group's identity.
    pub fn key(&self) -> (String, String) {
        (self.user.clone(), self.conversation.clone())
    }
}

/// The acceptance time carried by a message id's first 13 characters.
pub fn id_ms(id: &str) -> u64 {
    id.get(..13).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Splits a job key into (user, conversation, id); `None` for a malformed key.
pub fn parse_key(key: &[u8]) -> Option<(&str, &str, &str)> {
    let rest = std::str::from_utf8(key)
        .ok()?
        .strip_prefix(keys::PUSH_JOBS_PREFIX)?;
    let (user, rest) = rest.split_once('/')?;
    let (conversation, id) = rest.rsplit_once('/')?;
    if user.is_empty() || conversation.is_empty() || id.is_empty() {
        return None;
    }
    Some((user, conversation, id))
}

/// Reads up to `limit` pending jobs and groups them by user and conversation (in key order).
/// Malformed keys are returned separately, to be deleted.
pub fn scan(
    store: &dyn KvStore,
    limit: usize,
) -> Result<(Vec<JobGroup>, Vec<Vec<u8>>), StoreError> {
    let end = keys::prefix_end(keys::PUSH_JOBS_PREFIX);
    let mut start = keys::PUSH_JOBS_PREFIX.as_bytes().to_vec();
    let mut groups: BTreeMap<(String, String), JobGroup> = BTreeMap::new();
    let mut malformed = Vec::new();
    let mut seen = 0;
    while seen < limit {
        let rows = store.scan(&start, &end, false, PAGE.min(limit - seen))?;
        let n = rows.len();
        for (key, value) in rows {
            seen += 1;
            start = keys::successor(&key);
            let Some((user, conversation, id)) = parse_key(&key) else {
                malformed.push(key);
                continue;
            };
            let group = groups
                .entry((user.to_string(), conversation.to_string()))
                .or_insert_with(|| JobGroup {
                    user: user.to_string(),
                    conversation: conversation.to_string(),
                    ids: Vec::new(),
                    queued: Vec::new(),
                    keys: Vec::new(),
                });
            group.ids.push(id.to_string());
            group.queued.push(match std::str::from_utf8(&value) {
                Ok(qid) if !qid.is_empty() => qid.to_string(),
                _ => id.to_string(),
            });
            group.keys.push(key);
        }
        if n < PAGE {
            break;
        }
    }
    Ok((groups.into_values().collect(), malformed))
}

/// Deletes exactly `keys` (jobs that were handled). Not flushed: after a crash a deleted job
/// may come back and be pushed once more, which the notification's collapse id makes harmless.
pub fn delete(store: &dyn KvStore, keys: &[Vec<u8>]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    store.apply(keys.iter().cloned().map(Op::Delete).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_kv::{Engine, EngineConfig};

    #[test]
    fn keys_parse() {
        let key = keys::push_job("bob", "d:alice:bob", "1732790000123-00001-00000");
        assert_eq!(
            parse_key(&key),
            Some(("bob", "d:alice:bob", "1732790000123-00001-00000"))
        );
        assert_eq!(parse_key(b"j/bob/g:g1/x").unwrap().1, "g:g1");
        assert_eq!(parse_key(b"j/bob/x"), None);
        assert_eq!(parse_key(b"j//c/x"), None);
        assert_eq!(parse_key(b"q/bob/c/x"), None);
        assert_eq!(id_ms("1732790000123-00001-00000"), 1_732_790_000_123);
        assert_eq!(id_ms("junk"), 0);
    }

    #[test]
    fn scan_groups_by_user_and_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path().join("s"))).unwrap();
        let ops = [
            ("bob", "d:alice:bob", "1000000000001-00001-00000"),
            ("bob", "d:alice:bob", "1000000000002-00001-00000"),
            ("bob", "g:g1", "1000000000003-00001-00000"),
            ("carol", "d:alice:carol", "1000000000004-00001-00000"),
        ]
        .iter()
        .map(|(u, c, i)| Op::Put(keys::push_job(u, c, i), Vec::new()))
        .chain([
            Op::Put(
                keys::push_job("carol", "g:g1", "1000000000005-00001-00000"),
                b"1000000000006-00001-00000".to_vec(),
            ),
            Op::Put(b"j/broken".to_vec(), Vec::new()),
        ])
        .collect();
        store.apply(ops).unwrap();
        let (groups, malformed) = scan(&store, 100).unwrap();
        assert_eq!(malformed, vec![b"j/broken".to_vec()]);
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[0].ids.len(), 2);
        assert_eq!(groups[0].queued, groups[0].ids);
        assert_eq!(groups[3].ids, vec!["1000000000005-00001-00000"]);
        assert_eq!(groups[3].queued, vec!["1000000000006-00001-00000"]);
        assert_eq!(groups[0].oldest_ms(), 1_000_000_000_001);
        delete(&store, &groups[0].keys).unwrap();
        let (groups, _) = scan(&store, 100).unwrap();
        assert_eq!(groups.len(), 3);
        let (limited, _) = scan(&store, 1).unwrap();
        assert_eq!(limited.len(), 1);
    }
}
