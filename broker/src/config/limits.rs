//! `[limits]`: the protective limits of the broker (connections, packets, sessions, rates, the
//! HTTP listener) and the messaging limits it passes on to the chat core, which owns their
//! checks ([`ChatConfig::validate`]).

use chatd_core::config::{first_invalid, InvalidSetting};
use chatd_core::messaging::ChatConfig;
use serde::Deserialize;

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections held at once; more are refused (CONNACK "server unavailable").
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// Seconds a new socket has to send its CONNECT.
    pub connect_timeout_secs: u64,
    /// QoS 1 messages in flight from the server to one session.
    pub max_inflight: u16,
    /// Largest message text, in bytes.
    pub max_text_bytes: usize,
    /// Typing indicators per second per user (also the burst); more are refused.
    pub typing_per_sec: u32,
    /// Most members of one group, the creator included; adding more is refused `too_large`.
    pub max_group_members: usize,
    /// Group recipients queued per store batch; the rest of a big group follows in later
    /// batches, so 1:1 messages never wait for a whole group.
    pub fanout_slice: usize,
    /// Most groups one user may belong to at once; creating or adding with a user already in
    /// this many is refused `too_large`.
    pub max_groups_per_user: usize,
    /// Groups one user may create per hour (also the burst); more are refused `rate_limited`
    /// (0: no limit).
    pub groups_created_per_hour: u32,
    /// Failed logins (password or JWT) per user within `login_failure_window_secs`; past it the
    /// user's CONNECTs are refused without checking the password (0: no per-user limit).
    pub login_failures_per_user: u32,
    /// Failed logins per source address (IPv4 address, IPv6 /64) within the window; past it
    /// that address's CONNECTs are refused without checking the password (0: no limit).
    pub login_failures_per_ip: u32,
    /// The window over which the login failure budgets refill, in seconds.
    pub login_failure_window_secs: u64,
    /// Sockets one source address may hold open before their CONNECT is answered; more are
    /// closed at once (0: no limit).
    pub max_handshakes_per_ip: usize,
    /// Seconds a session's writes may make no progress (the client reads nothing) before the
    /// connection is closed; what it had not acknowledged stays queued.
    pub write_timeout_secs: u64,
    /// Bytes one session may hold for its client: deliveries waiting in its mailbox plus QoS 1
    /// PUBLISHes written and not yet acknowledged. Past it the session takes no more deliveries
    /// (queued ones are re-read from the store when there is room).
    pub max_session_buffer_bytes: usize,
    /// Seconds a QoS 1 PUBLISH may go unacknowledged before the session is closed; what it
    /// had not acknowledged stays queued. Sessions with nothing in flight are never closed
    /// by it.
    pub ack_timeout_secs: u64,
    /// Filters one SUBSCRIBE may add; the rest of that packet's filters are refused (SUBACK
    /// 0x97 quota exceeded, 3.1.1 0x80).
    pub max_filters_per_subscribe: usize,
    /// `user/{me}/…` filters one session may hold; new ones past it are refused the same way.
    pub max_subscriptions: usize,
    /// `presence/{user}` subscriptions one session may hold; new ones past it are refused.
    pub max_presence_watches: usize,
    /// `chat/{me}/send` publishes per second per user, over all of the user's connections;
    /// more are answered `rate_limited`.
    pub sends_per_sec: u32,
    /// Sends a user may make at once after a quiet spell (the bucket's size).
    pub sends_burst: u32,
    /// `chat/{me}/receipt` and `chat/{me}/rpc` publishes per second per user, together;
    /// more are answered `rate_limited`.
    pub requests_per_sec: u32,
    /// Receipts and requests a user may make at once after a quiet spell.
    pub requests_burst: u32,
    /// Connections of one user at once (distinct client ids); more CONNECTs are refused
    /// (3.1.1 code 3, 5.0 0x97 quota exceeded). A CONNECT that takes over a client id already
    /// connected is not refused.
    pub max_sessions_per_user: usize,
    /// The longest a persistent MQTT session outlives its connection, in seconds: a 5.0
    /// client's Session Expiry Interval is cut to this (and CONNACK says so), and a 3.1.1
    /// session with CleanSession 0 is discarded after this long without a connection.
    pub max_session_expiry_secs: u32,
    /// Persistent sessions kept per user (distinct client ids); a new one beyond this
    /// discards the user's session that ended longest ago.
    pub max_kept_sessions_per_user: usize,
    /// Persistent sessions kept on the node in all; beyond this a new one is refused
    /// (5.0: CONNACK says Session Expiry 0, the session ends with its connection; 3.1.1:
    /// CONNACK code 3).
    pub max_kept_sessions: usize,
    /// Connections the HTTP listener holds at once; more are answered 503 and closed. Its own
    /// share of the file descriptors, so HTTP clients can never use up those of MQTT.
    pub http_max_connections: usize,
    /// HTTP connections one source address may hold at once (0: no limit).
    pub http_connections_per_ip: usize,
    /// Seconds an HTTP connection has to send a whole request head, counted from its opening
    /// or from the end of the previous response (so it also ends idle keep-alive connections).
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP request may move no byte either way (a stalled upload body, a download
    /// nobody reads) while the server is not working on it; then the connection is closed.
    pub http_idle_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            connect_timeout_secs: 10,
            max_inflight: 100,
            max_text_bytes: 16 * 1024,
            typing_per_sec: 5,
            max_group_members: 1024,
            fanout_slice: 64,
            max_groups_per_user: 512,
            groups_created_per_hour: 60,
            login_failures_per_user: 10,
            login_failures_per_ip: 30,
            login_failure_window_secs: 60,
            max_handshakes_per_ip: 512,
            write_timeout_secs: 30,
            max_session_buffer_bytes: 1024 * 1024,
            ack_timeout_secs: 60,
            max_filters_per_subscribe: 64,
            max_subscriptions: 256,
            max_presence_watches: 1024,
            sends_per_sec: 20,
            sends_burst: 60,
            requests_per_sec: 50,
            requests_burst: 200,
            max_sessions_per_user: 16,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_kept_sessions_per_user: 16,
            max_kept_sessions: 100_000,
            http_max_connections: 4096,
            http_connections_per_ip: 128,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 30,
        }
    }
}

impl LimitsConfig {
    /// The messaging settings these limits set; the node id and the switches that depend on
    /// what else runs keep their defaults.
    pub fn chat(&self) -> ChatConfig {
        ChatConfig {
            max_text_bytes: self.max_text_bytes,
            max_group_members: self.max_group_members,
            fanout_slice: self.fanout_slice,
            max_groups_per_user: self.max_groups_per_user,
            groups_created_per_hour: self.groups_created_per_hour,
            // Half the packet limit: the topic, the reply envelope and any client with a
            // slightly smaller limit still have room.
            max_reply_bytes: self.max_packet_size / 2,
            ..ChatConfig::default()
        }
    }

    /// Checks every key of the section, naming the first that cannot work: the broker's own
    /// and, in between (where operators have always met them), messaging's.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let checks: [(&'static str, bool, &str); 6] = [
            (
                "limits.typing_per_sec",
                (1..=1000).contains(&self.typing_per_sec),
                "must be between 1 and 1000",
            ),
            (
                "limits.max_connections",
                self.max_connections >= 1,
                "must be at least 1",
            ),
            (
                "limits.max_packet_size",
                (1024..=256 * 1024 * 1024).contains(&self.max_packet_size),
                "must be between 1024 and 268435456",
            ),
            (
                "limits.connect_timeout_secs",
                (1..=3600).contains(&self.connect_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.max_inflight",
                self.max_inflight >= 1,
                "must be at least 1",
            ),
            // Messaging's key, checked here: a text must fit in a packet.
            (
                "limits.max_text_bytes",
                self.max_text_bytes >= 1 && self.max_text_bytes < self.max_packet_size,
                "must be at least 1 and below limits.max_packet_size",
            ),
        ];
        first_invalid(&checks)?;
        self.chat().validate()?;
        let checks: [(&'static str, bool, &str); 5] = [
            (
                "limits.login_failure_window_secs",
                (1..=86_400).contains(&self.login_failure_window_secs),
                "must be between 1 and 86400",
            ),
            (
                "limits.write_timeout_secs",
                (1..=3600).contains(&self.write_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.http_max_connections",
                (1..=1_000_000).contains(&self.http_max_connections),
                "must be between 1 and 1000000",
            ),
            (
                "limits.http_header_timeout_secs",
                (1..=3600).contains(&self.http_header_timeout_secs),
                "must be between 1 and 3600",
            ),
            (
                "limits.http_idle_timeout_secs",
                (1..=3600).contains(&self.http_idle_timeout_secs),
                "must be between 1 and 3600",
            ),
        ];
        first_invalid(&checks)?;
        self.validate_subscription_limits()?;
        self.validate_session_buffers()?;
        self.validate_user_rates()
    }

    /// What a session may hold for a client that stops reading or acknowledging.
    fn validate_session_buffers(&self) -> Result<(), InvalidSetting> {
        let checks: [(&'static str, bool, &str); 2] = [
            (
                "limits.max_session_buffer_bytes",
                (4096..=1024 * 1024 * 1024).contains(&self.max_session_buffer_bytes),
                "must be between 4096 and 1073741824",
            ),
            (
                "limits.ack_timeout_secs",
                (1..=3600).contains(&self.ack_timeout_secs),
                "must be between 1 and 3600",
            ),
        ];
        first_invalid(&checks)
    }

    /// The per-session subscription limits (a session's filters and watches cost memory and
    /// work on every SUBSCRIBE; they must allow at least one).
    fn validate_subscription_limits(&self) -> Result<(), InvalidSetting> {
        let checks: [(&'static str, bool, &str); 3] = [
            (
                "limits.max_filters_per_subscribe",
                (1..=65_535).contains(&self.max_filters_per_subscribe),
                "must be between 1 and 65535",
            ),
            (
                "limits.max_subscriptions",
                (1..=100_000).contains(&self.max_subscriptions),
                "must be between 1 and 100000",
            ),
            (
                "limits.max_presence_watches",
                (1..=1_000_000).contains(&self.max_presence_watches),
                "must be between 1 and 1000000",
            ),
        ];
        first_invalid(&checks)
    }

    /// Checks the per-user write rates and the per-user connection cap.
    fn validate_user_rates(&self) -> Result<(), InvalidSetting> {
        let checks: [(&'static str, bool, &str); 7] = [
            (
                "limits.max_kept_sessions_per_user",
                (1..=100_000).contains(&self.max_kept_sessions_per_user),
                "must be between 1 and 100000",
            ),
            (
                "limits.max_kept_sessions",
                (1..=10_000_000).contains(&self.max_kept_sessions),
                "must be between 1 and 10000000",
            ),
            (
                "limits.sends_per_sec",
                (1..=100_000).contains(&self.sends_per_sec),
                "must be between 1 and 100000",
            ),
            (
                "limits.sends_burst",
                (1..=1_000_000).contains(&self.sends_burst)
                    && self.sends_burst >= self.sends_per_sec,
                "must be between 1 and 1000000 and at least limits.sends_per_sec",
            ),
            (
                "limits.requests_per_sec",
                (1..=100_000).contains(&self.requests_per_sec),
                "must be between 1 and 100000",
            ),
            (
                "limits.requests_burst",
                (1..=1_000_000).contains(&self.requests_burst)
                    && self.requests_burst >= self.requests_per_sec,
                "must be between 1 and 1000000 and at least limits.requests_per_sec",
            ),
            (
                "limits.max_sessions_per_user",
                (1..=100_000).contains(&self.max_sessions_per_user),
                "must be between 1 and 100000",
            ),
        ];
        first_invalid(&checks)
    }
}
