//! Messaging on a failing store (the server's `GuardedStore`, made to fail by the
//! `FaultyStore` test hook): every send, receipt and group change is refused `unavailable`,
//! nothing is acknowledged, reads go on, and messaging recovers by itself once the store
//! works again, also when the failure was met by another writer while no send came.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_embedded::log::EmbeddedLog;
use chatd_kv::{Engine, EngineConfig, GuardedStore, KvStore, Op};
use common::{parse, Recorder};
use serde_json::{json, Value};

/// A chat service on a guarded fjall store whose faults `control` switches.
struct Failing {
    _dir: tempfile::TempDir,
    control: PathBuf,
    store: Arc<GuardedStore>,
    chat: Arc<Chat>,
}

impl Failing {
    fn new() -> Failing {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = dir.path().join("faults");
        let store = Arc::new(
            GuardedStore::open(
                EngineConfig::new(Engine::Fjall, dir.path().join("store")),
                Some(control.clone()),
            )
            .expect("open"),
        );
        for user in ["alice", "bob"] {
            store
                .apply(vec![Op::Put(
                    format!("u/{user}").into_bytes(),
                    br#"{"hash":"$argon2id$unusable","created":0}"#.to_vec(),
                )])
                .expect("add account");
        }
        let accounts = Accounts::new(Arc::new(EmbeddedAccounts::new(store.clone())));
        let log = EmbeddedLog::open(store.clone()).expect("log");
        let chat = Chat::open(
            Arc::new(log),
            accounts,
            ChatConfig::default(),
            Arc::new(Recorder::default()),
        )
        .expect("chat");
        Failing {
            _dir: dir,
            control,
            store,
            chat,
        }
    }

    fn faults(&self, what: &str) {
        std::fs::write(&self.control, what).expect("write the control file");
    }

    async fn send(&self, cid: &str) -> Value {
        let msg = json!({"cid": cid, "to": "bob", "type": "text", "text": cid});
        parse(&self.chat.send("alice", msg.to_string().as_bytes()).await)
    }

    /// Sends `cid` until it is acknowledged (the committer probes once a second).
    async fn send_until_sent(&self, cid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ack = self.send(cid).await;
            if ack["status"] == "sent" {
                return ack;
            }
            assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
            assert!(Instant::now() < deadline, "no recovery: {ack}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_failing_store_refuses_everything_then_recovers() {
    let env = Failing::new();
    let first = env.send("c1").await;
    assert_eq!(first["status"], "sent", "{first}");
    let id = first["id"].as_str().expect("id").to_string();

    env.faults("eio");
    let ack = env.send("c2").await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    assert!(env.store.failing());
    // While failing, jobs are answered at once, without waiting for the next probe.
    let start = Instant::now();
    let ack = env.send("c3").await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    assert!(start.elapsed() < Duration::from_millis(500));
    let refusal = env
        .chat
        .receipt(
            "bob",
            json!({"ids": [id], "status": "read"})
                .to_string()
                .as_bytes(),
        )
        .await
        .map(|b| parse(&b))
        .expect("the receipt is refused");
    assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
    let reply = parse(
        &env.chat
            .rpc(
                "alice",
                json!({"rid": "g", "op": "group.create", "name": "g", "members": ["bob"]})
                    .to_string()
                    .as_bytes(),
            )
            .await,
    );
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    // Reads go on.
    let history = parse(
        &env.chat
            .rpc(
                "alice",
                json!({"rid": "h", "op": "history", "with": "bob"})
                    .to_string()
                    .as_bytes(),
            )
            .await,
    );
    assert_eq!(history["ok"], true, "{history}");
    assert_eq!(
        history["result"]["messages"].as_array().map(Vec::len),
        Some(1)
    );

    env.faults("");
    env.send_until_sent("c2").await;
    assert!(!env.store.failing());
    assert!(env
        .chat
        .receipt(
            "bob",
            json!({"ids": [id], "status": "read"})
                .to_string()
                .as_bytes()
        )
        .await
        .is_none());
    assert_eq!(env.store.health().recoveries(), 1);
}

#[tokio::test]
async fn a_failure_met_by_another_writer_is_recovered_without_a_send() {
    let env = Failing::new();
    assert_eq!(env.send("c1").await["status"], "sent");
    env.faults("enospc");
    // As a last-seen or account write would.
    assert!(env
        .store
        .apply(vec![Op::Put(b"p/alice".to_vec(), b"1".to_vec())])
        .is_err());
    assert!(env.store.failing());
    env.faults("");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.store.failing() {
        assert!(
            Instant::now() < deadline,
            "the idle committer did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.send("c2").await["status"], "sent");
}
