//! The message-log port over the embedded store, exercised through the trait: what is the
//! embedded store's own (a batch that is not durable stays invisible until a durable one,
//! dequeues carried out by the next commit, reopening, older layouts). What every adapter of
//! the port must do is the conformance suite, run by `log_conformance.rs`; the clean-up of a
//! removed account across the ports is `records_conformance.rs`'s.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatd_core::ports::log::{Intent, Queued};

use chatd_core::ports::log::{
    HistoryEntry, LogBatch, MessageLog, QueueItem, QueueItemKind, SummaryChange,
};
use chatd_core::records::chat::Status;
use chatd_core::records::group::GroupIndex;
use chatd_embedded::log::{EmbeddedLog, HOLD, MAX_HELD};
use chatd_kv::{Engine, EngineConfig, KvStore, Op};
// The batches and records the conformance suite builds, shared rather than written twice.
use chatd_core::ports::log_conformance::{
    direct, durable, group_record, id, ids, member, membership, payload, qids, summary, summary_of,
    unit,
};

fn store_at(dir: &Path) -> Arc<dyn KvStore> {
    chatd_kv::open(&EngineConfig::new(Engine::default(), dir)).expect("store")
}

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(store_at(dir)).expect("open")
}

#[test]
fn a_batch_that_is_not_durable_is_invisible_until_a_durable_one_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    // Nothing committed yet: nothing to read, whatever the store holds.
    log.commit(LogBatch {
        units: vec![unit(direct(1))],
        newest: Some(id(1)),
        durable: false,
        claimant: None,
    })
    .expect("commit");
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    let all = |log: &EmbeddedLog| {
        log.history("d:alice:bob", Bound::Unbounded, Bound::Unbounded, false, 10)
            .expect("history")
    };
    assert!(all(&log).is_empty());
    log.commit(durable(vec![unit(direct(2))], Some(2)))
        .expect("commit");
    log.commit(LogBatch {
        units: vec![unit(direct(3))],
        newest: Some(id(3)),
        durable: false,
        claimant: None,
    })
    .expect("commit");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1), id(2)]
    );
    assert_eq!(ids(&all(&log)), vec![id(1), id(2)]);
    assert_eq!(
        log.history_entry("d:alice:bob", &id(3)).expect("entry"),
        None
    );
    // The committer reads its own writes.
    assert_eq!(log.message(&id(3)).expect("message"), Some(payload(3)));
    assert_eq!(log.newest_id().expect("newest"), Some(id(3)));
    // An empty durable batch makes it visible.
    log.commit(durable(Vec::new(), None)).expect("commit");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1), id(2), id(3)]
    );
    assert_eq!(ids(&all(&log)), vec![id(1), id(2), id(3)]);
    assert_eq!(
        log.history_entry("d:alice:bob", &id(3)).expect("entry"),
        Some(HistoryEntry {
            id: id(3),
            index: GroupIndex::default()
        })
    );
}

#[test]
fn a_dequeued_item_goes_at_once_and_is_deleted_by_the_next_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, log) = two_queued_one_dequeued(dir.path());
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2)]
    );
    // A shutdown writes out what is still held: 2 is a record now.
    log.flush().expect("flush");
    assert!(store.get(&queue_key(2)).expect("get").is_some());
    assert!(held_lists(&store).is_empty());
    assert!(log.dequeue("bob", &id(2)).expect("dequeue"));
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    // One commit is awaited already: a second dequeue needs no new one.
    assert!(!log.dequeue("bob", &id(2)).expect("dequeue again"));
    log.commit(LogBatch::default()).expect("commit");
    assert_eq!(store.get(&queue_key(2)).expect("get"), None);
    log.flush().expect("flush");
    drop(log);
    // The dequeues are remembered nowhere but in the store now.
    let log = EmbeddedLog::open(store).expect("reopen");
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
}

/// A log on a fresh store in `dir`, with bob's messages 1 and 2 committed and 1 dequeued.
fn two_queued_one_dequeued(dir: &Path) -> (Arc<dyn KvStore>, EmbeddedLog) {
    let store = store_at(dir);
    let log = EmbeddedLog::open(store.clone()).expect("open");
    log.commit(durable(vec![unit(direct(1)), unit(direct(2))], Some(2)))
        .expect("commit");
    // Held in memory: taking it out of the queue leaves nothing for a commit to do.
    assert!(!log.dequeue("bob", &id(1)).expect("dequeue"));
    (store, log)
}

/// `q/bob/{id(n)}`, the record of bob's queue entry for message `n`.
fn queue_key(n: u32) -> Vec<u8> {
    format!("q/bob/{}", id(n)).into_bytes()
}

/// The lists of held queue entries (`x/held/…`) in `store`.
fn held_lists(store: &Arc<dyn KvStore>) -> Vec<Vec<u8>> {
    store
        .scan(b"x/held/", b"x/held0", false, usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

#[test]
fn queue_entries_are_held_in_memory_and_survive_a_crash_through_their_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_at(dir.path());
    let log = EmbeddedLog::open(store.clone()).expect("open");
    log.commit(durable(
        vec![unit(direct(1)), unit(direct(2)), unit(direct(3))],
        Some(3),
    ))
    .expect("commit");
    // No record per entry: one list names the three.
    assert_eq!(
        store.scan(b"q/", b"q0", false, 10).expect("scan"),
        Vec::new()
    );
    assert_eq!(held_lists(&store).len(), 1);
    assert_eq!(
        qids(&log.queue("bob", Some(&id(1)), 10).expect("queue")),
        vec![id(2), id(3)]
    );
    assert!(!log.dequeue("bob", &id(2)).expect("dequeue"));
    // Gone without a shutdown (`flush`), as in a crash. The list was flushed with its
    // batch, so the next open writes its entries out as records, the dequeued one included
    // (it is delivered again, and clients de-duplicate by id), and deletes the list.
    drop(log);
    drop(store);
    let store = store_at(dir.path());
    let log = EmbeddedLog::open(store.clone()).expect("reopen");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1), id(2), id(3)]
    );
    for n in 1..=3 {
        assert!(store.get(&queue_key(n)).expect("get").is_some(), "{n}");
    }
    assert!(held_lists(&store).is_empty());
}

#[test]
fn a_crash_after_forgetting_a_user_brings_none_of_their_held_entries_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_at(dir.path());
    let log = EmbeddedLog::open(store.clone()).expect("open");
    // One batch, one list: an entry of bob's and one of carol's.
    let mut intents = direct(1);
    intents.push(Intent::Enqueue {
        user: "carol".into(),
        qid: id(1),
        entry: Queued::Pointer(id(1)),
    });
    log.commit(durable(vec![unit(intents)], Some(1)))
        .expect("commit");
    log.commit(durable(
        vec![unit(vec![Intent::ForgetUser { user: "bob".into() }])],
        None,
    ))
    .expect("forget");
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    // Gone without a shutdown, as in a crash, while carol's entry keeps the list.
    drop(log);
    drop(store);
    let store = store_at(dir.path());
    let log = EmbeddedLog::open(store.clone()).expect("reopen");
    assert_eq!(
        store.scan(b"q/bob/", b"q/bob0", false, 10).expect("scan"),
        Vec::new()
    );
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    assert_eq!(
        qids(&log.queue("carol", None, 10).expect("queue")),
        vec![id(1)]
    );
}

#[test]
fn entries_held_longer_than_the_hold_are_written_as_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, log) = two_queued_one_dequeued(dir.path());
    // The hold is a least time, not a race: after it, the next commit writes what is left.
    std::thread::sleep(HOLD + Duration::from_millis(50));
    log.commit(durable(vec![unit(direct(3))], Some(3)))
        .expect("commit");
    assert_eq!(store.get(&queue_key(1)).expect("get"), None);
    assert!(store.get(&queue_key(2)).expect("get").is_some());
    // 3 is held still, under a list of its own; the first list went with its last entry.
    assert_eq!(store.get(&queue_key(3)).expect("get"), None);
    assert_eq!(held_lists(&store).len(), 1);
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2), id(3)]
    );
    // A written entry is deleted by the next commit once dequeued.
    assert!(log.dequeue("bob", &id(2)).expect("dequeue"));
    log.commit(LogBatch::default()).expect("commit");
    assert_eq!(store.get(&queue_key(2)).expect("get"), None);
    // A list whose entries were all dequeued is deleted by the next commit.
    assert!(!log.dequeue("bob", &id(3)).expect("dequeue"));
    log.commit(LogBatch::default()).expect("commit");
    assert!(held_lists(&store).is_empty());
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
}

#[test]
fn no_more_than_max_held_entries_are_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_at(dir.path());
    let log = EmbeddedLog::open(store.clone()).expect("open");
    let receipt = |n: usize| Intent::Enqueue {
        user: "alice".into(),
        qid: id(n as u32),
        entry: Queued::Receipt(Bytes::from_static(b"{}")),
    };
    let first: Vec<Intent> = (0..MAX_HELD).map(receipt).collect();
    log.commit(durable(vec![unit(first)], Some(MAX_HELD as u32 - 1)))
        .expect("commit");
    assert_eq!(log.held_entries().len(), MAX_HELD);
    // One more than the bound: the oldest list is written out by the same commit.
    log.commit(durable(
        vec![unit(vec![receipt(MAX_HELD)])],
        Some(MAX_HELD as u32),
    ))
    .expect("commit");
    assert_eq!(log.held_entries().len(), 1);
    let written = store
        .scan(b"q/alice/", b"q/alice0", false, usize::MAX)
        .expect("scan");
    assert_eq!(written.len(), MAX_HELD);
    assert_eq!(
        log.queue("alice", None, usize::MAX).expect("queue").len(),
        MAX_HELD + 1
    );
}

#[test]
fn data_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path());
        log.commit(durable(
            vec![
                unit(direct(1)),
                unit(vec![
                    group_record("one"),
                    membership("g_1", "bob", member(1, None)),
                    summary(
                        "bob",
                        "d:alice:bob",
                        "alice",
                        false,
                        SummaryChange::Received(id(1)),
                    ),
                ]),
            ],
            Some(1),
        ))
        .expect("commit");
        // A receipt queue id above every message id: only `x/last_id` remembers it.
        log.commit(durable(Vec::new(), Some(7))).expect("commit");
    }
    let log = open(dir.path());
    assert_eq!(log.newest_id().expect("newest"), Some(id(7)));
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1)]
    );
    assert_eq!(
        ids(&log
            .history("d:alice:bob", Bound::Unbounded, Bound::Unbounded, false, 10)
            .expect("history")),
        vec![id(1)]
    );
    assert_eq!(
        summary_of(&log, "bob", "d:alice:bob")
            .expect("summary")
            .unread,
        1
    );
    assert_eq!(log.groups_of("bob", 10).expect("groups"), vec!["g_1"]);
    assert_eq!(
        log.group("g_1")
            .expect("group")
            .expect("exists")
            .record
            .name,
        "one"
    );
}

#[test]
fn a_store_written_by_the_old_committer_reads_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_at(dir.path());
    let put = |k: &str, v: &[u8]| Op::Put(k.as_bytes().to_vec(), v.to_vec());
    let (one, two, three) = (id(1), id(2), id(3));
    let member = r#"{"role":"member","windows":[["1",null]]}"#.as_bytes();
    store
        .apply(vec![
            put(&format!("m/{one}"), &payload(1)),
            put(&format!("m/{two}"), &payload(2)),
            put(&format!("q/bob/{one}"), b""),
            put(&format!("q/bob/{three}"), format!("@{two}").as_bytes()),
            put(&format!("h/g:g_1/{two}"), br#"{"f":"alice","n":2}"#),
            put(&format!("s/{one}/bob"), br#"{"status":"read","ts":4}"#),
            put(&format!("s/{one}/carol"), b"not json"),
            put(
                "v/bob/g:g_1",
                br#"{"peer":"g_1","group":true,"read_upto":"1","last_id":"","unread":0}"#,
            ),
            put("x/last_id", three.as_bytes()),
            // From before the groups-of-user index: built at open.
            put("g/g_1", br#"{"name":"one","creator":"alice","created":1}"#),
            put("r/g_1/bob", member),
            put("r/g_1/carol", br#"{"role":"member","windows":[["1","2"]]}"#),
            put("r/g_2/bob", member),
        ])
        .expect("write");
    let log = EmbeddedLog::open(store).expect("open");
    assert_eq!(log.newest_id().expect("newest"), Some(id(3)));
    assert_eq!(
        log.queue("bob", None, 10).expect("queue"),
        vec![
            QueueItem {
                qid: id(1),
                kind: QueueItemKind::Message(payload(1)),
            },
            QueueItem {
                qid: id(3),
                kind: QueueItemKind::Message(payload(2)),
            },
        ]
    );
    assert_eq!(
        log.history_entry("g:g_1", &id(2)).expect("entry"),
        Some(HistoryEntry {
            id: id(2),
            index: GroupIndex {
                from: "alice".into(),
                recipients: 2
            }
        })
    );
    assert_eq!(
        log.statuses(&id(1)).expect("statuses"),
        vec![("bob".to_string(), Status::Read)]
    );
    assert_eq!(log.status(&id(1), "carol").expect("status"), Status::Sent);
    let bob = summary_of(&log, "bob", "g:g_1").expect("summary");
    assert_eq!((bob.group, bob.read_upto.as_str()), (true, "1"));
    assert_eq!(
        log.groups_of("bob", 10).expect("groups"),
        vec!["g_1", "g_2"]
    );
    assert!(log.groups_of("carol", 10).expect("groups").is_empty());
}
