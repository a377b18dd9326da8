//! How many pushes per second the bridge sends to local fake FCM and APNs servers (the same
//! fakes the tests use, which verify every request's JWT, headers and payload).
//!
//! ```sh
//! cargo run --release -p chatd-push-bridge --example throughput -- --pushes 20000 --concurrency 64
//! ```
//!
//! It seeds a store with one due push job and one device token per user (half FCM, half APNs
//! unless `--platform fcm|apns`), starts the bridge, and times until every notification was
//! accepted. The fakes run on one thread of their own and the bridge on a two-thread runtime.

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_embedded::keys;
use chatd_embedded::push::EmbeddedPush;
use chatd_kv::{Engine, EngineConfig, KvStore, Op};
use chatd_push_bridge::apns::ApnsAdapter;
use chatd_push_bridge::config::ServiceAccount;
use chatd_push_bridge::fcm::FcmAdapter;
use chatd_push_bridge::{
    Adapters, ApnsSettings, BridgeSettings, FcmSettings, OnlineCheck, Platform, PushAdapter,
    PushBridge,
};
use fake::{FakeApns, FakeFcm};
use serde_json::json;

struct Nobody;

impl OnlineCheck for Nobody {
    fn is_online(&self, _user: &str) -> bool {
        false
    }
}

struct Args {
    pushes: usize,
    concurrency: usize,
    platform: Option<Platform>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        pushes: 20_000,
        concurrency: 64,
        platform: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pushes" => args.pushes = value.parse()?,
            "--concurrency" => args.concurrency = value.parse()?,
            "--platform" => {
                args.platform = Some(
                    Platform::parse(&value)
                        .ok_or_else(|| anyhow::anyhow!("--platform fcm|apns"))?,
                )
            }
            other => anyhow::bail!("unknown option {other} (--pushes, --concurrency, --platform)"),
        }
    }
    Ok(args)
}

/// Writes what the committer and `push.register` leave for `n` offline users: a message, its
/// queue entry and push job (accepted a minute ago, so due at once), and one token each.
fn seed(store: &dyn KvStore, n: usize, platform: Option<Platform>) -> anyhow::Result<()> {
    let ms = chatd_wire::ids::now_ms() - 60_000;
    let mut ops = Vec::new();
    for i in 0..n {
        let user = format!("user{i}");
        let id = format!("{ms:013}-00001-{:05}", i % 100_000);
        let conversation = keys::direct_conversation("alice", &user);
        let platform = platform.unwrap_or(if i % 2 == 0 {
            Platform::Fcm
        } else {
            Platform::Apns
        });
        let token = match platform {
            Platform::Fcm => format!("fcm-token-{i}"),
            Platform::Apns => format!("{i:064x}"),
        };
        let message =
            json!({"id": id, "from": "alice", "to": user, "type": "text", "text": "hi", "ts": ms});
        let record = json!({"platform": platform.name(), "device": null, "ts": ms});
        ops.extend([
            Op::Put(keys::message(&id), message.to_string().into_bytes()),
            Op::Put(
                format!("{}{id}", keys::queue_prefix(&user)).into_bytes(),
                vec![],
            ),
            Op::Put(keys::push_job(&user, &conversation, &id), vec![]),
            Op::Put(
                keys::push_token(&user, &token),
                record.to_string().into_bytes(),
            ),
            Op::Put(keys::push_token_owner(&token), user.clone().into_bytes()),
        ]);
        if ops.len() >= 5000 {
            store.apply(std::mem::take(&mut ops))?;
        }
    }
    store.apply(ops)?;
    store.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let fcm = FakeFcm::start().await;
    let apns = FakeApns::start().await;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn KvStore> = chatd_kv::open(&EngineConfig::new(
        Engine::default(),
        dir.path().join("store"),
    ))?;
    seed(store.as_ref(), args.pushes, args.platform)?;

    let settings = BridgeSettings {
        concurrency: args.concurrency,
        ..BridgeSettings::default()
    };
    let timeout = Duration::from_secs(30);
    let fcm_adapter = FcmAdapter::new(
        &FcmSettings {
            account: ServiceAccount::from_json(&fcm.service_account_json())?,
            endpoint: fcm.uri(),
            token_uri: None,
            timeout,
        },
        settings.ttl,
    )?;
    let apns_adapter = ApnsAdapter::new(
        &ApnsSettings {
            key_pem: apns.key_pem.clone().into_bytes(),
            key_id: fake::KEY_ID.into(),
            team_id: fake::TEAM_ID.into(),
            topic: fake::TOPIC.into(),
            endpoint: apns.uri(),
            timeout,
        },
        settings.ttl,
    )?;
    let adapters = Adapters {
        fcm: Some(Arc::new(fcm_adapter) as Arc<dyn PushAdapter>),
        apns: Some(Arc::new(apns_adapter) as Arc<dyn PushAdapter>),
    };

    let start = Instant::now();
    let push = Arc::new(EmbeddedPush::new(store));
    let bridge = PushBridge::start(push.clone(), push, settings, adapters, Arc::new(Nobody));
    let deadline = start + Duration::from_secs(600);
    loop {
        let s = bridge.stats();
        if s.sent + s.failed + s.dropped >= args.pushes as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not done after 10 minutes: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let stats = bridge.stats();
    bridge.shutdown().await;
    let errors = fcm.errors().len() + apns.errors().len();
    println!(
        "{} pushes ({} FCM, {} APNs) in {:.2} s: {:.0} pushes/s (concurrency {}; sent {}, failed {}, retried {}, dropped {}; malformed requests {errors})",
        args.pushes,
        fcm.pushes().len(),
        apns.pushes().len(),
        elapsed.as_secs_f64(),
        args.pushes as f64 / elapsed.as_secs_f64(),
        args.concurrency,
        stats.sent,
        stats.failed,
        stats.retried,
        stats.dropped,
    );
    anyhow::ensure!(
        errors == 0 && stats.sent == args.pushes as u64,
        "not every push was clean"
    );
    Ok(())
}
