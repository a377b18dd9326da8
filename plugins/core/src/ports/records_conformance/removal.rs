//! The removal of an account across every port: the accounts port marks the clean-up as
//! pending, the log's `ForgetUser` deletes what is kept per user (the log's own records, push
//! tokens, last-seen time and profile included), and the log's last step of the purge deletes the
//! user's download rights and media de-duplication entries; the peers keep what is theirs.

use super::media::{sha, upload};
use super::push_tokens::put;
use super::Ports;
use crate::ports::accounts::{AccountChange, AccountRecord};
use crate::ports::log::Intent;
use crate::ports::log_conformance::{direct, durable, id, payload, sent, unit};
use crate::ports::media::MediaRecord;
use crate::ports::profiles::{FieldChange, Profile, ProfileChange};

/// Every port forgets a removed user; a token that moved on, the peers' rights and
/// de-duplication entries, and the messages stay.
pub fn a_removed_users_records_go_from_every_port_and_their_peers_keep_theirs(ports: &Ports) {
    // `tk2` moved on to carol: its owner entry is hers now.
    ports
        .tokens
        .write(vec![
            put("bob", "tk1", 1),
            put("bob", "tk2", 1),
            put("carol", "tk2", 2),
        ])
        .expect("tokens");
    ports.last_seen.set_last_seen("bob", 5).expect("seen");
    ports.last_seen.set_last_seen("carol", 6).expect("seen");
    let named = |name: &str| ProfileChange {
        name: FieldChange::Set(name.into()),
        avatar: FieldChange::Set("m_1".into()),
    };
    ports
        .profiles
        .change("bob", &named("Bob"))
        .expect("profile");
    ports
        .profiles
        .change("carol", &named("Carol"))
        .expect("profile");
    let content = sha("ab");
    let bobs = MediaRecord::pending("bob", &content, 10, "image/png", 5);
    let alices = MediaRecord::pending("alice", &content, 10, "image/png", 5);
    upload(ports, &bobs);
    upload(ports, &alices);
    let right = |user: &str| Intent::MediaRight {
        media: bobs.id.clone(),
        user: user.into(),
    };
    ports
        .log
        .commit(durable(
            vec![
                sent("bob", "c1", "ack", vec![right("bob"), right("alice")]),
                unit(direct(2)),
            ],
            Some(2),
        ))
        .expect("commit");
    ports
        .accounts
        .write(AccountChange::Remove {
            user: "bob".into(),
            tombstone: AccountRecord::default(),
        })
        .expect("remove");
    assert_eq!(ports.log.pending_purges().expect("pending"), vec!["bob"]);

    let tombstone = AccountRecord {
        removed: Some(9),
        floor: Some(id(3)),
        ..AccountRecord::default()
    };
    ports.commit(vec![
        Intent::ForgetUser { user: "bob".into() },
        Intent::Account {
            user: "bob".into(),
            record: tombstone.clone(),
        },
    ]);
    let tokens = &ports.tokens;
    assert!(tokens.tokens("bob", 10).expect("tokens").is_empty());
    assert!(!tokens.has_token("bob", "tk2").expect("has"));
    assert_eq!(tokens.owner("tk1").expect("owner"), None);
    assert_eq!(
        tokens.owner("tk2").expect("owner").as_deref(),
        Some("carol")
    );
    assert!(tokens.has_token("carol", "tk2").expect("has"));
    assert_eq!(ports.last_seen.last_seen("bob").expect("seen"), None);
    assert_eq!(ports.last_seen.last_seen("carol").expect("seen"), Some(6));
    assert_eq!(
        ports.profiles.profile("bob").expect("profile"),
        Profile::default()
    );
    assert_eq!(
        ports
            .profiles
            .profile("carol")
            .expect("profile")
            .name
            .as_deref(),
        Some("Carol")
    );
    assert_eq!(ports.accounts.get("bob").expect("account"), Some(tombstone));
    assert!(ports.accounts.purge_pending("bob").expect("pending"));

    // The last step: bob's right and de-duplication entry.
    assert_eq!(ports.log.finish_purge("bob").expect("finish"), 2);
    assert!(ports.log.pending_purges().expect("pending").is_empty());
    assert!(!ports.accounts.purge_pending("bob").expect("pending"));
    let media = &ports.media;
    assert!(!media.may_download(&bobs.id, "bob").expect("right"));
    assert!(media.may_download(&bobs.id, "alice").expect("right"));
    assert_eq!(media.owner_media(&content, "bob").expect("owner"), None);
    assert_eq!(
        media.owner_media(&content, "alice").expect("owner"),
        Some(alices.id.clone())
    );
    assert_eq!(media.owners(&content, 10).expect("owners"), vec![alices.id]);
    // The media records themselves and the messages stay: the peers still reference them.
    assert_eq!(media.media(&bobs.id).expect("media"), Some(bobs));
    assert_eq!(
        ports.log.message(&id(2)).expect("message"),
        Some(payload(2))
    );
}
