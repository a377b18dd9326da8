//! The push port over the key-value engine.
//!
//! * Jobs: `j/{user}/{conversation}/{id}`, written by the messaging committer in the same batch
//!   as message `id` (or the fan-out slice that queued it) when `user` had no device online;
//!   the value is the message's queue id when it is not `id`, else empty. A claim scans `j/`,
//!   groups the jobs by (user, conversation) and leases the due groups. Leases are kept in
//!   memory: one process opens the store at a time (the engine's lock sees to it), so this
//!   process's claims are all the claims there are. Nothing needs a read-modify-write: the
//!   committer only inserts job keys, `finish` only deletes keys a claim handed out.
//! * Tokens: `t/{user}/{token}` = [`TokenRecord`] as JSON and the owner index `o/{token}` = user.
//! * What a notification reads: the message `m/{id}`, the queue entry `q/{user}/{queued}` and
//!   the conversation summary `v/{user}/{conversation}` (its `unread`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::{
    Claim, DeviceToken, JobGroup, MessageNotice, PushJobs, PushTokens, TokenChange, TokenRecord,
};
use chatd_kv::{KvStore, Op};
use chatd_wire::ids::now_ms;
use serde_json::Value;

use crate::accounts::{encode, failed};
use crate::log::HeldEntries;

/// Job keys read per scan page.
const PAGE: usize = 4096;

/// Most job keys one claim reads.
const MAX_SCAN: usize = 200_000;

/// One held claim of a (user, conversation) pair.
struct Lease {
    /// Who holds it.
    owner: String,
    /// When it ends.
    until: Instant,
    /// How many jobs it took: more jobs of the pair means new ones arrived meanwhile.
    taken: usize,
}

/// Push jobs and tokens kept in an embedded key-value store.
pub struct EmbeddedPush {
    store: Arc<dyn KvStore>,
    /// The message log's queue entries held in memory, when it runs beside this port.
    held: Option<Arc<HeldEntries>>,
    /// Held claims by (user, conversation).
    leases: Mutex<HashMap<(String, String), Lease>>,
}

impl EmbeddedPush {
    /// Push jobs and tokens in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedPush {
        EmbeddedPush {
            store,
            held: None,
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// This port beside a message log that holds queue entries in memory (see
    /// [`EmbeddedLog::held_entries`](crate::log::EmbeddedLog::held_entries)): a held entry is
    /// still queued.
    pub fn seeing(mut self, held: Arc<HeldEntries>) -> EmbeddedPush {
        self.held = Some(held);
        self
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Lease>> {
        // Leases are plain data: a poisoned lock holds nothing broken.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads up to `limit` jobs grouped by user and conversation (in key order), and the
    /// malformed keys found.
    fn scan(&self, limit: usize) -> Result<(Vec<JobGroup>, Vec<Vec<u8>>), RecordError> {
        let end = keys::prefix_end(keys::PUSH_JOBS_PREFIX);
        let mut start = keys::PUSH_JOBS_PREFIX.as_bytes().to_vec();
        let mut groups: BTreeMap<(String, String), JobGroup> = BTreeMap::new();
        let mut malformed = Vec::new();
        let mut seen = 0;
        while seen < limit {
            let rows = self
                .store
                .scan(&start, &end, false, PAGE.min(limit - seen))
                .map_err(failed)?;
            let n = rows.len();
            for (key, value) in rows {
                seen += 1;
                start = keys::successor(&key);
                let Some((user, conversation, id)) = parse_job_key(&key) else {
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
                    });
                group.ids.push(id.to_string());
                group.queued.push(match std::str::from_utf8(&value) {
                    Ok(qid) if !qid.is_empty() => qid.to_string(),
                    _ => id.to_string(),
                });
            }
            if n < PAGE {
                break;
            }
        }
        Ok((groups.into_values().collect(), malformed))
    }

    /// Ends `owner`'s claim of `group`'s pair, if it holds it.
    fn end_lease(&self, owner: &str, group: &JobGroup) {
        let mut leases = self.leases();
        let key = group.key();
        if leases.get(&key).is_some_and(|l| l.owner == owner) {
            leases.remove(&key);
        }
    }
}

/// Splits a job key into (user, conversation, id); `None` for a malformed key.
pub fn parse_job_key(key: &[u8]) -> Option<(&str, &str, &str)> {
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

impl PushJobs for EmbeddedPush {
    fn claim(
        &self,
        owner: &str,
        lease: Duration,
        window: Duration,
        limit: usize,
    ) -> Result<Claim, RecordError> {
        let (groups, malformed) = self.scan(MAX_SCAN)?;
        if !malformed.is_empty() {
            tracing::warn!("deleting {} malformed push job keys", malformed.len());
            self.store
                .apply(malformed.into_iter().map(Op::Delete).collect())
                .map_err(failed)?;
        }
        let now = now_ms();
        let window = window.as_millis() as u64;
        let clock = Instant::now();
        let mut leases = self.leases();
        let mut claim = Claim::default();
        for group in groups {
            let key = group.key();
            if let Some(held) = leases.get(&key) {
                if held.until > clock {
                    claim.deferred |= group.ids.len() > held.taken;
                    continue;
                }
                leases.remove(&key);
            }
            let due = group.oldest_ms().saturating_add(window);
            if due > now {
                claim.next_due = Some(claim.next_due.map_or(due, |d| d.min(due)));
                continue;
            }
            if claim.groups.len() >= limit {
                claim.deferred = true;
                continue;
            }
            leases.insert(
                key,
                Lease {
                    owner: owner.to_string(),
                    until: clock + lease,
                    taken: group.ids.len(),
                },
            );
            claim.groups.push(group);
        }
        Ok(claim)
    }

    fn finish(&self, owner: &str, group: &JobGroup) -> Result<(), RecordError> {
        let deleted = if group.ids.is_empty() {
            Ok(())
        } else {
            self.store
                .apply(
                    group
                        .ids
                        .iter()
                        .map(|id| Op::Delete(keys::push_job(&group.user, &group.conversation, id)))
                        .collect(),
                )
                .map_err(failed)
        };
        // The claim ends even when the delete failed: the next claim finds the jobs again.
        self.end_lease(owner, group);
        deleted
    }

    fn release(&self, owner: &str, group: &JobGroup) {
        self.end_lease(owner, group);
    }

    fn still_queued(&self, user: &str, queued: &str) -> Result<bool, RecordError> {
        let key = keys::queue_entry(user, queued);
        if self.held.as_ref().is_some_and(|held| held.holds(&key)) {
            return Ok(true);
        }
        Ok(self.store.get(&key).map_err(failed)?.is_some())
    }

    fn notice(&self, id: &str) -> Result<MessageNotice, RecordError> {
        let stored = self.store.get(&keys::message(id)).map_err(failed)?;
        Ok(MessageNotice::from_stored(stored.as_deref()))
    }

    fn unread(&self, user: &str, conversation: &str) -> Result<u64, RecordError> {
        Ok(self
            .store
            .get(&keys::summary(user, conversation))
            .map_err(failed)?
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("unread").and_then(Value::as_u64))
            .unwrap_or(0))
    }
}

impl PushTokens for EmbeddedPush {
    fn tokens(&self, user: &str, limit: usize) -> Result<Vec<DeviceToken>, RecordError> {
        let prefix = keys::push_tokens_prefix(user);
        let rows = self
            .store
            .scan(prefix.as_bytes(), &keys::prefix_end(&prefix), false, limit)
            .map_err(failed)?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let token = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
            match serde_json::from_slice(&value) {
                Ok(record) => out.push(DeviceToken {
                    token: token.into_owned(),
                    record,
                }),
                Err(_) => tracing::warn!(user, "skipping an unreadable push token record"),
            }
        }
        Ok(out)
    }

    fn token(&self, user: &str, token: &str) -> Result<Option<TokenRecord>, RecordError> {
        Ok(self
            .store
            .get(&keys::push_token(user, token))
            .map_err(failed)?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn has_token(&self, user: &str, token: &str) -> Result<bool, RecordError> {
        Ok(self
            .store
            .get(&keys::push_token(user, token))
            .map_err(failed)?
            .is_some())
    }

    fn owner(&self, token: &str) -> Result<Option<String>, RecordError> {
        Ok(self
            .store
            .get(&keys::push_token_owner(token))
            .map_err(failed)?
            .and_then(|v| String::from_utf8(v).ok()))
    }

    fn holds(&self, owner: &str, token: &str) -> Result<bool, RecordError> {
        Ok(self.has_token(owner, token)?
            && self
                .store
                .get(&keys::account(owner))
                .map_err(failed)?
                .is_some())
    }

    fn write(&self, changes: Vec<TokenChange>) -> Result<(), RecordError> {
        let mut ops = Vec::with_capacity(changes.len() + 1);
        for change in changes {
            match change {
                TokenChange::Put {
                    user,
                    token,
                    record,
                } => {
                    ops.push(Op::Put(keys::push_token(&user, &token), encode(&record)?));
                    ops.push(Op::Put(keys::push_token_owner(&token), user.into_bytes()));
                }
                TokenChange::Drop { user, token } => {
                    ops.push(Op::Delete(keys::push_token(&user, &token)));
                }
                TokenChange::DropOwner { token } => {
                    ops.push(Op::Delete(keys::push_token_owner(&token)));
                }
            }
        }
        self.store.apply(ops).map_err(failed)
    }

    fn flush(&self) -> Result<(), RecordError> {
        self.store.flush().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::ports::push::{id_ms, Platform};

    const LONG: Duration = Duration::from_secs(3600);

    fn push() -> (tempfile::TempDir, Arc<dyn KvStore>, EmbeddedPush) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        (dir, store.clone(), EmbeddedPush::new(store))
    }

    fn job(store: &dyn KvStore, user: &str, conversation: &str, id: &str) {
        store
            .apply(vec![Op::Put(
                keys::push_job(user, conversation, id),
                Vec::new(),
            )])
            .unwrap();
    }

    fn jobs(store: &dyn KvStore) -> usize {
        let p = keys::PUSH_JOBS_PREFIX;
        store
            .scan(p.as_bytes(), &keys::prefix_end(p), false, usize::MAX)
            .unwrap()
            .len()
    }

    #[test]
    fn keys_parse() {
        let key = keys::push_job("bob", "d:alice:bob", "1732790000123-00001-00000");
        assert_eq!(
            parse_job_key(&key),
            Some(("bob", "d:alice:bob", "1732790000123-00001-00000"))
        );
        assert_eq!(parse_job_key(b"j/bob/g:g1/x").unwrap().1, "g:g1");
        assert_eq!(parse_job_key(b"j/bob/x"), None);
        assert_eq!(parse_job_key(b"j//c/x"), None);
        assert_eq!(parse_job_key(b"q/bob/c/x"), None);
        assert_eq!(id_ms("1732790000123-00001-00000"), 1_732_790_000_123);
        assert_eq!(id_ms("junk"), 0);
    }

    // What every adapter must do is the conformance suite (`tests/records_conformance.rs`);
    // these check the key layout and keys or records that cannot be read.

    #[test]
    fn claims_read_todays_job_keys_and_drop_malformed_ones() {
        let (_dir, store, p) = push();
        store
            .apply(vec![
                Op::Put(
                    keys::push_job("carol", "g:g1", "1000000000005-00001-00000"),
                    b"1000000000006-00001-00000".to_vec(),
                ),
                Op::Put(b"j/broken".to_vec(), Vec::new()),
            ])
            .unwrap();
        job(
            store.as_ref(),
            "bob",
            "d:alice:bob",
            "1000000000001-00001-00000",
        );
        let claim = p.claim("w", LONG, Duration::ZERO, 100).unwrap();
        assert_eq!(store.get(b"j/broken").unwrap(), None);
        assert_eq!(claim.groups.len(), 2);
        assert_eq!(claim.groups[0].queued, claim.groups[0].ids);
        assert_eq!(claim.groups[1].queued, vec!["1000000000006-00001-00000"]);
        p.finish("w", &claim.groups[0]).unwrap();
        assert_eq!(jobs(store.as_ref()), 1);
    }

    #[test]
    fn tokens_are_kept_under_todays_keys() {
        let (_dir, store, p) = push();
        let record = TokenRecord {
            platform: Platform::Fcm,
            device: Some("phone".into()),
            ts: 5,
        };
        p.write(vec![TokenChange::Put {
            user: "bob".into(),
            token: "t1".into(),
            record,
        }])
        .unwrap();
        p.flush().unwrap();
        assert_eq!(
            store.get(b"t/bob/t1").unwrap().unwrap(),
            br#"{"platform":"fcm","device":"phone","ts":5}"#.to_vec()
        );
        assert_eq!(store.get(b"o/t1").unwrap(), Some(b"bob".to_vec()));
        // Holding reads the account record's key.
        assert!(!p.holds("bob", "t1").unwrap());
        store
            .apply(vec![Op::Put(b"u/bob".to_vec(), b"{}".to_vec())])
            .unwrap();
        assert!(p.holds("bob", "t1").unwrap());
        // An unreadable record is stored but not listed.
        store
            .apply(vec![Op::Put(b"t/bob/t2".to_vec(), b"junk".to_vec())])
            .unwrap();
        assert!(p.has_token("bob", "t2").unwrap());
        assert_eq!(p.token("bob", "t2").unwrap(), None);
        assert_eq!(p.tokens("bob", 10).unwrap().len(), 1);
    }
}
