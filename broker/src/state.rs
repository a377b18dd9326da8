//! What every session and HTTP handler shares.

use std::sync::Arc;

use tokio::sync::Semaphore;

use chatd_auth::JwtVerifier;
use chatd_core::accounts::Accounts;
use chatd_core::messaging::Chat;
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_embedded::log::HeldEntries;
use chatd_kv::StoreHealth;
use chatd_media::MediaService;
use chatd_push_bridge::PushBridge;
use chatd_wire::request::RpcRouter;

use crate::cluster::wake_bus::WakeBus;
use crate::config::LimitsConfig;
use crate::conncache::ConnectionCache;
use crate::handshake_gate::HandshakeGate;
use crate::hub::{Hub, SessionEntry};
use crate::kept::Keeper;
use crate::login_limit::LoginLimiter;
use crate::login_token::LoginTokens;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::presence_relay::PresenceRelay;
use crate::typing::TypingLimiter;
use crate::user_rate::UserRate;

/// The server's shared parts, built once at start.
pub struct Shared {
    /// Protective limits from config.
    pub limits: LimitsConfig,
    /// 1:1 messaging, queue and history.
    pub chat: Arc<Chat>,
    /// User accounts.
    pub accounts: Accounts,
    /// JWT checks for CONNECT passwords.
    pub jwt: JwtVerifier,
    /// chatd's own login tokens (`POST /auth/token`), accepted as CONNECT passwords.
    pub login_tokens: LoginTokens,
    /// Connected sessions.
    pub hub: Arc<Hub>,
    /// Persistent MQTT sessions (subscriptions and unacknowledged messages between
    /// connections).
    pub kept: Arc<Keeper>,
    /// True on a node of a cluster: other nodes write to this node's users' queues, so a
    /// session that lags reads its queue from the start (`session::inbox`).
    pub cluster: bool,
    /// The wake-up bus to the other nodes of a cluster; `None` on a node alone.
    pub bus: Option<Arc<WakeBus>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Who is online; announces changes on `presence/{user}`.
    pub presence: Arc<Presence>,
    /// Hands presence changes to the sessions that watch them.
    pub presence_relay: Arc<PresenceRelay>,
    /// Rate limits for typing indicators.
    pub typing: TypingLimiter,
    /// Bounds concurrent password hashing (see [`Shared::hashing`]).
    pub hashing_slots: Semaphore,
    /// Which node and devices each user is connected to (in-process or Redis).
    pub conn_cache: Arc<dyn ConnectionCache>,
    /// Push notifications, when `[push]` is configured.
    pub push: Option<Arc<PushBridge>>,
    /// Media uploads, downloads and the checks of media messages.
    pub media: Arc<MediaService>,
    /// Failed-login budgets per user and source address (brute-force protection).
    pub login_limits: LoginLimiter,
    /// Pending handshakes per source address (CONNECT floods).
    pub handshakes: HandshakeGate,
    /// Answers `chat/{me}/rpc`: each op goes to the component registered for it at start.
    pub rpc: RpcRouter,
    /// Per-user rate of `chat/{me}/send` (`limits.sends_per_sec`, `limits.sends_burst`).
    pub sends: UserRate,
    /// Per-user rate of `chat/{me}/receipt` and `chat/{me}/rpc` together
    /// (`limits.requests_per_sec`, `limits.requests_burst`).
    pub requests: UserRate,
    /// Whether the store takes durable writes (`/healthz`, `/metrics`).
    pub storage: Arc<StoreHealth>,
    /// Queue entries held in memory by the embedded log (`/metrics`); none on PostgreSQL.
    pub held: Option<Arc<HeldEntries>>,
}

impl Shared {
    /// Delivers an item that is not stored (a typing indicator, a copy of a reply) to the
    /// user's devices on this node and, in a cluster, on the others.
    pub fn deliver_unstored(&self, item: Outgoing, except: Option<&SessionEntry>) {
        if let Some(bus) = &self.bus {
            bus.forward_elsewhere(&item);
        }
        match except {
            Some(entry) => self.hub.deliver_except(item, entry),
            None => self.hub.deliver(item),
        }
    }

    /// Runs password work (argon2: ~19 MB and tens of ms each) on the blocking pool, at most one
    /// per core at a time, so a burst of logins costs bounded memory and cannot starve the rest.
    /// `None` if the task could not run.
    pub async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _slot = self.hashing_slots.acquire().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }

    /// Permits for [`Shared::hashing`]: one per core.
    pub fn hashing_permits() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}
