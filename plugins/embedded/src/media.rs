//! The media records port over the key-value engine: `f/{media}` = the media record,
//! `c/{sha256}` = the verified content, `c/{sha256}/{user}` = the media id that uploader got
//! (all JSON except the last, the bare id), and the download rights `a/{media}/{user}` that the
//! messaging committer writes (read here).

use std::sync::{Arc, Mutex};

use crate::keys;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::media::{ContentRecord, MediaChange, MediaRecord, MediaRecords};
use chatd_kv::{KvStore, Op};

use crate::accounts::{encode, failed, load};

/// Media metadata kept in an embedded key-value store.
pub struct EmbeddedMedia {
    store: Arc<dyn KvStore>,
    /// Makes "stored unless present" one step within this process.
    write: Mutex<()>,
}

impl EmbeddedMedia {
    /// Media metadata in `store`.
    pub fn new(store: Arc<dyn KvStore>) -> EmbeddedMedia {
        EmbeddedMedia {
            store,
            write: Mutex::new(()),
        }
    }
}

impl MediaRecords for EmbeddedMedia {
    fn media(&self, media: &str) -> Result<Option<MediaRecord>, RecordError> {
        load(self.store.as_ref(), &keys::media_record(media))
    }

    fn content(&self, sha256: &str) -> Result<Option<ContentRecord>, RecordError> {
        load(self.store.as_ref(), &keys::media_content(sha256))
    }

    fn owner_media(&self, sha256: &str, user: &str) -> Result<Option<String>, RecordError> {
        Ok(self
            .store
            .get(&keys::media_owner(sha256, user))
            .map_err(failed)?
            .and_then(|v| String::from_utf8(v).ok()))
    }

    fn owners(&self, sha256: &str, limit: usize) -> Result<Vec<String>, RecordError> {
        let prefix = keys::media_owners_prefix(sha256);
        let rows = self
            .store
            .scan(prefix.as_bytes(), &keys::prefix_end(&prefix), false, limit)
            .map_err(failed)?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, v)| String::from_utf8(v).ok())
            .collect())
    }

    fn may_download(&self, media: &str, user: &str) -> Result<bool, RecordError> {
        Ok(self
            .store
            .get(&keys::media_access(media, user))
            .map_err(failed)?
            .is_some())
    }

    fn write(&self, changes: Vec<MediaChange>) -> Result<(), RecordError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut ops = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                MediaChange::Media(record) => {
                    ops.push(Op::Put(keys::media_record(&record.id), encode(&record)?));
                }
                MediaChange::Owner {
                    sha256,
                    user,
                    media,
                } => ops.push(Op::Put(
                    keys::media_owner(&sha256, &user),
                    media.into_bytes(),
                )),
                MediaChange::ContentIfAbsent(content) => {
                    if self.content(&content.sha256)?.is_none() {
                        ops.push(Op::Put(
                            keys::media_content(&content.sha256),
                            encode(&content)?,
                        ));
                    }
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

    // What every adapter must do is the conformance suite (`tests/records_conformance.rs`);
    // this checks the key layout and a record that cannot be read.
    #[test]
    fn records_are_kept_under_todays_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let m = EmbeddedMedia::new(store.clone());
        let sha = "ab".repeat(32);
        let mut record = MediaRecord::pending("alice", &sha, 10, "image/png", 5);
        m.write(vec![
            MediaChange::Media(record.clone()),
            MediaChange::Owner {
                sha256: sha.clone(),
                user: "alice".into(),
                media: record.id.clone(),
            },
        ])
        .unwrap();
        assert!(store
            .get(format!("f/{}", record.id).as_bytes())
            .unwrap()
            .is_some());
        assert_eq!(
            store
                .get(format!("c/{sha}/alice").as_bytes())
                .unwrap()
                .unwrap(),
            record.id.as_bytes()
        );
        record.mark_verified(8);
        m.write(vec![MediaChange::ContentIfAbsent(
            ContentRecord::from_media(&record, 8),
        )])
        .unwrap();
        assert!(store.get(format!("c/{sha}").as_bytes()).unwrap().is_some());
        // Download rights are read under the key the committer writes.
        store
            .apply(vec![Op::Put(
                format!("a/{}/bob", record.id).into_bytes(),
                Vec::new(),
            )])
            .unwrap();
        assert!(m.may_download(&record.id, "bob").unwrap());

        store
            .apply(vec![Op::Put(b"f/m_bad".to_vec(), b"{".to_vec())])
            .unwrap();
        match m.media("m_bad") {
            Err(RecordError::Corrupt { key, .. }) => assert_eq!(key, "f/m_bad"),
            other => panic!("{other:?}"),
        }
    }
}
