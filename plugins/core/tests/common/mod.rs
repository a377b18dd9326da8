//! Shared test fixtures: a store wrapper that counts, gates and fails flushes, a recording
//! deliverer, and a ready-made chat service on a temporary sled store.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_kv::{Engine, EngineConfig, KvPair, KvStore, Op, StoreError};
use serde_json::Value;

/// A [`KvStore`] around a sled store that counts flushes, can hold flushes until released
/// and can be told to fail.
pub struct TestStore {
    inner: Arc<dyn KvStore>,
    pub flushes: AtomicUsize,
    pub applies: AtomicUsize,
    pub fail_apply: AtomicBool,
    pub fail_flush: AtomicBool,
    gate: Mutex<bool>,
    gate_cv: Condvar,
}

/// Opens sled, waiting out the moment in which a just-dropped handle in this same process still
/// holds the directory lock (sled's background threads let go of it shortly after the drop).
fn open_sled(path: &std::path::Path) -> Arc<dyn KvStore> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match chatd_kv::open(&EngineConfig::new(Engine::default(), path)) {
            Ok(store) => return store,
            Err(chatd_kv::StoreError::Locked) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("open sled: {e}"),
        }
    }
}

impl TestStore {
    pub fn open(path: &std::path::Path) -> Arc<TestStore> {
        Arc::new(TestStore {
            inner: open_sled(path),
            flushes: AtomicUsize::new(0),
            applies: AtomicUsize::new(0),
            fail_apply: AtomicBool::new(false),
            fail_flush: AtomicBool::new(false),
            gate: Mutex::new(true),
            gate_cv: Condvar::new(),
        })
    }

    /// Makes every later flush wait until [`TestStore::open_gate`].
    pub fn close_gate(&self) {
        *self.gate.lock().expect("gate") = false;
    }

    pub fn open_gate(&self) {
        *self.gate.lock().expect("gate") = true;
        self.gate_cv.notify_all();
    }

    /// True when `key` is in the store (applied, flushed or not).
    pub fn has(&self, key: &[u8]) -> bool {
        matches!(self.inner.get(key), Ok(Some(_)))
    }

    pub fn flush_count(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl KvStore for TestStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.inner.scan(start, end, reverse, limit)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if self.fail_apply.load(Ordering::SeqCst) {
            return Err(StoreError::Other("injected apply failure".into()));
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(ops)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut open = self.gate.lock().expect("gate");
        while !*open {
            open = self.gate_cv.wait(open).expect("gate");
        }
        drop(open);
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(StoreError::Other("injected flush failure".into()));
        }
        self.inner.flush()?;
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Records every delivery.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Outgoing>>);

impl Deliver for Recorder {
    fn deliver(&self, item: Outgoing) {
        self.0.lock().expect("recorder").push(item);
    }

    fn is_online(&self, _user: &str) -> bool {
        false
    }
}

impl Recorder {
    pub fn items(&self) -> Vec<Outgoing> {
        self.0.lock().expect("recorder").clone()
    }
}

/// A chat service on a fresh temporary store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<TestStore>,
    pub accounts: Accounts,
    pub chat: Arc<Chat>,
    pub rec: Arc<Recorder>,
}

impl Env {
    pub fn new(users: &[&str]) -> Env {
        Env::with_config(users, ChatConfig::default())
    }

    pub fn with_config(users: &[&str], cfg: ChatConfig) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, accounts, chat, rec) = start(dir.path(), cfg);
        for user in users {
            add_account(&store, user);
        }
        Env {
            dir,
            store,
            accounts,
            chat,
            rec,
        }
    }

    /// Sends and parses the ack.
    pub async fn send(&self, from: &str, payload: &str) -> Value {
        parse(&self.chat.send(from, payload.as_bytes()).await)
    }

    /// Sends a text message and returns its id.
    pub async fn text(&self, from: &str, to: &str, cid: &str, text: &str) -> String {
        let ack = self
            .send(
                from,
                &serde_json::json!({"cid": cid, "to": to, "type": "text", "text": text})
                    .to_string(),
            )
            .await;
        ack["id"]
            .as_str()
            .unwrap_or_else(|| panic!("send refused: {ack}"))
            .to_string()
    }

    /// The deliveries once there are `n` of them (deliveries follow the acks, so a test
    /// that just got its ack may have to wait a moment).
    pub fn delivered(&self, n: usize) -> Vec<Outgoing> {
        wait_until(|| self.rec.items().len() >= n);
        self.rec.items()
    }

    pub async fn rpc(&self, me: &str, request: Value) -> Value {
        parse(&self.chat.rpc(me, request.to_string().as_bytes()).await)
    }
}

/// Opens a store and starts the service on it.
pub fn start(
    path: &std::path::Path,
    cfg: ChatConfig,
) -> (Arc<TestStore>, Accounts, Arc<Chat>, Arc<Recorder>) {
    let store = TestStore::open(path);
    let accounts = Accounts::new(Arc::new(EmbeddedAccounts::new(store.clone())));
    let rec = Arc::new(Recorder::default());
    let log = chatd_embedded::log::EmbeddedLog::open(store.clone()).expect("log");
    let chat = Chat::open(Arc::new(log), accounts.clone(), cfg, rec.clone()).expect("chat");
    (store, accounts, chat, rec)
}

/// Creates an account record directly (argon2 hashing is slow in debug builds; the account
/// module's own tests go through `Accounts::add`).
pub fn add_account(store: &TestStore, user: &str) {
    store
        .apply(vec![Op::Put(
            format!("u/{user}").into_bytes(),
            br#"{"hash":"$argon2id$unusable","created":0}"#.to_vec(),
        )])
        .expect("add account");
}

pub fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Waits (bounded) until `cond` holds.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
