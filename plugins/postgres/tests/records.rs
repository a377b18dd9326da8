//! What the PostgreSQL records ports do beyond the conformance suites: the upgrade of a
//! version 1 database, push claims shared by several processes, records that cannot be read,
//! and a store that refuses a database without the schema.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chatd_core::ports::accounts::{AccountStore, RecordError};
use chatd_core::ports::log::{Intent, LogBatch, MessageLog, Unit};
use chatd_core::ports::media::MediaRecords;
use chatd_core::ports::presence::LastSeenStore;
use chatd_core::ports::push::{PushJobs, PushTokens};
use chatd_postgres::{Options, PgError, PostgresStore};

fn options() -> Options {
    Options {
        readers: 2,
        timeout: Duration::from_secs(10),
    }
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(url, options()).expect("open")
}

/// One durable batch of one unit.
fn commit(store: &PostgresStore, intents: Vec<Intent>) {
    let batch = LogBatch {
        units: vec![Unit {
            cid: None,
            intents,
            fence: Vec::new(),
        }],
        newest: None,
        durable: true,
        claimant: None,
    };
    store.log().expect("log").commit(batch).expect("commit");
}

#[test]
fn a_version_1_database_is_refused_until_migrate_adds_the_records_tables() {
    let url = common::migrated_database();
    // Back to what version 1 was: the log's tables only.
    common::admin(
        &url,
        "DROP TABLE profiles, mqtt_sessions, skeletons, last_seen, media, media_contents, media_owners, push_tokens, \
         token_owners, push_claims; DELETE FROM schema_version WHERE version > 1; \
         INSERT INTO accounts VALUES ('bob', '{\"created\":7}')",
    );
    for err in [
        PostgresStore::open(&url, options()).err().expect("old"),
        chatd_postgres::PostgresLog::open(&url, options())
            .err()
            .expect("old"),
    ] {
        assert!(
            matches!(err, PgError::OldSchema { found: 1, known: 4 }),
            "{err}"
        );
        assert!(err.to_string().contains("chatd db migrate"), "{err}");
    }
    assert_eq!(chatd_postgres::migrate(&url).expect("migrate"), 1);
    let store = open(&url);
    // What version 1 held is still there; the new tables take writes.
    assert_eq!(
        store.accounts().get("bob").expect("get").map(|r| r.created),
        Some(7)
    );
    store.last_seen().set_last_seen("bob", 5).expect("seen");
    assert_eq!(store.last_seen().last_seen("bob").expect("seen"), Some(5));
}

#[test]
fn a_store_refuses_a_database_without_the_schema_and_bad_urls() {
    let err = PostgresStore::open(&common::fresh_database(), options())
        .err()
        .expect("no schema");
    assert!(matches!(err, PgError::NoSchema), "{err}");
    let err = PostgresStore::open("not a url at all", options())
        .err()
        .expect("bad url");
    assert!(matches!(err, PgError::Url(_)), "{err}");
}

#[test]
fn two_processes_never_claim_the_same_push_jobs() {
    let url = common::migrated_database();
    let writer = open(&url);
    let jobs = (0..40)
        .map(|n| Intent::PushJob {
            user: format!("u{n:02}"),
            conversation: "d:alice:bob".into(),
            id: format!("1000000000001-00001-{n:05}"),
            queued: None,
        })
        .collect();
    commit(&writer, jobs);
    let barrier = Arc::new(Barrier::new(2));
    let claimers: Vec<_> = ["node-1", "node-2"]
        .into_iter()
        .map(|owner| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                let push = open(&url).push();
                barrier.wait();
                let mut mine = Vec::new();
                for _ in 0..20 {
                    let claim = push
                        .claim(owner, Duration::from_secs(60), Duration::ZERO, 3)
                        .expect("claim");
                    mine.extend(claim.groups.into_iter().map(|g| g.user));
                }
                mine
            })
        })
        .collect();
    let lists: Vec<Vec<String>> = claimers
        .into_iter()
        .map(|c| c.join().expect("claimer"))
        .collect();
    let sets: Vec<HashSet<&String>> = lists.iter().map(|l| l.iter().collect()).collect();
    assert!(
        sets[0].is_disjoint(&sets[1]),
        "claimed by both: {:?}",
        sets[0].intersection(&sets[1]).collect::<Vec<_>>()
    );
    // Each pair once, by one of them.
    assert_eq!(lists[0].len() + lists[1].len(), 40);
    assert_eq!(sets[0].len() + sets[1].len(), 40);

    // A claim held by one process is ended by its finish in that process only.
    let (a, b) = (open(&url).push(), open(&url).push());
    commit(
        &writer,
        vec![Intent::PushJob {
            user: "zed".into(),
            conversation: "g:g1".into(),
            id: "1000000000002-00001-00000".into(),
            queued: None,
        }],
    );
    let held = a
        .claim("node-1", Duration::from_secs(60), Duration::ZERO, 10)
        .expect("claim");
    assert_eq!(held.groups.len(), 1);
    b.release("node-2", &held.groups[0]);
    let none = b
        .claim("node-2", Duration::from_secs(60), Duration::ZERO, 10)
        .expect("claim");
    assert!(none.groups.is_empty());
    a.finish("node-1", &held.groups[0]).expect("finish");
    let after = b
        .claim("node-2", Duration::from_secs(60), Duration::ZERO, 10)
        .expect("claim");
    assert!(after.groups.is_empty(), "finished jobs came back");
}

#[test]
fn unreadable_records_are_corrupt_or_left_out() {
    let url = common::migrated_database();
    let store = open(&url);
    common::admin(
        &url,
        "INSERT INTO accounts VALUES ('carol', 'not json'); \
         INSERT INTO media VALUES ('m_bad', '{'); \
         INSERT INTO push_tokens VALUES ('bob', 't2', 'junk')",
    );
    let accounts = store.accounts();
    match accounts.get("carol") {
        Err(RecordError::Corrupt { key, .. }) => assert!(key.contains("carol"), "{key}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        accounts.list(None, 10).expect("list"),
        vec![("carol".to_string(), None)]
    );
    assert!(matches!(
        store.media().media("m_bad"),
        Err(RecordError::Corrupt { .. })
    ));
    let push = store.push();
    assert!(push.has_token("bob", "t2").expect("has"));
    assert_eq!(push.token("bob", "t2").expect("token"), None);
    assert!(push.tokens("bob", 10).expect("tokens").is_empty());
}
