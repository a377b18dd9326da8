//! What the PostgreSQL log does beyond the port's conformance suite: its schema versions, its
//! errors, several processes sharing one database (claims, cids), a server that crashes under
//! it, and calls from every kind of thread. The last step of a purge is the records suites'
//! (`records_conformance.rs`), and the records ports' own tests are `records.rs`.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use chatd_core::ports::log::{CidClaim, Intent, LogBatch, MessageLog, Queued, Unit, UnitOutcome};
use chatd_core::records::fanout::FanoutRecord;
use chatd_postgres::{Options, PgError, PostgresLog};

fn id(n: u32) -> String {
    format!("1732790000123-00001-{n:05}")
}

fn payload(n: u32) -> Bytes {
    Bytes::from(format!(r#"{{"id":"{}","type":"text","ts":1}}"#, id(n)))
}

fn options() -> Options {
    Options {
        readers: 2,
        timeout: Duration::from_secs(10),
    }
}

fn open(url: &str) -> PostgresLog {
    PostgresLog::open(url, options()).expect("open")
}

fn durable(units: Vec<Unit>) -> LogBatch {
    LogBatch {
        units,
        newest: None,
        durable: true,
        claimant: None,
    }
}

/// A 1:1 message `n` to bob, with a cid claim when `cid` is given.
fn send(n: u32, cid: Option<&str>) -> Unit {
    Unit {
        cid: cid.map(|cid| CidClaim {
            user: "alice".into(),
            cid: cid.into(),
            ack: Bytes::from(format!("ack-{n}")),
        }),
        intents: vec![
            Intent::Message {
                id: id(n),
                payload: payload(n),
            },
            Intent::Enqueue {
                user: "bob".into(),
                qid: id(n),
                entry: Queued::Message,
            },
        ],
        fence: Vec::new(),
    }
}

fn queued(log: &PostgresLog) -> Vec<String> {
    log.queue("bob", None, 1000)
        .expect("queue")
        .into_iter()
        .map(|i| i.qid)
        .collect()
}

#[test]
fn opening_refuses_a_database_without_the_schema_or_with_an_unknown_version() {
    let url = common::fresh_database();
    let err = PostgresLog::open(&url, options()).err().expect("no schema");
    assert!(matches!(err, PgError::NoSchema), "{err}");
    assert!(err.to_string().contains("chatd db migrate"), "{err}");
    assert_eq!(chatd_postgres::migrate(&url).expect("migrate"), 0);
    // Again: nothing to do.
    assert_eq!(
        chatd_postgres::migrate(&url).expect("migrate again"),
        chatd_postgres::schema::VERSION
    );
    open(&url);
    // A newer chatd migrated it further: refused, by open and by migrate.
    common::admin(&url, "INSERT INTO schema_version VALUES (99)");
    let err = PostgresLog::open(&url, options())
        .err()
        .expect("newer schema");
    assert!(
        matches!(err, PgError::UnknownSchema { found: 99, .. }),
        "{err}"
    );
    assert!(matches!(
        chatd_postgres::migrate(&url),
        Err(PgError::UnknownSchema { found: 99, .. })
    ));
}

#[test]
fn bad_urls_and_unreachable_servers_are_errors_not_panics() {
    let err = PostgresLog::open("not a url at all", options())
        .err()
        .expect("bad url");
    assert!(matches!(err, PgError::Url(_)), "{err}");
    // Nothing listens on port 1.
    let err = PostgresLog::open("postgres://chatd@127.0.0.1:1/x", options())
        .err()
        .expect("unreachable");
    assert!(matches!(err, PgError::Sql(_)), "{err}");
    // The text says why, not only that the client failed.
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn two_processes_never_claim_the_same_fanout() {
    let url = common::migrated_database();
    let writer = open(&url);
    let units = (1..=60)
        .map(|n| Unit {
            cid: None,
            intents: vec![
                Intent::Message {
                    id: id(n),
                    payload: payload(n),
                },
                Intent::Fanout {
                    id: id(n),
                    record: Some(FanoutRecord {
                        conversation: "g:g_1".into(),
                        media: None,
                        push: false,
                        recipients: vec!["bob".into()],
                        done: 0,
                    }),
                },
            ],
            fence: Vec::new(),
        })
        .collect();
    writer.commit(durable(units)).expect("commit");
    let barrier = Arc::new(Barrier::new(2));
    let claimers: Vec<_> = ["node-1", "node-2"]
        .into_iter()
        .map(|owner| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                let log = open(&url);
                barrier.wait();
                let mut mine = Vec::new();
                for _ in 0..5 {
                    let claimed = log
                        .claim_fanouts(owner, Duration::from_secs(60))
                        .expect("claim");
                    mine.extend(claimed.into_iter().map(|f| f.id));
                }
                mine.into_iter().collect::<HashSet<_>>()
            })
        })
        .collect();
    let sets: Vec<HashSet<String>> = claimers
        .into_iter()
        .map(|c| c.join().expect("claimer"))
        .collect();
    assert!(
        sets[0].is_disjoint(&sets[1]),
        "claimed by both: {:?}",
        sets[0].intersection(&sets[1]).collect::<Vec<_>>()
    );
    assert_eq!(sets[0].len() + sets[1].len(), 60);
}

#[test]
fn a_cid_sent_through_two_processes_at_once_is_applied_once() {
    let url = common::migrated_database();
    let barrier = Arc::new(Barrier::new(2));
    let senders: Vec<_> = [1, 2]
        .into_iter()
        .map(|n| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                let log = open(&url);
                barrier.wait();
                log.commit(durable(vec![send(n, Some("c1"))]))
                    .expect("commit")
            })
        })
        .collect();
    let outcomes: Vec<UnitOutcome> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender"))
        .collect();
    let applied = outcomes
        .iter()
        .filter(|o| **o == UnitOutcome::Applied)
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    let log = open(&url);
    let first = queued(&log);
    assert_eq!(first.len(), 1, "only the applied unit's message is queued");
    let ack = log
        .remembered_ack("alice", "c1")
        .expect("ack")
        .expect("some");
    let n = if first[0] == id(1) { 1 } else { 2 };
    assert_eq!(ack, Bytes::from(format!("ack-{n}")));
    assert!(outcomes.contains(&UnitOutcome::Duplicate(ack)));
}

#[test]
fn a_crashed_server_fails_commits_and_the_log_reconnects_with_every_acknowledged_batch() {
    let server = common::own_server();
    let url = server.database();
    chatd_postgres::migrate(&url).expect("migrate");
    let log = open(&url);
    log.commit(durable(vec![send(1, Some("c1"))]))
        .expect("commit");
    server.crash();
    assert!(log.commit(durable(vec![send(2, Some("c2"))])).is_err());
    assert!(log.failing());
    assert!(log.queue("bob", None, 10).is_err());
    assert!(log.recover().is_err(), "nothing to recover to yet");
    server.start_again();
    log.recover().expect("recover");
    assert!(!log.failing());
    // The acknowledged batch survived the crash; the failed one may be retried.
    assert_eq!(queued(&log), vec![id(1)]);
    let outcomes = log
        .commit(durable(vec![send(2, Some("c2")), send(3, Some("c1"))]))
        .expect("commit after reconnecting");
    assert_eq!(
        outcomes,
        vec![
            UnitOutcome::Applied,
            UnitOutcome::Duplicate(Bytes::from("ack-1"))
        ]
    );
    assert_eq!(queued(&log), vec![id(1), id(2)]);
}

#[test]
fn calls_from_inside_a_multi_thread_runtime_neither_panic_nor_block_it() {
    let url = common::migrated_database();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let log = Arc::new(open(&url));
        // As the sessions do: straight from tasks, many at once.
        let tasks: Vec<_> = (1..=8)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move {
                    log.commit(durable(vec![send(n, None)])).expect("commit");
                    log.queue("bob", None, 100).expect("queue").len()
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.expect("task") >= 1);
        }
        assert_eq!(queued(&log).len(), 8);
        // As account removal and shutdown do: from the blocking pool.
        let blocking = log.clone();
        let n = tokio::task::spawn_blocking(move || queued(&blocking).len())
            .await
            .expect("blocking task");
        assert_eq!(n, 8);
        // Dropped inside the runtime: the adapter's own runtime shuts down without panicking.
        drop(log);
    });
}

#[test]
fn calls_from_a_current_thread_runtime_work() {
    let url = common::migrated_database();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let log = open(&url);
        log.commit(durable(vec![send(1, None)])).expect("commit");
        if log.dequeue("bob", &id(1)).expect("dequeue") {
            log.commit(LogBatch::default()).expect("commit");
        }
        assert!(queued(&log).is_empty());
        drop(log);
    });
}

#[test]
fn a_batch_of_many_sends_is_one_pipelined_transaction() {
    let url = common::migrated_database();
    let log = open(&url);
    let units: Vec<Unit> = (1..=500).map(|n| send(n, Some(&format!("c{n}")))).collect();
    let started = std::time::Instant::now();
    let outcomes = log.commit(durable(units)).expect("commit");
    // Shown with --nocapture: the cost of a large batch (three round trips plus the commit).
    println!("500 sends in one batch: {:?}", started.elapsed());
    assert!(outcomes.iter().all(|o| *o == UnitOutcome::Applied));
    assert_eq!(queued(&log).len(), 500);
    // The same batch again: every unit a duplicate, nothing written twice.
    let again: Vec<Unit> = (1..=500)
        .map(|n| send(n + 1000, Some(&format!("c{n}"))))
        .collect();
    let outcomes = log.commit(durable(again)).expect("commit");
    assert!(outcomes
        .iter()
        .enumerate()
        .all(|(n, o)| *o == UnitOutcome::Duplicate(Bytes::from(format!("ack-{}", n + 1)))));
    assert_eq!(queued(&log).len(), 500);
}
