//! The accounts port's checks.

use super::Ports;
use crate::ports::accounts::{AccountChange, AccountRecord};
use crate::ports::log::Intent;

/// A live record with password hash `hash`.
pub fn live(hash: &str) -> AccountRecord {
    AccountRecord {
        hash: Some(hash.to_string()),
        created: 7,
        removed: None,
        floor: None,
    }
}

/// Creates `user` holding `skeleton` (unless held).
pub fn create(ports: &Ports, user: &str, hash: &str, skeleton: &str) {
    ports
        .accounts
        .write(AccountChange::Create {
            user: user.into(),
            record: live(hash),
            skeleton: skeleton.into(),
        })
        .expect("create");
}

/// A created account is read back, and its skeleton is held by the first user to ask.
pub fn a_new_account_holds_its_skeleton_unless_someone_holds_it(ports: &Ports) {
    let a = &ports.accounts;
    assert_eq!(a.get("bob").unwrap(), None);
    assert_eq!(a.skeleton_holder("b0b").unwrap(), None);
    create(ports, "bob", "$h1", "b0b");
    assert_eq!(a.get("bob").unwrap(), Some(live("$h1")));
    assert_eq!(a.skeleton_holder("b0b").unwrap().as_deref(), Some("bob"));
    // A second id with the same skeleton is created, but does not take the skeleton over.
    create(ports, "BOB", "$h2", "b0b");
    assert_eq!(a.get("BOB").unwrap(), Some(live("$h2")));
    assert_eq!(a.skeleton_holder("b0b").unwrap().as_deref(), Some("bob"));
}

/// An update replaces the record; a removal writes the tombstone and marks the clean-up as
/// pending, which the log's pending purges list.
pub fn an_update_replaces_and_a_removal_leaves_a_tombstone_and_a_pending_purge(ports: &Ports) {
    let a = &ports.accounts;
    create(ports, "bob", "$h1", "b0b");
    a.write(AccountChange::Update {
        user: "bob".into(),
        record: live("$h3"),
    })
    .unwrap();
    assert_eq!(a.get("bob").unwrap(), Some(live("$h3")));
    assert!(!a.purge_pending("bob").unwrap());
    assert!(ports.log.pending_purges().unwrap().is_empty());
    let tombstone = AccountRecord {
        removed: Some(9),
        ..AccountRecord::default()
    };
    a.write(AccountChange::Remove {
        user: "bob".into(),
        tombstone: tombstone.clone(),
    })
    .unwrap();
    assert_eq!(a.get("bob").unwrap(), Some(tombstone.clone()));
    assert!(!a.get("bob").unwrap().unwrap().live());
    assert!(a.purge_pending("bob").unwrap());
    assert!(!a.purge_pending("carol").unwrap());
    assert_eq!(ports.log.pending_purges().unwrap(), vec!["bob"]);
    // The removed id keeps its skeleton: a look-alike stays refused.
    assert_eq!(a.skeleton_holder("b0b").unwrap().as_deref(), Some("bob"));
}

/// Accounts, live or removed, are listed in id order (bytes: upper case first), a page at a
/// time.
pub fn accounts_are_listed_in_id_order_and_paged(ports: &Ports) {
    let a = &ports.accounts;
    assert!(a.list(None, 10).unwrap().is_empty());
    create(ports, "bob", "$h1", "b0b");
    create(ports, "BOB", "$h2", "B0B");
    create(ports, "carol", "$h3", "car0l");
    let tombstone = AccountRecord {
        removed: Some(9),
        ..AccountRecord::default()
    };
    a.write(AccountChange::Remove {
        user: "bob".into(),
        tombstone: tombstone.clone(),
    })
    .unwrap();
    assert_eq!(
        a.list(None, 10).unwrap(),
        vec![
            ("BOB".to_string(), Some(live("$h2"))),
            ("bob".to_string(), Some(tombstone)),
            ("carol".to_string(), Some(live("$h3"))),
        ]
    );
    let page = a.list(Some("BOB"), 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, "bob");
    let users: Vec<String> = a
        .list(Some("bob"), 10)
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    assert_eq!(users, vec!["carol"]);
    assert!(a.list(Some("carol"), 10).unwrap().is_empty());
}

/// Indexing the accounts from before the index holds each skeleton for its user unless held
/// already, and marks the index complete.
pub fn the_skeleton_index_is_marked_complete_and_keeps_earlier_holders(ports: &Ports) {
    let a = &ports.accounts;
    create(ports, "first", "$h", "x");
    assert!(!a.skeletons_indexed().unwrap());
    a.write(AccountChange::IndexSkeletons(vec![
        ("x".into(), "second".into()),
        ("y".into(), "third".into()),
    ]))
    .unwrap();
    assert!(a.skeletons_indexed().unwrap());
    assert_eq!(a.skeleton_holder("x").unwrap().as_deref(), Some("first"));
    assert_eq!(a.skeleton_holder("y").unwrap().as_deref(), Some("third"));
    // Once more changes nothing.
    a.write(AccountChange::IndexSkeletons(Vec::new())).unwrap();
    assert!(a.skeletons_indexed().unwrap());
}

/// The record the log writes at the end of a removal is the accounts port's record.
pub fn an_account_record_the_log_writes_is_read_here(ports: &Ports) {
    create(ports, "bob", "$h1", "b0b");
    let tombstone = AccountRecord {
        removed: Some(9),
        floor: Some("1732790000123-00001-00003".into()),
        ..AccountRecord::default()
    };
    ports.commit(vec![Intent::Account {
        user: "bob".into(),
        record: tombstone.clone(),
    }]);
    assert_eq!(ports.accounts.get("bob").unwrap(), Some(tombstone));
}

/// `get_many` gives the records of the users that have one, live or removed, and nothing for
/// the others.
pub fn many_accounts_are_read_together(ports: &Ports) {
    let a = &ports.accounts;
    assert!(a.get_many(&[]).unwrap().is_empty());
    create(ports, "bob", "$h1", "b0b");
    create(ports, "carol", "$h2", "car0l");
    let tombstone = AccountRecord {
        removed: Some(9),
        ..AccountRecord::default()
    };
    a.write(AccountChange::Remove {
        user: "carol".into(),
        tombstone: tombstone.clone(),
    })
    .unwrap();
    let users: Vec<String> = ["bob", "carol", "dave", "bob"]
        .iter()
        .map(|u| u.to_string())
        .collect();
    let found = a.get_many(&users).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found.get("bob"), Some(&live("$h1")));
    assert_eq!(found.get("carol"), Some(&tombstone));
}
