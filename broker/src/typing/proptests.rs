//! Property tests of the typing indicator: a payload of any shape is forwarded as JSON on
//! `/typing` topics or refused with an error of the contract's shape.

use std::sync::{Arc, OnceLock};

use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_kv::{Engine, EngineConfig, KvStore, Op};
use proptest::prelude::*;
use serde_json::Value;

use super::{TypingLimiter, TypingOutcome};
use crate::proptest_support::{check_error, hostile_payload, proptest_config};

struct NoDelivery;

impl Deliver for NoDelivery {
    fn deliver(&self, _item: Outgoing) {}
    fn is_online(&self, _user: &str) -> bool {
        false
    }
}

/// A messaging service on a temporary store with users alice and bob (for typing).
struct World {
    _dir: tempfile::TempDir,
    accounts: Accounts,
    chat: Arc<Chat>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn KvStore> =
            chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path())).expect("store");
        for user in ["alice", "bob"] {
            store
                .apply(vec![Op::Put(
                    format!("u/{user}").into_bytes(),
                    br#"{"hash":"$argon2id$unusable","created":0}"#.to_vec(),
                )])
                .expect("account");
        }
        let accounts = Accounts::new(Arc::new(chatd_embedded::accounts::EmbeddedAccounts::new(
            store.clone(),
        )));
        let log = chatd_embedded::log::EmbeddedLog::open(store).expect("log");
        let chat = Chat::open(
            Arc::new(log),
            accounts.clone(),
            ChatConfig::default(),
            Arc::new(NoDelivery),
        )
        .expect("chat");
        World {
            _dir: dir,
            accounts,
            chat,
        }
    })
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn typing_answers_in_the_contract_shape(payload in hostile_payload()) {
        let w = world();
        // A fresh limiter per case: this is about parsing, not about the rate.
        let typing = TypingLimiter::new(1000);
        match typing.handle(&w.accounts, &w.chat, "alice", &payload) {
            TypingOutcome::Forward(items) => {
                for item in items {
                    prop_assert!(item.channel.topic(&item.user).ends_with("/typing"));
                    prop_assert!(serde_json::from_slice::<Value>(&item.payload).is_ok());
                }
            }
            TypingOutcome::Refuse(bytes) => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&v["typing"], &Value::Bool(true));
                check_error(&v["error"])?;
            }
        }
    }
}
