//! Process counters, rendered as Prometheus text on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chatd_core::messaging::ChatStats;
use chatd_kv::StoreHealth;

use crate::conncache::CacheHealth;

/// Counters updated by the session layer.
#[derive(Default)]
pub struct Metrics {
    /// Sessions past CONNACK.
    pub connections: AtomicI64,
    /// Connections accepted since start (before authentication).
    pub accepted_total: AtomicU64,
    /// CONNECTs refused (credentials, client id, will, limits).
    pub refused_total: AtomicU64,
    /// Connections closed for a protocol error or a forbidden publish.
    pub protocol_errors_total: AtomicU64,
    /// PUBLISH packets received from clients.
    pub publishes_in_total: AtomicU64,
    /// PUBLISH packets written to clients.
    pub publishes_out_total: AtomicU64,
    /// SUBSCRIBE filters refused.
    pub subscribe_refused_total: AtomicU64,
    /// CONNECTs refused by the failed-login limits, without checking credentials.
    pub logins_rate_limited_total: AtomicU64,
    /// Sockets closed unread because their source had too many pending handshakes.
    pub handshakes_refused_total: AtomicU64,
    /// Sessions closed because their client read nothing for `limits.write_timeout_secs`.
    pub write_timeouts_total: AtomicU64,
    /// Sessions closed because a QoS 1 PUBLISH went unacknowledged for `limits.ack_timeout_secs`.
    pub ack_timeouts_total: AtomicU64,
    /// SUBSCRIBE filters refused because a per-packet or per-session limit was reached.
    pub subscriptions_over_quota_total: AtomicU64,
    /// Messages not written because they were larger than the client's Maximum Packet Size.
    pub publishes_too_large_total: AtomicU64,
    /// Replies and acks written at QoS 0 because the client's receive window and the session's
    /// queue of waiting replies were both full.
    pub replies_qos0_total: AtomicU64,
    /// Sends, receipts and requests refused `rate_limited` by the per-user write rates.
    pub writes_rate_limited_total: AtomicU64,
    /// CONNECTs refused because the user had `limits.max_sessions_per_user` connections.
    pub sessions_quota_refused_total: AtomicU64,
    /// Persistent sessions not kept because `limits.max_kept_sessions` was reached (3.1.1
    /// CONNECTs refused, 5.0 ones told Session Expiry 0).
    pub kept_sessions_refused_total: AtomicU64,
    /// HTTP connections closed at once because the listener or their source address was full.
    pub http_refused_total: AtomicU64,
    /// HTTP connections closed by the header or idle timeout.
    pub http_timeouts_total: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of these counters, the store's and the connection cache's.
    pub fn render(
        &self,
        chat: &ChatStats,
        sessions: usize,
        cache: &CacheHealth,
        cache_dropped: u64,
        storage: &StoreHealth,
    ) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as i128;
        line(
            "chatd_connections",
            "gauge",
            "Authenticated MQTT sessions.",
            self.connections.load(Ordering::Relaxed) as i128,
        );
        line(
            "chatd_sessions_registered",
            "gauge",
            "Sessions known to the delivery hub.",
            sessions as i128,
        );
        line(
            "chatd_connections_accepted_total",
            "counter",
            "Sockets accepted.",
            get(&self.accepted_total),
        );
        line(
            "chatd_connections_refused_total",
            "counter",
            "CONNECTs refused.",
            get(&self.refused_total),
        );
        line(
            "chatd_protocol_errors_total",
            "counter",
            "Connections closed for protocol errors or forbidden publishes.",
            get(&self.protocol_errors_total),
        );
        line(
            "chatd_publishes_in_total",
            "counter",
            "PUBLISH packets from clients.",
            get(&self.publishes_in_total),
        );
        line(
            "chatd_publishes_out_total",
            "counter",
            "PUBLISH packets to clients.",
            get(&self.publishes_out_total),
        );
        line(
            "chatd_subscribe_refused_total",
            "counter",
            "Subscription filters refused.",
            get(&self.subscribe_refused_total),
        );
        line(
            "chatd_logins_rate_limited_total",
            "counter",
            "CONNECTs refused by the failed-login limits (credentials not checked).",
            get(&self.logins_rate_limited_total),
        );
        line(
            "chatd_handshakes_refused_total",
            "counter",
            "Sockets closed because their address had too many pending handshakes.",
            get(&self.handshakes_refused_total),
        );
        line(
            "chatd_write_timeouts_total",
            "counter",
            "Sessions closed because the client read nothing for limits.write_timeout_secs.",
            get(&self.write_timeouts_total),
        );
        line(
            "chatd_ack_timeouts_total",
            "counter",
            "Sessions closed because a QoS 1 PUBLISH went unacknowledged for limits.ack_timeout_secs.",
            get(&self.ack_timeouts_total),
        );
        line(
            "chatd_subscriptions_over_quota_total",
            "counter",
            "Subscription filters refused by limits.max_filters_per_subscribe, max_subscriptions or max_presence_watches.",
            get(&self.subscriptions_over_quota_total),
        );
        line(
            "chatd_publishes_too_large_total",
            "counter",
            "Messages not written because they exceed the client's Maximum Packet Size.",
            get(&self.publishes_too_large_total),
        );
        line(
            "chatd_replies_qos0_total",
            "counter",
            "Replies written at QoS 0 because the client's receive maximum and the wait queue were full.",
            get(&self.replies_qos0_total),
        );
        line(
            "chatd_writes_rate_limited_total",
            "counter",
            "Sends, receipts and requests refused by limits.sends_per_sec / requests_per_sec.",
            get(&self.writes_rate_limited_total),
        );
        line(
            "chatd_sessions_quota_refused_total",
            "counter",
            "CONNECTs refused because the user had limits.max_sessions_per_user connections.",
            get(&self.sessions_quota_refused_total),
        );
        line(
            "chatd_kept_sessions_refused_total",
            "counter",
            "Persistent MQTT sessions not kept because limits.max_kept_sessions was reached.",
            get(&self.kept_sessions_refused_total),
        );
        line(
            "chatd_http_connections_refused_total",
            "counter",
            "HTTP connections closed unread: limits.http_max_connections or http_connections_per_ip reached.",
            get(&self.http_refused_total),
        );
        line(
            "chatd_http_timeouts_total",
            "counter",
            "HTTP connections closed by limits.http_header_timeout_secs or http_idle_timeout_secs.",
            get(&self.http_timeouts_total),
        );
        line(
            "chatd_messages_stored_total",
            "counter",
            "Messages durably stored.",
            chat.messages_stored as i128,
        );
        line(
            "chatd_store_batches_total",
            "counter",
            "Group-commit batches flushed.",
            chat.batches as i128,
        );
        line(
            "chatd_duplicate_cids_total",
            "counter",
            "Sends answered from the cid map.",
            chat.duplicate_cids as i128,
        );
        line(
            "chatd_sends_rejected_total",
            "counter",
            "Sends refused with an error ack.",
            chat.rejected as i128,
        );
        line(
            "chatd_receipts_stored_total",
            "counter",
            "Receipt status changes stored and forwarded.",
            chat.receipts_stored as i128,
        );
        line(
            "chatd_receipts_refused_total",
            "counter",
            "Receipt ids refused.",
            chat.receipts_refused as i128,
        );
        line(
            "chatd_storage_healthy",
            "gauge",
            "1 while the store takes durable writes; 0 while it fails (nothing is acknowledged).",
            storage.is_healthy() as i128,
        );
        line(
            "chatd_storage_failures_total",
            "counter",
            "Times the store started failing (a write or flush error).",
            storage.failures() as i128,
        );
        line(
            "chatd_storage_recoveries_total",
            "counter",
            "Times a failing store recovered without a restart.",
            storage.recoveries() as i128,
        );
        line(
            "chatd_connection_cache_up",
            "gauge",
            "1 when the connection cache's backend answers, else 0.",
            cache.ok as i128,
        );
        line(
            "chatd_connection_cache_dropped_total",
            "counter",
            "Connection cache updates dropped because its queue was full.",
            cache_dropped as i128,
        );
        out
    }
}

/// The gauge of queue entries the embedded log holds in memory (at most its `MAX_HELD`); one
/// that stays near the bound says devices are slow to acknowledge.
pub fn render_held(held: usize) -> String {
    let max = chatd_embedded::log::MAX_HELD;
    format!(
        "# HELP chatd_queue_entries_held Queue entries held in memory, not yet written as records (at most {max}).\n\
         # TYPE chatd_queue_entries_held gauge\n\
         chatd_queue_entries_held {held}\n"
    )
}
