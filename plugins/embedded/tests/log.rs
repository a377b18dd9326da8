//! The message-log port over the embedded store, exercised through the trait: what a commit
//! writes, what reads see (committed data only), and what survives a reopen.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use bytes::Bytes;
use chatd_core::ports::accounts::{AccountChange, AccountRecord, AccountStore};
use chatd_core::ports::log::{
    CidClaim, Claimant, HistoryEntry, Intent, LogBatch, MessageLog, QueueItem, QueueItemKind,
    Queued, SummaryChange, Unit, UnitOutcome,
};
use chatd_core::ports::push::{Platform, PushTokens, TokenChange, TokenRecord};
use chatd_core::records::chat::{Status, StatusRecord, Summary};
use chatd_core::records::fanout::FanoutRecord;
use chatd_core::records::group::{GroupIndex, GroupRecord, MemberRecord, Role};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_embedded::log::EmbeddedLog;
use chatd_embedded::push::EmbeddedPush;
use chatd_kv::{Engine, EngineConfig, KvStore, Op};

fn store_at(dir: &Path) -> Arc<dyn KvStore> {
    chatd_kv::open(&EngineConfig::new(Engine::default(), dir)).expect("store")
}

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(store_at(dir)).expect("open")
}

/// The `n`th message id (all in one millisecond, so they sort by `n`).
fn id(n: u32) -> String {
    format!("1732790000123-00001-{n:05}")
}

fn payload(n: u32) -> Bytes {
    Bytes::from(format!(r#"{{"id":"{}","type":"text","ts":1}}"#, id(n)))
}

fn durable(units: Vec<Unit>, newest: Option<u32>) -> LogBatch {
    LogBatch {
        units,
        newest: newest.map(id),
        durable: true,
        claimant: None,
    }
}

fn unit(intents: Vec<Intent>) -> Unit {
    Unit { cid: None, intents }
}

/// A 1:1 message `n` from alice to bob: stored, in the history, queued for bob.
fn direct(n: u32) -> Vec<Intent> {
    vec![
        Intent::Message {
            id: id(n),
            payload: payload(n),
        },
        Intent::History {
            conversation: "d:alice:bob".into(),
            id: id(n),
            index: None,
        },
        Intent::Enqueue {
            user: "bob".into(),
            qid: id(n),
            entry: Queued::Message,
        },
    ]
}

fn sent(user: &str, cid: &str, ack: &str, intents: Vec<Intent>) -> Unit {
    Unit {
        cid: Some(CidClaim {
            user: user.into(),
            cid: cid.into(),
            ack: Bytes::from(ack.to_string()),
        }),
        intents,
    }
}

fn qids(items: &[QueueItem]) -> Vec<String> {
    items.iter().map(|i| i.qid.clone()).collect()
}

fn ids(entries: &[HistoryEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn summary(user: &str, conversation: &str, peer: &str, group: bool, c: SummaryChange) -> Intent {
    Intent::Summary {
        user: user.into(),
        conversation: conversation.into(),
        peer: peer.into(),
        group,
        change: c,
    }
}

fn summary_of(log: &EmbeddedLog, user: &str, conversation: &str) -> Option<Summary> {
    log.summaries(user)
        .expect("summaries")
        .into_iter()
        .find(|(c, _)| c == conversation)
        .map(|(_, s)| s)
}

fn member(from: u32, to: Option<u32>) -> MemberRecord {
    MemberRecord {
        role: Role::Member,
        windows: vec![(id(from), to.map(id))],
    }
}

fn membership(group: &str, user: &str, record: MemberRecord) -> Intent {
    Intent::Member {
        group: group.into(),
        user: user.into(),
        record,
    }
}

fn group_record(name: &str) -> Intent {
    Intent::Group {
        group: "g_1".into(),
        record: GroupRecord {
            name: name.into(),
            creator: "alice".into(),
            created: 1,
            closed: false,
        },
    }
}

fn fanout(n: u32, done: usize) -> Intent {
    Intent::Fanout {
        id: id(n),
        record: Some(FanoutRecord {
            conversation: "g:g_1".into(),
            media: None,
            push: true,
            recipients: vec!["bob".into(), "carol".into()],
            done,
        }),
    }
}

#[test]
fn a_remembered_cid_skips_its_whole_unit_and_gives_the_first_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let outcomes = log
        .commit(durable(
            vec![
                sent("alice", "c1", "ack-1", direct(1)),
                // A retry within the same batch.
                sent("alice", "c1", "ack-2", direct(2)),
                // The same cid of another user is another cid.
                sent("carol", "c1", "ack-3", direct(3)),
            ],
            Some(3),
        ))
        .expect("commit");
    assert_eq!(
        outcomes,
        vec![
            UnitOutcome::Applied,
            UnitOutcome::Duplicate(Bytes::from("ack-1")),
            UnitOutcome::Applied,
        ]
    );
    // A retry in a later batch.
    let outcomes = log
        .commit(durable(
            vec![sent("alice", "c1", "ack-4", direct(4))],
            Some(4),
        ))
        .expect("commit");
    assert_eq!(outcomes, vec![UnitOutcome::Duplicate(Bytes::from("ack-1"))]);
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1), id(3)]
    );
    assert_eq!(log.message(&id(2)).expect("message"), None);
    assert_eq!(log.message(&id(4)).expect("message"), None);
    assert_eq!(log.message(&id(1)).expect("message"), Some(payload(1)));
    assert_eq!(
        log.remembered_ack("alice", "c1").expect("ack"),
        Some(Bytes::from("ack-1"))
    );
    assert_eq!(
        log.remembered_ack("carol", "c1").expect("ack"),
        Some(Bytes::from("ack-3"))
    );
}

#[test]
fn summary_changes_fold_in_batch_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let d = "d:alice:bob";
    let received = |n| summary("bob", d, "alice", false, SummaryChange::Received(id(n)));
    let read_one = || summary("bob", d, "alice", false, SummaryChange::ReadOne);
    log.commit(durable(
        vec![
            unit(vec![received(1)]),
            unit(vec![
                received(2),
                summary("alice", d, "bob", false, SummaryChange::Last(id(2))),
            ]),
        ],
        None,
    ))
    .expect("commit");
    let bob = summary_of(&log, "bob", d).expect("bob's summary");
    assert_eq!(
        (
            bob.peer.as_str(),
            bob.group,
            bob.last_id.clone(),
            bob.unread
        ),
        ("alice", false, id(2), 2)
    );
    let alice = summary_of(&log, "alice", d).expect("alice's summary");
    assert_eq!((alice.last_id.clone(), alice.unread), (id(2), 0));

    // Starting from the stored summary; never below zero.
    log.commit(durable(vec![unit(vec![read_one()])], None))
        .expect("commit");
    assert_eq!(summary_of(&log, "bob", d).expect("summary").unread, 1);
    log.commit(durable(vec![unit(vec![read_one(), read_one()])], None))
        .expect("commit");
    let bob = summary_of(&log, "bob", d).expect("summary");
    assert_eq!((bob.unread, bob.last_id), (0, id(2)));

    // Groups: joining sets how far the user has read only when nothing is set yet; reading
    // only moves it forward.
    let g = "g:g_1";
    let change = |c| summary("carol", g, "g_1", true, c);
    log.commit(durable(
        vec![unit(vec![change(SummaryChange::Joined(id(5)))])],
        None,
    ))
    .expect("commit");
    let carol = summary_of(&log, "carol", g).expect("carol's summary");
    assert_eq!(
        (carol.peer.as_str(), carol.group, carol.read_upto.clone()),
        ("g_1", true, id(5))
    );
    log.commit(durable(
        vec![unit(vec![
            change(SummaryChange::ReadUpto(id(7))),
            change(SummaryChange::ReadUpto(id(6))),
        ])],
        None,
    ))
    .expect("commit");
    assert_eq!(summary_of(&log, "carol", g).expect("s").read_upto, id(7));
    log.commit(durable(
        vec![unit(vec![change(SummaryChange::Joined(id(9)))])],
        None,
    ))
    .expect("commit");
    assert_eq!(summary_of(&log, "carol", g).expect("s").read_upto, id(7));
    // Within one batch too: a join after a read keeps the read.
    log.commit(durable(
        vec![unit(vec![
            summary("dave", g, "g_1", true, SummaryChange::ReadUpto(id(3))),
            summary("dave", g, "g_1", true, SummaryChange::Joined(id(8))),
        ])],
        None,
    ))
    .expect("commit");
    assert_eq!(summary_of(&log, "dave", g).expect("s").read_upto, id(3));
}

#[test]
fn a_status_never_moves_backwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let status = |user: &str, status, ts| Intent::Status {
        id: id(1),
        user: user.into(),
        record: StatusRecord { status, ts },
    };
    assert_eq!(log.status(&id(1), "bob").expect("status"), Status::Sent);
    // Within one batch: read, then a late `delivered`.
    log.commit(durable(
        vec![
            unit(vec![status("bob", Status::Read, 5)]),
            unit(vec![status("bob", Status::Delivered, 6)]),
            unit(vec![status("carol", Status::Delivered, 6)]),
        ],
        None,
    ))
    .expect("commit");
    assert_eq!(log.status(&id(1), "bob").expect("status"), Status::Read);
    // Across batches.
    log.commit(durable(
        vec![unit(vec![
            status("bob", Status::Delivered, 7),
            status("carol", Status::Read, 7),
        ])],
        None,
    ))
    .expect("commit");
    assert_eq!(
        log.statuses(&id(1)).expect("statuses"),
        vec![
            ("bob".to_string(), Status::Read),
            ("carol".to_string(), Status::Read)
        ]
    );
    assert_eq!(log.status(&id(1), "dave").expect("status"), Status::Sent);
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
fn queue_items_resolve_pointers_and_receipts_and_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let receipt = Bytes::from(r#"{"id":"x","by":"bob","status":"read","ts":1}"#);
    log.commit(durable(
        vec![
            unit(direct(1)),
            unit(vec![
                Intent::Message {
                    id: id(2),
                    payload: payload(2),
                },
                Intent::Enqueue {
                    user: "bob".into(),
                    qid: id(3),
                    entry: Queued::Pointer(id(2)),
                },
                Intent::Enqueue {
                    user: "bob".into(),
                    qid: id(4),
                    entry: Queued::Receipt(receipt.clone()),
                },
                // A pointer at a message that is not there is skipped.
                Intent::Enqueue {
                    user: "bob".into(),
                    qid: id(5),
                    entry: Queued::Pointer(id(99)),
                },
            ]),
        ],
        Some(5),
    ))
    .expect("commit");
    let items = log.queue("bob", None, 10).expect("queue");
    assert_eq!(
        items,
        vec![
            QueueItem {
                qid: id(1),
                kind: QueueItemKind::Message(payload(1)),
            },
            QueueItem {
                qid: id(3),
                kind: QueueItemKind::Message(payload(2)),
            },
            QueueItem {
                qid: id(4),
                kind: QueueItemKind::Receipt(receipt),
            },
        ]
    );
    assert_eq!(
        qids(&log.queue("bob", Some(&id(1)), 1).expect("queue")),
        vec![id(3)]
    );
    assert!(log.queue("bob", None, 0).expect("queue").is_empty());
}

#[test]
fn history_reads_between_bounds_in_either_direction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let index = GroupIndex {
        from: "alice".into(),
        recipients: 3,
    };
    let entries: Vec<Intent> = (1..=5)
        .map(|n| Intent::History {
            conversation: "g:g_1".into(),
            id: id(n),
            index: (n == 2).then(|| index.clone()),
        })
        .collect();
    log.commit(durable(vec![unit(entries)], Some(5)))
        .expect("commit");
    let read = |low, high, newest_first, limit| {
        ids(&log
            .history("g:g_1", low, high, newest_first, limit)
            .expect("history"))
    };
    let (two, four) = (id(2), id(4));
    assert_eq!(
        read(
            Bound::Excluded(two.as_str()),
            Bound::Included(four.as_str()),
            false,
            10
        ),
        vec![id(3), id(4)]
    );
    assert_eq!(
        read(
            Bound::Included(two.as_str()),
            Bound::Excluded(four.as_str()),
            true,
            10
        ),
        vec![id(3), id(2)]
    );
    assert_eq!(
        read(Bound::Unbounded, Bound::Unbounded, true, 2),
        vec![id(5), id(4)]
    );
    assert_eq!(
        log.history_entry("g:g_1", &id(2)).expect("entry"),
        Some(HistoryEntry { id: id(2), index })
    );
    assert_eq!(
        log.history_entry("g:g_1", &id(1))
            .expect("entry")
            .map(|e| e.index),
        Some(GroupIndex::default())
    );
    assert_eq!(log.history_entry("g:g_1", &id(6)).expect("entry"), None);
}

#[test]
fn a_dequeued_item_goes_at_once_and_is_deleted_by_the_next_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path());
        log.commit(durable(vec![unit(direct(1)), unit(direct(2))], Some(2)))
            .expect("commit");
        assert!(log.dequeue("bob", &id(1)).expect("dequeue"));
        assert_eq!(
            qids(&log.queue("bob", None, 10).expect("queue")),
            vec![id(2)]
        );
        // One commit is awaited already: a second dequeue needs no new one.
        assert!(!log.dequeue("bob", &id(1)).expect("dequeue again"));
        log.commit(LogBatch::default()).expect("commit");
        // Done: the next dequeue awaits a commit again.
        assert!(log.dequeue("bob", &id(2)).expect("dequeue after"));
        log.commit(LogBatch::default()).expect("commit");
        log.flush().expect("flush");
    }
    // The dequeues are remembered nowhere but in the store now.
    let log = open(dir.path());
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
}

#[test]
fn fanouts_are_claimed_with_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.commit(durable(
        vec![
            unit(vec![
                Intent::Message {
                    id: id(1),
                    payload: payload(1),
                },
                fanout(1, 0),
            ]),
            // A fan-out whose message is missing can never be carried out: left out.
            unit(vec![fanout(2, 0)]),
        ],
        Some(2),
    ))
    .expect("commit");
    let claimed = log
        .claim_fanouts("a", Duration::from_millis(50))
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].id.clone(), claimed[0].payload.clone()),
        (id(1), payload(1))
    );
    assert_eq!(claimed[0].record.recipients, vec!["bob", "carol"]);
    assert!(log
        .claim_fanouts("b", Duration::from_secs(10))
        .expect("claim")
        .is_empty());
    // Its holder may claim it again.
    assert_eq!(
        log.claim_fanouts("a", Duration::from_millis(50))
            .expect("claim")
            .len(),
        1
    );
    sleep(Duration::from_millis(100));
    let taken = log
        .claim_fanouts("b", Duration::from_millis(1500))
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert!(log
        .claim_fanouts("a", Duration::from_secs(10))
        .expect("claim")
        .is_empty());

    // A slice committed renews the claim: without that, it would have run out meanwhile.
    sleep(Duration::from_millis(1000));
    log.commit(LogBatch {
        units: vec![unit(vec![fanout(1, 1)])],
        newest: None,
        durable: false,
        claimant: None,
    })
    .expect("commit");
    sleep(Duration::from_millis(1000));
    assert!(log
        .claim_fanouts("a", Duration::from_secs(10))
        .expect("claim")
        .is_empty());
    let renewed = log
        .claim_fanouts("b", Duration::from_secs(10))
        .expect("claim");
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].record.done, 1);

    // Finished: nothing left to claim.
    log.commit(durable(
        vec![unit(vec![Intent::Fanout {
            id: id(1),
            record: None,
        }])],
        None,
    ))
    .expect("commit");
    assert!(log
        .claim_fanouts("a", Duration::from_secs(10))
        .expect("claim")
        .is_empty());
}

#[test]
fn a_cached_group_follows_committed_membership_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    assert!(log.group("g_1").expect("group").is_none());
    log.commit(durable(
        vec![unit(vec![
            group_record("one"),
            membership("g_1", "alice", member(1, None)),
        ])],
        Some(1),
    ))
    .expect("commit");
    let members = |log: &EmbeddedLog| {
        let group = log.group("g_1").expect("group").expect("exists");
        group.active().map(|(u, _)| u.clone()).collect::<Vec<_>>()
    };
    assert_eq!(members(&log), vec!["alice"]);
    log.commit(durable(
        vec![unit(vec![
            membership("g_1", "bob", member(2, None)),
            group_record("renamed"),
        ])],
        Some(2),
    ))
    .expect("commit");
    assert_eq!(members(&log), vec!["alice", "bob"]);
    assert_eq!(
        log.group("g_1")
            .expect("group")
            .expect("exists")
            .record
            .name,
        "renamed"
    );
    log.commit(durable(
        vec![unit(vec![
            membership("g_1", "alice", member(1, Some(3))),
            Intent::ForgetMember {
                group: "g_1".into(),
                user: "bob".into(),
            },
        ])],
        Some(3),
    ))
    .expect("commit");
    let group = log.group("g_1").expect("group").expect("exists");
    assert_eq!(group.size(), 0);
    assert_eq!(group.members.keys().collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(
        log.membership("g_1", "alice").expect("membership"),
        Some(member(1, Some(3)))
    );
    assert_eq!(log.membership("g_1", "bob").expect("membership"), None);
}

#[test]
fn groups_of_follows_active_memberships() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.commit(durable(
        vec![unit(vec![
            membership("g_1", "alice", member(1, None)),
            membership("g_2", "alice", member(1, None)),
            membership("g_3", "alice", member(1, Some(2))),
        ])],
        Some(2),
    ))
    .expect("commit");
    assert_eq!(
        log.groups_of("alice", 10).expect("groups"),
        vec!["g_1", "g_2"]
    );
    assert_eq!(log.groups_of("alice", 1).expect("groups"), vec!["g_1"]);
    log.commit(durable(
        vec![unit(vec![
            membership("g_1", "alice", member(1, Some(3))),
            membership("g_3", "alice", member(4, None)),
        ])],
        Some(4),
    ))
    .expect("commit");
    assert_eq!(
        log.groups_of("alice", 10).expect("groups"),
        vec!["g_2", "g_3"]
    );
    log.commit(durable(
        vec![unit(vec![Intent::ForgetMember {
            group: "g_2".into(),
            user: "alice".into(),
        }])],
        None,
    ))
    .expect("commit");
    assert_eq!(log.groups_of("alice", 10).expect("groups"), vec!["g_3"]);
}

#[test]
fn forgetting_a_user_removes_their_records_and_finishing_the_purge_their_rights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_at(dir.path());
    let accounts = EmbeddedAccounts::new(store.clone());
    let push = EmbeddedPush::new(store.clone());
    let log = EmbeddedLog::open(store).expect("open");
    let token = |user: &str, token: &str| TokenChange::Put {
        user: user.into(),
        token: token.into(),
        record: TokenRecord {
            platform: Platform::Fcm,
            device: None,
            ts: 1,
        },
    };
    // `tk2` moved on to carol: its owner entry is hers now.
    push.write(vec![
        token("bob", "tk1"),
        token("bob", "tk2"),
        token("carol", "tk2"),
    ])
    .expect("tokens");
    let d = "d:alice:bob";
    log.commit(durable(
        vec![
            sent(
                "bob",
                "c1",
                "ack",
                vec![
                    summary("bob", d, "alice", false, SummaryChange::Last(id(1))),
                    summary("alice", d, "bob", false, SummaryChange::Received(id(1))),
                    Intent::MediaRight {
                        media: "m1".into(),
                        user: "bob".into(),
                    },
                    Intent::MediaRight {
                        media: "m1".into(),
                        user: "alice".into(),
                    },
                ],
            ),
            unit(direct(2)),
            unit(vec![membership("g_1", "bob", member(1, None))]),
        ],
        Some(2),
    ))
    .expect("commit");
    accounts
        .write(AccountChange::Remove {
            user: "bob".into(),
            tombstone: AccountRecord::default(),
        })
        .expect("remove");
    assert_eq!(log.pending_purges().expect("pending"), vec!["bob"]);

    let tombstone = AccountRecord {
        removed: Some(9),
        floor: Some(id(3)),
        ..AccountRecord::default()
    };
    log.commit(durable(
        vec![
            // Written earlier in the same batch: forgotten too.
            unit(vec![
                Intent::Enqueue {
                    user: "bob".into(),
                    qid: id(3),
                    entry: Queued::Receipt(Bytes::from("{}")),
                },
                summary(
                    "bob",
                    "d:bob:carol",
                    "carol",
                    false,
                    SummaryChange::Last(id(3)),
                ),
            ]),
            unit(vec![
                Intent::ForgetMember {
                    group: "g_1".into(),
                    user: "bob".into(),
                },
                Intent::ForgetUser { user: "bob".into() },
                Intent::Account {
                    user: "bob".into(),
                    record: tombstone.clone(),
                },
            ]),
        ],
        Some(3),
    ))
    .expect("commit");
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    assert!(log.summaries("bob").expect("summaries").is_empty());
    assert_eq!(log.remembered_ack("bob", "c1").expect("ack"), None);
    assert!(log.groups_of("bob", 10).expect("groups").is_empty());
    assert!(push.tokens("bob", 10).expect("tokens").is_empty());
    assert_eq!(push.owner("tk1").expect("owner"), None);
    assert_eq!(push.owner("tk2").expect("owner").as_deref(), Some("carol"));
    assert_eq!(accounts.get("bob").expect("account"), Some(tombstone));
    // The peer keeps everything.
    assert_eq!(summary_of(&log, "alice", d).expect("alice's").unread, 1);
    assert_eq!(log.message(&id(2)).expect("message"), Some(payload(2)));

    assert_eq!(log.finish_purge("bob").expect("finish"), 1);
    assert!(log.pending_purges().expect("pending").is_empty());
}

#[test]
fn a_forgotten_users_summaries_start_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let d = "d:alice:bob";
    let received = |n| summary("bob", d, "alice", false, SummaryChange::Received(id(n)));
    log.commit(durable(
        vec![unit(vec![received(1)]), unit(vec![received(2)])],
        Some(2),
    ))
    .expect("commit");
    assert_eq!(summary_of(&log, "bob", d).expect("summary").unread, 2);
    log.commit(durable(
        vec![unit(vec![Intent::ForgetUser { user: "bob".into() }])],
        None,
    ))
    .expect("forget");
    // A later batch, then one that forgets and writes again: both start from nothing, not
    // from what the earlier commits wrote.
    log.commit(durable(vec![unit(vec![received(3)])], Some(3)))
        .expect("commit");
    assert_eq!(summary_of(&log, "bob", d).expect("summary").unread, 1);
    log.commit(durable(
        vec![
            unit(vec![Intent::ForgetUser { user: "bob".into() }]),
            unit(vec![received(4)]),
        ],
        Some(4),
    ))
    .expect("commit");
    let bob = summary_of(&log, "bob", d).expect("summary");
    assert_eq!((bob.unread, bob.last_id), (1, id(4)));
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

#[test]
fn a_fanout_written_by_a_claimant_is_its_claim_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let mut batch = durable(
        vec![unit(vec![
            Intent::Message {
                id: id(1),
                payload: payload(1),
            },
            fanout(1, 0),
        ])],
        Some(1),
    );
    batch.claimant = Some(Claimant {
        owner: "a".into(),
        lease: Duration::from_secs(60),
    });
    log.commit(batch).expect("commit");
    // Another process finds nothing to take over while the writer's claim runs...
    assert!(log
        .claim_fanouts("b", Duration::from_secs(10))
        .expect("claim")
        .is_empty());
    // ...and the writer itself may claim it (after a restart of its committer, say).
    assert_eq!(
        log.claim_fanouts("a", Duration::from_secs(10))
            .expect("claim")
            .len(),
        1
    );
}
