//! `Accounts`: add, password changes, removal, listing, verification, durability.

use std::sync::Arc;

use chatd_plugins::accounts::{AccountError, Accounts};
use chatd_plugins::store::{KvStore, SledStore};

fn open(dir: &std::path::Path) -> (Arc<SledStore>, Accounts) {
    let store = Arc::new(SledStore::open(dir).expect("open"));
    (store.clone(), Accounts::new(store))
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
