//! The push jobs port's checks. Jobs are written as messaging writes them: by the log's
//! commits.

use std::time::Duration;

use bytes::Bytes;
use chatd_wire::ids::now_ms;

use super::Ports;
use crate::ports::log::{Intent, Queued, SummaryChange};
use crate::ports::log_conformance::summary;
use crate::ports::push::MessageNotice;

/// A lease no check outlives.
const LONG: Duration = Duration::from_secs(3600);

/// The message id accepted at `ms`, number `n` of that millisecond.
pub fn at(ms: u64, n: u32) -> String {
    format!("{ms:013}-00001-{n:05}")
}

/// A job of message `id` for `user` in `conversation`, queued under `queued` when given.
pub fn job(user: &str, conversation: &str, id: &str, queued: Option<&str>) -> Intent {
    Intent::PushJob {
        user: user.into(),
        conversation: conversation.into(),
        id: id.into(),
        queued: queued.map(str::to_string),
    }
}

/// Jobs are claimed a (user, conversation) pair at a time, oldest first, in pair order; a
/// group's `queued` says where each message waits; a finished group's jobs are gone, a
/// released one is claimed again; more due groups than the limit is deferred work.
pub fn claims_group_jobs_by_user_and_conversation(ports: &Ports) {
    let j = &ports.jobs;
    assert_eq!(
        j.claim("w", LONG, Duration::ZERO, 100).unwrap(),
        Default::default()
    );
    ports.commit(vec![
        job("bob", "d:alice:bob", &at(1_000_000_000_002, 1), None),
        job("bob", "d:alice:bob", &at(1_000_000_000_001, 1), None),
        job("bob", "g:g1", &at(1_000_000_000_003, 1), None),
        job("carol", "d:alice:carol", &at(1_000_000_000_004, 1), None),
    ]);
    ports.commit(vec![job(
        "carol",
        "g:g1",
        &at(1_000_000_000_005, 1),
        Some(&at(1_000_000_000_006, 1)),
    )]);
    let claim = j.claim("w", LONG, Duration::ZERO, 100).unwrap();
    assert!(!claim.deferred);
    assert_eq!(claim.next_due, None);
    let groups = claim.groups;
    let keys: Vec<(String, String)> = groups.iter().map(|g| g.key()).collect();
    assert_eq!(
        keys,
        vec![
            ("bob".into(), "d:alice:bob".into()),
            ("bob".into(), "g:g1".into()),
            ("carol".into(), "d:alice:carol".into()),
            ("carol".into(), "g:g1".into()),
        ]
    );
    assert_eq!(
        groups[0].ids,
        vec![at(1_000_000_000_001, 1), at(1_000_000_000_002, 1)]
    );
    assert_eq!(groups[0].queued, groups[0].ids);
    assert_eq!(groups[0].oldest_ms(), 1_000_000_000_001);
    assert_eq!(groups[3].ids, vec![at(1_000_000_000_005, 1)]);
    assert_eq!(groups[3].queued, vec![at(1_000_000_000_006, 1)]);

    j.finish("w", &groups[0]).unwrap();
    for group in &groups[1..] {
        j.release("w", group);
    }
    let again = j.claim("w", LONG, Duration::ZERO, 100).unwrap();
    assert_eq!(again.groups, groups[1..].to_vec());
    for group in &again.groups {
        j.release("w", group);
    }
    let limited = j.claim("w", LONG, Duration::ZERO, 1).unwrap();
    assert_eq!(limited.groups, groups[1..2].to_vec());
    assert!(limited.deferred, "due groups were left");
}

/// While a claim holds a pair nobody (the holder included) gets it again; jobs that arrive
/// meanwhile are deferred work; only the holder ends the claim; finishing deletes exactly the
/// claimed jobs.
pub fn a_claimed_group_is_not_handed_out_again_until_its_claim_ends(ports: &Ports) {
    let j = &ports.jobs;
    let (first_id, second_id) = (at(1_000_000_000_001, 1), at(1_000_000_000_002, 1));
    ports.commit(vec![job("bob", "d:alice:bob", &first_id, None)]);
    let first = j.claim("a", LONG, Duration::ZERO, 10).unwrap();
    assert_eq!(first.groups.len(), 1);
    for owner in ["b", "a"] {
        let other = j.claim(owner, LONG, Duration::ZERO, 10).unwrap();
        assert!(other.groups.is_empty(), "{owner} got a held group");
        assert!(!other.deferred);
    }
    ports.commit(vec![job("bob", "d:alice:bob", &second_id, None)]);
    let third = j.claim("b", LONG, Duration::ZERO, 10).unwrap();
    assert!(third.groups.is_empty());
    assert!(third.deferred, "new jobs of a held pair are deferred work");
    // Only the holder ends the claim.
    j.release("b", &first.groups[0]);
    let fourth = j.claim("b", LONG, Duration::ZERO, 10).unwrap();
    assert!(fourth.groups.is_empty(), "a non-holder ended the claim");
    // Finished: exactly the claimed job is gone; the newer one forms the next group.
    j.finish("a", &first.groups[0]).unwrap();
    let next = j.claim("b", LONG, Duration::ZERO, 10).unwrap();
    assert_eq!(next.groups.len(), 1);
    assert_eq!(next.groups[0].ids, vec![second_id]);
    j.finish("b", &next.groups[0]).unwrap();
    assert_eq!(
        j.claim("b", LONG, Duration::ZERO, 10).unwrap(),
        Default::default()
    );
}

/// A claim whose lease ran out frees its pair for the next claim; the first holder's late
/// release does not end the new claim.
pub fn an_expired_lease_frees_the_group(ports: &Ports) {
    let j = &ports.jobs;
    ports.commit(vec![job("bob", "g:g1", &at(1_000_000_000_001, 1), None)]);
    let short = Duration::from_millis(100);
    let first = j.claim("a", short, Duration::ZERO, 10).unwrap();
    assert_eq!(first.groups.len(), 1);
    assert!(j
        .claim("b", short, Duration::ZERO, 10)
        .unwrap()
        .groups
        .is_empty());
    std::thread::sleep(Duration::from_millis(250));
    let second = j.claim("b", LONG, Duration::ZERO, 10).unwrap();
    assert_eq!(second.groups, first.groups);
    j.release("a", &first.groups[0]);
    assert!(j
        .claim("c", LONG, Duration::ZERO, 10)
        .unwrap()
        .groups
        .is_empty());
}

/// A pair is due once its oldest job is older than the window; until then the claim says
/// when it will be.
pub fn groups_wait_for_the_collapse_window(ports: &Ports) {
    let j = &ports.jobs;
    let now = now_ms();
    ports.commit(vec![
        job("bob", "d:alice:bob", &at(now, 1), None),
        job("carol", "d:alice:carol", &at(now - 1_000, 1), None),
    ]);
    let window = Duration::from_secs(60);
    let claim = j.claim("a", LONG, window, 10).unwrap();
    assert!(claim.groups.is_empty());
    // The earliest of the two.
    assert_eq!(claim.next_due, Some(now + 59_000));
    assert!(!claim.deferred);
    let claim = j.claim("a", LONG, Duration::ZERO, 10).unwrap();
    assert_eq!(claim.groups.len(), 2);
}

/// A notice reads the stored message; the unread count is the summary's; a message is still
/// queued while its queue entry is there.
pub fn notices_read_the_message_the_queue_and_the_summary(ports: &Ports) {
    let j = &ports.jobs;
    let id = at(1_732_790_000_123, 1);
    let d = "d:alice:bob";
    let payload = format!(
        r#"{{"id":"{id}","from":"alice","to":"bob","type":"text","text":"secret","ts":1}}"#
    );
    let mut intents = vec![
        Intent::Message {
            id: id.clone(),
            payload: Bytes::from(payload),
        },
        Intent::Enqueue {
            user: "bob".into(),
            qid: id.clone(),
            entry: Queued::Message,
        },
    ];
    for _ in 0..4 {
        intents.push(summary(
            "bob",
            d,
            "alice",
            false,
            SummaryChange::Received(id.clone()),
        ));
    }
    ports.commit(intents);
    let notice = j.notice(&id).unwrap();
    assert_eq!(notice.from.as_deref(), Some("alice"));
    assert_eq!(notice.kind.as_deref(), Some("text"));
    assert_eq!(notice.text.as_deref(), Some("secret"));
    assert_eq!(notice.group, None);
    assert_eq!(j.notice("missing").unwrap(), MessageNotice::default());
    assert_eq!(j.unread("bob", d).unwrap(), 4);
    assert_eq!(j.unread("bob", "g:g1").unwrap(), 0);
    assert!(j.still_queued("bob", &id).unwrap());
    assert!(!j.still_queued("carol", &id).unwrap());
    ports.log.dequeue("bob", &id).unwrap();
    // The embedded log carries a dequeue out with its next commit.
    ports.commit(Vec::new());
    assert!(!j.still_queued("bob", &id).unwrap());
}
