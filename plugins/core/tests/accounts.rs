//! `Accounts`: add, password changes, removal, listing, verification, durability.

use std::sync::Arc;

use chatd_core::accounts::{AccountError, Accounts};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_kv::{Engine, EngineConfig, KvStore};

fn open(dir: &std::path::Path) -> (Arc<dyn KvStore>, Accounts) {
    let store = chatd_kv::open(&EngineConfig::new(Engine::default(), dir)).expect("open");
    let accounts = Accounts::new(Arc::new(EmbeddedAccounts::new(store.clone())));
    (store, accounts)
}

#[test]
fn account_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, accounts) = open(dir.path());
        accounts.add("bob", "pw-bob").expect("add bob");
        accounts.add("alice", "pw-alice").expect("add alice");
        assert!(matches!(
            accounts.add("bob", "other"),
            Err(AccountError::Exists)
        ));
        assert!(matches!(
            accounts.add("b/ob", "pw"),
            Err(AccountError::InvalidId(_))
        ));
        assert!(matches!(
            accounts.add("carol", ""),
            Err(AccountError::InvalidPassword(_))
        ));
        assert_eq!(accounts.list().expect("list"), vec!["alice", "bob"]);
        assert!(accounts.exists("bob").expect("exists"));
        assert!(!accounts.exists("carol").expect("exists"));
        assert!(!accounts.exists("no/such").expect("exists"));

        let record: serde_json::Value =
            serde_json::from_slice(&store.get(b"u/bob").expect("get").expect("record"))
                .expect("json");
        assert!(record["hash"]
            .as_str()
            .unwrap_or_default()
            .starts_with("$argon2id$"));
        assert!(record["created"].as_u64().unwrap_or(0) > 0);

        assert!(accounts.verify("bob", "pw-bob").expect("verify"));
        assert!(!accounts.verify("bob", "pw-alice").expect("verify"));
        assert!(!accounts.verify("nobody", "pw-bob").expect("verify"));
        assert!(!accounts.verify("bad id", "pw-bob").expect("verify"));

        accounts.set_password("bob", "new-pw").expect("set");
        assert!(accounts.verify("bob", "new-pw").expect("verify"));
        assert!(!accounts.verify("bob", "pw-bob").expect("verify"));
        assert!(matches!(
            accounts.set_password("carol", "pw"),
            Err(AccountError::NotFound)
        ));

        accounts.remove("alice").expect("remove");
        assert!(matches!(
            accounts.remove("alice"),
            Err(AccountError::NotFound)
        ));
        assert!(!accounts.verify("alice", "pw-alice").expect("verify"));
    }
    // Everything was flushed: a reopened store has it.
    let (_store, accounts) = open(dir.path());
    assert_eq!(accounts.list().expect("list"), vec!["bob"]);
    assert!(accounts.verify("bob", "new-pw").expect("verify"));
}

#[test]
fn removal_leaves_a_tombstone_until_reclaimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, accounts) = open(dir.path());
    accounts.add("bob", "pw-bob").expect("add bob");
    // Seen live first (as a send to bob sees him): the removal must still be seen at once.
    assert!(accounts.exists("bob").expect("exists"));
    accounts.remove("bob").expect("remove");
    assert!(!accounts.exists("bob").expect("exists"));
    assert!(!accounts.verify("bob", "pw-bob").expect("verify"));
    assert!(accounts.list().expect("list").is_empty());
    assert!(matches!(
        accounts.add("bob", "pw"),
        Err(AccountError::Removed)
    ));
    assert!(matches!(
        accounts.set_password("bob", "pw"),
        Err(AccountError::NotFound)
    ));
    // The clean-up has not run: no reclaim yet.
    assert!(store.get(b"x/purge/bob").expect("get").is_some());
    assert!(matches!(
        accounts.add_reclaiming("bob", "pw", true),
        Err(AccountError::RemovalPending)
    ));
    store
        .apply(vec![chatd_kv::Op::Delete(b"x/purge/bob".to_vec())])
        .expect("clean-up done");
    accounts
        .add_reclaiming("bob", "pw-new", true)
        .expect("reclaim");
    assert!(accounts.verify("bob", "pw-new").expect("verify"));
}

#[test]
fn shared_accounts_see_a_removal_by_another_process_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path())).expect("open");
    let port = Arc::new(EmbeddedAccounts::new(store));
    // Two nodes of a cluster sharing one database: `here` serves sends, `there` removes.
    let here = Accounts::shared(port.clone());
    let there = Accounts::shared(port);
    there.add("bob", "pw-bob").expect("add bob");
    assert!(here.exists("bob").expect("exists"));
    there.remove("bob").expect("remove");
    assert!(
        !here.exists("bob").expect("exists"),
        "a node must not keep an account live that another node removed"
    );
}

#[test]
fn lookalikes_are_refused_at_creation_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, accounts) = open(dir.path());
    // An account from before the look-alike index: indexed on the first add.
    store
        .apply(vec![chatd_kv::Op::Put(
            b"u/Carol".to_vec(),
            br#"{"hash":"$argon2id$unusable","created":0}"#.to_vec(),
        )])
        .expect("old account");
    accounts.add("alice", "pw").expect("add alice");
    for (lookalike, holder) in [("ALICE", "alice"), ("a1ice", "alice"), ("caro1", "Carol")] {
        match accounts.add(lookalike, "pw") {
            Err(AccountError::TooSimilar(h)) => assert_eq!(h, holder, "{lookalike}"),
            other => panic!("{lookalike}: {other:?}"),
        }
    }
    accounts.add("alicia", "pw").expect("add alicia");
    assert!(accounts.verify("alice", "pw").expect("verify"));
    assert!(!accounts.verify("ALICE", "pw").expect("verify"));
}
