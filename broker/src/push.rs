//! The broker's side of push notifications: builds the push bridge from `[push]` (reading the
//! credential files, with errors that name the key), answers its online check from the hub
//! (from presence in a cluster, which knows every node's users),
//! routes `push.*` requests to it, and renders its counters for `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chatd_core::outbox::Deliver;
use chatd_core::ports::push::{PushJobs, PushTokens};
use chatd_push_bridge::apns::ApnsAdapter;
use chatd_push_bridge::config::{PushConfig, ServiceAccount, FCM_ENDPOINT};
use chatd_push_bridge::fcm::FcmAdapter;
use chatd_push_bridge::{
    Adapters, ApnsSettings, BridgeSettings, FcmSettings, OnlineCheck, PushAdapter, PushBridge,
    PushStats,
};

use crate::hub::Hub;
use crate::presence::Presence;

impl OnlineCheck for Hub {
    fn is_online(&self, user: &str) -> bool {
        Deliver::is_online(self, user)
    }
}

impl OnlineCheck for Presence {
    fn is_online(&self, user: &str) -> bool {
        Presence::is_online(self, user)
    }
}

/// Builds the adapters `[push.fcm]` and `[push.apns]` ask for, reading their key files; any
/// problem is a start-up error naming the key.
fn adapters(cfg: &PushConfig, s: &BridgeSettings) -> Result<Adapters> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut adapters = Adapters::default();
    if let Some(fcm) = &cfg.fcm {
        let path = &fcm.service_account;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("push.fcm.service_account: cannot read {}", path.display()))?;
        let account = ServiceAccount::from_json(&text)
            .with_context(|| format!("push.fcm.service_account: {}", path.display()))?;
        let settings = FcmSettings {
            account,
            endpoint: fcm
                .endpoint
                .clone()
                .unwrap_or_else(|| FCM_ENDPOINT.to_string()),
            token_uri: fcm.token_uri.clone(),
            timeout,
        };
        let adapter = FcmAdapter::new(&settings, s.ttl)
            .with_context(|| format!("push.fcm.service_account: {}", path.display()))?;
        adapters.fcm = Some(Arc::new(adapter) as Arc<dyn PushAdapter>);
    }
    if let Some(apns) = &cfg.apns {
        let path = &apns.key_file;
        let key_pem = std::fs::read(path)
            .with_context(|| format!("push.apns.key_file: cannot read {}", path.display()))?;
        let settings = ApnsSettings {
            key_pem,
            key_id: apns.key_id.clone(),
            team_id: apns.team_id.clone(),
            topic: apns.topic.clone(),
            endpoint: apns
                .endpoint
                .clone()
                .unwrap_or_else(|| apns.environment.endpoint().to_string()),
            timeout,
        };
        let adapter = ApnsAdapter::new(&settings, s.ttl)
            .with_context(|| format!("push.apns.key_file: {}", path.display()))?;
        adapters.apns = Some(Arc::new(adapter) as Arc<dyn PushAdapter>);
    }
    Ok(adapters)
}

/// Starts the bridge for `[push]` on `jobs` and `tokens`, asking `online` whether a user has a
/// device connected (the hub; in a cluster, presence, which knows every node), and has the
/// hub wake it whenever a message is queued for a user with no session.
pub fn start(
    cfg: &PushConfig,
    jobs: Arc<dyn PushJobs>,
    tokens: Arc<dyn PushTokens>,
    hub: &Arc<Hub>,
    online: Arc<dyn OnlineCheck>,
) -> Result<Arc<PushBridge>> {
    let s = cfg.bridge_settings();
    let adapters = adapters(cfg, &s)?;
    let bridge = PushBridge::start(jobs, tokens, s, adapters, online);
    // A weak handle: the bridge may hold the hub (its online check), so the hub must not keep
    // the bridge alive.
    let weak = Arc::downgrade(&bridge);
    hub.on_offline_delivery(Box::new(move |_user| {
        if let Some(bridge) = weak.upgrade() {
            bridge.wake();
        }
    }));
    Ok(bridge)
}

/// The bridge's counters as Prometheus text (zeros when push is off).
pub fn render_metrics(stats: &PushStats) -> String {
    let mut out = String::new();
    let lines = [
        (
            "chatd_push_sent_total",
            "Notifications accepted by FCM or APNs.",
            stats.sent,
        ),
        (
            "chatd_push_failed_total",
            "Notifications refused for good (including invalid tokens).",
            stats.failed,
        ),
        (
            "chatd_push_retried_total",
            "Push requests retried after 429, 5xx or network errors.",
            stats.retried,
        ),
        (
            "chatd_push_dropped_total",
            "Notifications given up: retries exhausted or no adapter for the token's platform.",
            stats.dropped,
        ),
        (
            "chatd_push_skipped_total",
            "Pushes not sent because the user came online or got the messages first.",
            stats.skipped,
        ),
        (
            "chatd_push_tokens_deleted_total",
            "Device tokens deleted because the push service called them invalid.",
            stats.tokens_deleted,
        ),
    ];
    for (name, help, value) in lines {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_every_counter() {
        let text = render_metrics(&PushStats {
            sent: 3,
            ..PushStats::default()
        });
        for name in ["sent", "failed", "retried", "dropped"] {
            assert!(
                text.contains(&format!("chatd_push_{name}_total ")),
                "{text}"
            );
        }
        assert!(text.contains("chatd_push_sent_total 3"));
    }
}
