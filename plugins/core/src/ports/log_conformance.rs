//! The message-log port conformance suite: what every adapter of [`MessageLog`] must do, as
//! checks run by the embedded store's tests and the PostgreSQL store's tests alike, so that
//! the chat core can run on either. Each check takes a fresh, empty log and panics (naming
//! what broke) when the adapter answers wrongly.
//!
//! What is left out on purpose, as adapter-specific: how long a batch that is not durable
//! stays invisible (the embedded store hides it until the next durable batch; PostgreSQL makes
//! every batch durable), reopening, and the key layout. The clean-up of a removed account
//! needs the other ports as well: it is in `records_conformance::removal`.
//!
//! An adapter runs the suite with [`log_conformance_tests!`](crate::log_conformance_tests):
//!
//! ```ignore
//! chatd_core::log_conformance_tests!(|| (open_a_fresh_log(), guard_to_keep_alive));
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;
use std::thread::sleep;
use std::time::Duration;

use bytes::Bytes;

use crate::ports::log::{
    CidClaim, Claimant, HistoryEntry, Intent, LogBatch, MessageLog, QueueItem, QueueItemKind,
    Queued, SummaryChange, Unit, UnitOutcome,
};
use crate::records::chat::{Status, StatusRecord, Summary};
use crate::records::fanout::FanoutRecord;
use crate::records::group::{GroupIndex, GroupRecord, MemberRecord, Role};

/// Expands to one `#[test]` per check of the suite; `$open` is called once per test and
/// returns `(log, guard)`: the log under test and whatever must live as long as it (a
/// temporary directory, a database).
#[macro_export]
macro_rules! log_conformance_tests {
    ($open:expr) => {
        $crate::log_conformance_tests!(@each $open;
            a_remembered_cid_skips_its_whole_unit_and_gives_the_first_ack,
            summary_changes_fold_in_batch_order,
            a_status_never_moves_backwards,
            a_batch_that_is_not_durable_is_visible_once_a_durable_one_follows,
            queue_items_resolve_pointers_and_receipts_and_page,
            history_reads_between_bounds_in_either_direction,
            a_dequeued_item_leaves_the_queue,
            fanouts_are_claimed_with_leases,
            a_cached_group_follows_committed_membership_changes,
            groups_of_follows_active_memberships,
            forgetting_a_user_removes_their_records_and_keeps_their_peers,
            a_forgotten_users_summaries_start_again,
            a_fanout_written_by_a_claimant_is_its_claim_from_the_start,
            a_slice_of_a_fanout_taken_over_is_skipped,
            newest_id_is_the_highest_id_written,
        );
    };
    (@each $open:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let (log, _guard) = ($open)();
                $crate::ports::log_conformance::$name(&log);
            }
        )*
    };
}

/// The `n`th message id (all in one millisecond, so they sort by `n`).
pub fn id(n: u32) -> String {
    format!("1732790000123-00001-{n:05}")
}

/// The payload of message `n`.
pub fn payload(n: u32) -> Bytes {
    Bytes::from(format!(r#"{{"id":"{}","type":"text","ts":1}}"#, id(n)))
}

/// A durable batch of `units`, the newest id `n`'s.
pub fn durable(units: Vec<Unit>, newest: Option<u32>) -> LogBatch {
    LogBatch {
        units,
        newest: newest.map(id),
        durable: true,
        claimant: None,
    }
}

/// A unit without a cid.
pub fn unit(intents: Vec<Intent>) -> Unit {
    Unit {
        cid: None,
        intents,
        fence: Vec::new(),
    }
}

/// A 1:1 message `n` from alice to bob: stored, in the history, queued for bob.
pub fn direct(n: u32) -> Vec<Intent> {
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

/// A unit that claims `cid` for `user`, with its ack.
pub fn sent(user: &str, cid: &str, ack: &str, intents: Vec<Intent>) -> Unit {
    Unit {
        cid: Some(CidClaim {
            user: user.into(),
            cid: cid.into(),
            ack: Bytes::from(ack.to_string()),
        }),
        intents,
        fence: Vec::new(),
    }
}

/// The queue ids of `items`.
pub fn qids(items: &[QueueItem]) -> Vec<String> {
    items.iter().map(|i| i.qid.clone()).collect()
}

/// The message ids of `entries`.
pub fn ids(entries: &[HistoryEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// A summary change of `user`'s `conversation`.
pub fn summary(
    user: &str,
    conversation: &str,
    peer: &str,
    group: bool,
    c: SummaryChange,
) -> Intent {
    Intent::Summary {
        user: user.into(),
        conversation: conversation.into(),
        peer: peer.into(),
        group,
        change: c,
    }
}

/// `user`'s summary of `conversation`, if any.
pub fn summary_of(log: &dyn MessageLog, user: &str, conversation: &str) -> Option<Summary> {
    log.summaries(user)
        .expect("summaries")
        .into_iter()
        .find(|(c, _)| c == conversation)
        .map(|(_, s)| s)
}

/// A membership from message `from` to message `to` (open when `None`).
pub fn member(from: u32, to: Option<u32>) -> MemberRecord {
    MemberRecord {
        role: Role::Member,
        windows: vec![(id(from), to.map(id))],
    }
}

/// `user`'s membership of `group` becomes `record`.
pub fn membership(group: &str, user: &str, record: MemberRecord) -> Intent {
    Intent::Member {
        group: group.into(),
        user: user.into(),
        record,
    }
}

/// A group record named `name`.
pub fn group_record(name: &str) -> Intent {
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

/// An unfinished fan-out of message `n`, `done` members queued.
pub fn fanout(n: u32, done: usize) -> Intent {
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

/// A remembered cid skips its whole unit, in the same batch or a later one, and gives the first ack.
pub fn a_remembered_cid_skips_its_whole_unit_and_gives_the_first_ack(log: &dyn MessageLog) {
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

/// Summary changes fold in batch order: unread counts, never below zero, and group read marks.
pub fn summary_changes_fold_in_batch_order(log: &dyn MessageLog) {
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
    let bob = summary_of(log, "bob", d).expect("bob's summary");
    assert_eq!(
        (
            bob.peer.as_str(),
            bob.group,
            bob.last_id.clone(),
            bob.unread
        ),
        ("alice", false, id(2), 2)
    );
    let alice = summary_of(log, "alice", d).expect("alice's summary");
    assert_eq!((alice.last_id.clone(), alice.unread), (id(2), 0));

    // Starting from the stored summary; never below zero.
    log.commit(durable(vec![unit(vec![read_one()])], None))
        .expect("commit");
    assert_eq!(summary_of(log, "bob", d).expect("summary").unread, 1);
    log.commit(durable(vec![unit(vec![read_one(), read_one()])], None))
        .expect("commit");
    let bob = summary_of(log, "bob", d).expect("summary");
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
    let carol = summary_of(log, "carol", g).expect("carol's summary");
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
    assert_eq!(summary_of(log, "carol", g).expect("s").read_upto, id(7));
    log.commit(durable(
        vec![unit(vec![change(SummaryChange::Joined(id(9)))])],
        None,
    ))
    .expect("commit");
    assert_eq!(summary_of(log, "carol", g).expect("s").read_upto, id(7));
    // Within one batch too: a join after a read keeps the read.
    log.commit(durable(
        vec![unit(vec![
            summary("dave", g, "g_1", true, SummaryChange::ReadUpto(id(3))),
            summary("dave", g, "g_1", true, SummaryChange::Joined(id(8))),
        ])],
        None,
    ))
    .expect("commit");
    assert_eq!(summary_of(log, "dave", g).expect("s").read_upto, id(3));
}

/// A receipt status only moves forward, within a batch and across batches.
pub fn a_status_never_moves_backwards(log: &dyn MessageLog) {
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

/// Queue items resolve pointers and receipts, skip pointers at missing messages, and page.
pub fn queue_items_resolve_pointers_and_receipts_and_page(log: &dyn MessageLog) {
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

/// History reads honour included, excluded and open bounds, both ways, with the group index.
pub fn history_reads_between_bounds_in_either_direction(log: &dyn MessageLog) {
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

/// Fan-outs are claimed with leases that expire, are renewed by a committed slice, and end.
pub fn fanouts_are_claimed_with_leases(log: &dyn MessageLog) {
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

/// A group read follows committed record and membership changes.
pub fn a_cached_group_follows_committed_membership_changes(log: &dyn MessageLog) {
    assert!(log.group("g_1").expect("group").is_none());
    log.commit(durable(
        vec![unit(vec![
            group_record("one"),
            membership("g_1", "alice", member(1, None)),
        ])],
        Some(1),
    ))
    .expect("commit");
    let members = |log: &dyn MessageLog| {
        let group = log.group("g_1").expect("group").expect("exists");
        group.active().map(|(u, _)| u.clone()).collect::<Vec<_>>()
    };
    assert_eq!(members(log), vec!["alice"]);
    log.commit(durable(
        vec![unit(vec![
            membership("g_1", "bob", member(2, None)),
            group_record("renamed"),
        ])],
        Some(2),
    ))
    .expect("commit");
    assert_eq!(members(log), vec!["alice", "bob"]);
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

/// The groups of a user are exactly their active memberships, in group order.
pub fn groups_of_follows_active_memberships(log: &dyn MessageLog) {
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

/// A forgotten user's summaries start from nothing, in later batches and later in the same one.
pub fn a_forgotten_users_summaries_start_again(log: &dyn MessageLog) {
    let d = "d:alice:bob";
    let received = |n| summary("bob", d, "alice", false, SummaryChange::Received(id(n)));
    log.commit(durable(
        vec![unit(vec![received(1)]), unit(vec![received(2)])],
        Some(2),
    ))
    .expect("commit");
    assert_eq!(summary_of(log, "bob", d).expect("summary").unread, 2);
    log.commit(durable(
        vec![unit(vec![Intent::ForgetUser { user: "bob".into() }])],
        None,
    ))
    .expect("forget");
    // A later batch, then one that forgets and writes again: both start from nothing, not
    // from what the earlier commits wrote.
    log.commit(durable(vec![unit(vec![received(3)])], Some(3)))
        .expect("commit");
    assert_eq!(summary_of(log, "bob", d).expect("summary").unread, 1);
    log.commit(durable(
        vec![
            unit(vec![Intent::ForgetUser { user: "bob".into() }]),
            unit(vec![received(4)]),
        ],
        Some(4),
    ))
    .expect("commit");
    let bob = summary_of(log, "bob", d).expect("summary");
    assert_eq!((bob.unread, bob.last_id), (1, id(4)));
}

/// The next slice of fan-out 1 (bob queued under queue id `qid`), continuing the stored
/// fan-out: written only while the batch's claimant still holds it.
fn next_slice(qid: u32) -> Unit {
    Unit {
        cid: None,
        intents: vec![
            Intent::Enqueue {
                user: "bob".into(),
                qid: id(qid),
                entry: Queued::Pointer(id(1)),
            },
            fanout(1, 1),
        ],
        fence: vec![id(1)],
    }
}

/// A durable batch by `owner` holding `units`, the newest id `n`'s.
fn claimed_by(owner: &str, units: Vec<Unit>, newest: u32) -> LogBatch {
    LogBatch {
        units,
        newest: Some(id(newest)),
        durable: true,
        claimant: Some(Claimant {
            owner: owner.into(),
            lease: Duration::from_secs(10),
        }),
    }
}

/// A writer whose claim ran out and was taken over does not write the fan-out's next slice
/// (the new holder does, once); the rest of its batch is written. Continuing a fan-out also
/// renews its holder's claims.
pub fn a_slice_of_a_fanout_taken_over_is_skipped(log: &dyn MessageLog) {
    log.commit(durable(
        vec![unit(vec![
            Intent::Message {
                id: id(1),
                payload: payload(1),
            },
            fanout(1, 0),
        ])],
        Some(1),
    ))
    .expect("commit");
    assert_eq!(
        log.claim_fanouts("a", Duration::from_millis(50))
            .expect("claim")
            .len(),
        1
    );
    sleep(Duration::from_millis(100));
    assert_eq!(
        log.claim_fanouts("b", Duration::from_millis(300))
            .expect("claim")
            .len(),
        1
    );
    let outcomes = log
        .commit(claimed_by("a", vec![next_slice(10), unit(direct(2))], 10))
        .expect("commit");
    assert_eq!(outcomes, vec![UnitOutcome::Taken, UnitOutcome::Applied]);
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2)],
        "the skipped slice queued nothing"
    );
    // The holder's slice is written, and renews its 300 ms claim for 10 s.
    let outcomes = log
        .commit(claimed_by("b", vec![next_slice(11)], 11))
        .expect("commit");
    assert_eq!(outcomes, vec![UnitOutcome::Applied]);
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2), id(11)]
    );
    sleep(Duration::from_millis(500));
    assert!(
        log.claim_fanouts("a", Duration::from_secs(10))
            .expect("claim")
            .is_empty(),
        "the claim was renewed"
    );
    // A fan-out that is finished is held by nobody: a late slice is skipped too.
    log.commit(durable(
        vec![unit(vec![Intent::Fanout {
            id: id(1),
            record: None,
        }])],
        None,
    ))
    .expect("commit");
    let outcomes = log
        .commit(claimed_by("b", vec![next_slice(12)], 12))
        .expect("commit");
    assert_eq!(outcomes, vec![UnitOutcome::Taken]);
    assert_eq!(log.queue("bob", None, 10).expect("queue").len(), 2);
}

/// A fan-out written by a claimant is held by it from the start.
pub fn a_fanout_written_by_a_claimant_is_its_claim_from_the_start(log: &dyn MessageLog) {
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

/// A batch that need not be durable is there once a durable batch follows it, and the writer
/// reads its own writes (messages, the newest id) at once.
pub fn a_batch_that_is_not_durable_is_visible_once_a_durable_one_follows(log: &dyn MessageLog) {
    log.commit(LogBatch {
        units: vec![unit(direct(1))],
        newest: Some(id(1)),
        durable: false,
        claimant: None,
    })
    .expect("commit");
    assert_eq!(log.message(&id(1)).expect("message"), Some(payload(1)));
    assert_eq!(log.newest_id().expect("newest"), Some(id(1)));
    log.commit(durable(Vec::new(), None)).expect("commit");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(1)]
    );
    assert_eq!(
        log.history_entry("d:alice:bob", &id(1)).expect("entry"),
        Some(HistoryEntry {
            id: id(1),
            index: GroupIndex::default()
        })
    );
}

/// A dequeued item is gone from the queue at once, and stays gone after the commit the
/// adapter may ask for.
pub fn a_dequeued_item_leaves_the_queue(log: &dyn MessageLog) {
    log.commit(durable(vec![unit(direct(1)), unit(direct(2))], Some(2)))
        .expect("commit");
    let wake = log.dequeue("bob", &id(1)).expect("dequeue");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2)]
    );
    if wake {
        log.commit(LogBatch::default()).expect("commit");
    }
    log.dequeue("bob", &id(1)).expect("dequeue again");
    log.commit(LogBatch::default()).expect("commit");
    assert_eq!(
        qids(&log.queue("bob", None, 10).expect("queue")),
        vec![id(2)]
    );
    // Another user's queue is untouched by bob's dequeues.
    log.commit(durable(
        vec![unit(vec![Intent::Enqueue {
            user: "carol".into(),
            qid: id(1),
            entry: Queued::Message,
        }])],
        None,
    ))
    .expect("commit");
    assert_eq!(
        qids(&log.queue("carol", None, 10).expect("queue")),
        vec![id(1)]
    );
}

/// Forgetting a user deletes their queue, summaries, cids and groups-of-user index, what
/// earlier units of the same batch wrote there included, and writes their tombstone; their
/// peers keep their summaries and the messages.
pub fn forgetting_a_user_removes_their_records_and_keeps_their_peers(log: &dyn MessageLog) {
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
                ],
            ),
            unit(direct(2)),
            unit(vec![membership("g_1", "bob", member(1, None))]),
        ],
        Some(2),
    ))
    .expect("commit");
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
            ]),
            // A cid forgotten earlier in the batch may be claimed again.
            sent("bob", "c1", "ack-again", Vec::new()),
        ],
        Some(3),
    ))
    .map(|outcomes| assert_eq!(outcomes.last(), Some(&UnitOutcome::Applied)))
    .expect("commit");
    assert!(log.queue("bob", None, 10).expect("queue").is_empty());
    assert!(log.summaries("bob").expect("summaries").is_empty());
    assert_eq!(
        log.remembered_ack("bob", "c1").expect("ack"),
        Some(Bytes::from("ack-again"))
    );
    assert!(log.groups_of("bob", 10).expect("groups").is_empty());
    assert_eq!(log.membership("g_1", "bob").expect("membership"), None);
    // The peer keeps everything.
    assert_eq!(summary_of(log, "alice", d).expect("alice's").unread, 1);
    assert_eq!(log.message(&id(2)).expect("message"), Some(payload(2)));
}

/// The newest id is the highest message id or batch `newest`, whichever is higher.
pub fn newest_id_is_the_highest_id_written(log: &dyn MessageLog) {
    assert_eq!(log.newest_id().expect("newest"), None);
    log.commit(durable(vec![unit(direct(2))], Some(2)))
        .expect("commit");
    assert_eq!(log.newest_id().expect("newest"), Some(id(2)));
    // A receipt queue id issued later lives only in a queue: `newest` records it.
    log.commit(durable(Vec::new(), Some(7))).expect("commit");
    assert_eq!(log.newest_id().expect("newest"), Some(id(7)));
}
