//! Helpers for the bridge's tests: a store in a temporary directory seeded the way the
//! messaging committer leaves it (message, queue entry, summary, push job), an online switch,
//! and bridges wired to the fake services.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatd_embedded::keys;
use chatd_embedded::push::EmbeddedPush;
use chatd_kv::{Engine, EngineConfig, KvStore, Op};
use chatd_push_bridge::apns::ApnsAdapter;
use chatd_push_bridge::config::ServiceAccount;
use chatd_push_bridge::fcm::FcmAdapter;
use chatd_push_bridge::{
    Adapters, ApnsSettings, BridgeSettings, FcmSettings, OnlineCheck, PushBridge, PushStats,
};
use serde_json::{json, Value};

use crate::fake::{self, FakeApns, FakeFcm, WAIT};

/// Which users count as online.
#[derive(Default)]
pub struct Online(Mutex<HashSet<String>>);

impl Online {
    /// Marks `user` online or offline.
    pub fn set(&self, user: &str, online: bool) {
        let mut set = self.0.lock().unwrap();
        if online {
            set.insert(user.to_string());
        } else {
            set.remove(user);
        }
    }
}

impl OnlineCheck for Online {
    fn is_online(&self, user: &str) -> bool {
        self.0.lock().unwrap().contains(user)
    }
}

/// A sled store in a temporary directory.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn KvStore>,
}

impl TestStore {
    /// A new empty store.
    pub fn new() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> =
            chatd_kv::open(&EngineConfig::new(Engine::default(), dir.path().join("s"))).unwrap();
        TestStore { dir, store }
    }

    /// Writes what the committer writes for a 1:1 text message from `from` to `to` whose
    /// recipient is offline; returns the message id.
    pub fn message(&self, from: &str, to: &str, text: &str) -> String {
        self.message_at(from, to, text, now_ms())
    }

    /// Like [`TestStore::message`], accepted at `ms`.
    pub fn message_at(&self, from: &str, to: &str, text: &str, ms: u64) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{ms:013}-00001-{:05}",
            SEQ.fetch_add(1, Ordering::Relaxed) % 100_000
        );
        let conversation = keys::direct_conversation(from, to);
        let m = json!({"id": id, "from": from, "to": to, "type": "text", "text": text, "ts": ms});
        let summary_key = keys::summary(to, &conversation);
        let unread = self
            .store
            .get(&summary_key)
            .unwrap()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v["unread"].as_u64())
            .unwrap_or(0);
        let summary = json!({"peer": from, "last_id": id, "unread": unread + 1});
        self.store
            .apply(vec![
                Op::Put(keys::message(&id), m.to_string().into_bytes()),
                Op::Put(
                    format!("{}{id}", keys::queue_prefix(to)).into_bytes(),
                    vec![],
                ),
                Op::Put(summary_key, summary.to_string().into_bytes()),
                Op::Put(keys::push_job(to, &conversation, &id), vec![]),
            ])
            .unwrap();
        id
    }

    /// Writes what the committer writes for a group message from `from` to `group`, for one
    /// offline member `to`; returns the message id.
    pub fn group_message(&self, from: &str, group: &str, to: &str) -> String {
        let ms = now_ms();
        let id = format!("{ms:013}-00002-00000");
        let conversation = format!("g:{group}");
        let m = json!({"id": id, "from": from, "group": group, "type": "image", "media": "m_1", "ts": ms});
        let summary = json!({"peer": group, "last_id": id, "unread": 1});
        self.store
            .apply(vec![
                Op::Put(keys::message(&id), m.to_string().into_bytes()),
                Op::Put(
                    format!("{}{id}", keys::queue_prefix(to)).into_bytes(),
                    vec![],
                ),
                Op::Put(
                    keys::summary(to, &conversation),
                    summary.to_string().into_bytes(),
                ),
                Op::Put(keys::push_job(to, &conversation, &id), vec![]),
            ])
            .unwrap();
        id
    }

    /// How many push jobs are left.
    pub fn jobs(&self) -> usize {
        let p = keys::PUSH_JOBS_PREFIX;
        self.store
            .scan(p.as_bytes(), &keys::prefix_end(p), false, 1_000_000)
            .unwrap()
            .len()
    }
}

/// Wall-clock ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Test settings: a short collapse window and fast retries.
pub fn settings() -> BridgeSettings {
    BridgeSettings {
        collapse_window: Duration::from_millis(300),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(10),
        scan_interval: Duration::from_millis(200),
        ..BridgeSettings::default()
    }
}

/// The FCM settings for a fake.
pub fn fcm_settings(fcm: &FakeFcm) -> FcmSettings {
    FcmSettings {
        account: ServiceAccount::from_json(&fcm.service_account_json()).unwrap(),
        endpoint: fcm.uri(),
        token_uri: None,
        timeout: Duration::from_secs(10),
    }
}

/// The APNs settings for a fake.
pub fn apns_settings(apns: &FakeApns) -> ApnsSettings {
    ApnsSettings {
        key_pem: apns.key_pem.clone().into_bytes(),
        key_id: fake::KEY_ID.into(),
        team_id: fake::TEAM_ID.into(),
        topic: fake::TOPIC.into(),
        endpoint: apns.uri(),
        timeout: Duration::from_secs(10),
    }
}

/// Adapters for whichever fakes are given.
pub fn adapters(fcm: Option<&FakeFcm>, apns: Option<&FakeApns>, s: &BridgeSettings) -> Adapters {
    Adapters {
        fcm: fcm.map(|f| {
            Arc::new(FcmAdapter::new(&fcm_settings(f), s.ttl).unwrap())
                as Arc<dyn chatd_push_bridge::PushAdapter>
        }),
        apns: apns.map(|a| {
            Arc::new(ApnsAdapter::new(&apns_settings(a), s.ttl).unwrap())
                as Arc<dyn chatd_push_bridge::PushAdapter>
        }),
    }
}

/// Starts a bridge on `store` (through its own embedded adapter, as a new process would).
pub fn bridge(
    store: &TestStore,
    s: BridgeSettings,
    adapters: Adapters,
    online: Arc<Online>,
) -> Arc<PushBridge> {
    let push = Arc::new(EmbeddedPush::new(store.store.clone()));
    PushBridge::start(push.clone(), push, s, adapters, online)
}

/// Waits up to [`WAIT`] until `pred` holds for the bridge's counters; returns them.
pub async fn wait_stats(b: &PushBridge, pred: impl Fn(&PushStats) -> bool) -> PushStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = b.stats();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never matched: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to [`WAIT`] until no push job is left.
pub async fn wait_no_jobs(store: &TestStore) {
    let deadline = Instant::now() + WAIT;
    while store.jobs() > 0 {
        assert!(Instant::now() < deadline, "{} jobs left", store.jobs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 64-hex-digit APNs token derived from `seed`.
pub fn apns_token(seed: u8) -> String {
    format!("{:02x}", seed).repeat(32)
}
