//! Builds the server from its configuration, runs it, and shuts it down gracefully: stop
//! accepting, end sessions (letting their in-flight stores finish), drain the store, exit 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chatd_auth::JwtVerifier;
use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::Deliver;
use chatd_core::presence::LastSeen;
use chatd_core::profiles::Profiles;
use chatd_kv::{EngineConfig, GuardedStore, KvStore, StoreError};
use chatd_media::MediaService;
use chatd_push_bridge::{OnlineCheck, PushBridge};
use chatd_wire::request::RpcRouter;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::deliver::ClusterDeliver;
use crate::cluster::wake_bus::WakeBus;
use crate::config::Config;
use crate::conncache;
use crate::datadir;
use crate::handshake_gate::HandshakeGate;
use crate::http;
use crate::http_serve::{self, HttpLimits};
use crate::hub::Hub;
use crate::kept::{KeepLimits, Keeper};
use crate::listeners::{accept_loop, Framing};
use crate::login_limit::{LoginLimitConfig, LoginLimiter};
use crate::login_token::LoginTokens;
use crate::media;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::presence_relay::PresenceRelay;
use crate::push;
use crate::router::Router;
use crate::state::Shared;
use crate::stores;
use crate::tls;
use crate::typing::TypingLimiter;
use crate::user_rate::UserRate;

/// How long sessions get to end after the shutdown signal.
const SESSION_GRACE: Duration = Duration::from_secs(10);

/// Opens the store of `config.storage`, creating the directory: an existing data directory with
/// the engine that created it (warning when `storage.engine` names another one), a new one with
/// `storage.engine`.
pub fn open_store(config: &Config) -> Result<Arc<dyn KvStore>, StoreError> {
    chatd_kv::open(&store_config(config)?)
}

/// The engine and directory [`open_store`] opens.
fn store_config(config: &Config) -> Result<EngineConfig, StoreError> {
    // `Config::load` has validated the engine name; a config built otherwise is told here.
    let configured = config
        .storage
        .engine_config()
        .map_err(|e| StoreError::Other(e.to_string()))?;
    let chosen = EngineConfig::for_data_dir(&config.storage.path, configured.engine)
        .map_err(|e| StoreError::Other(e.to_string()))?;
    if let Some(warning) = chosen.mismatch_warning() {
        warn!("{warning}");
    }
    Ok(chosen
        .config
        .with_cache_bytes(configured.cache_bytes)
        .with_memtable_bytes(configured.memtable_bytes)
        .with_pacing_chunk_bytes(configured.pacing_chunk_bytes)
        .with_background_nice(configured.background_nice))
}

/// The server's store: [`open_store`]'s, guarded so that an I/O error stops writes and
/// acknowledgements until the store is reopened (`chatd_kv::GuardedStore`). The test hook
/// `CHATD_TEST_FAULTS` (a control file that makes writes fail on demand) is honoured here
/// and nowhere else.
pub(crate) fn open_guarded_store(config: &Config) -> Result<Arc<GuardedStore>, StoreError> {
    let faults = std::env::var_os(chatd_kv::FAULTS_ENV).map(std::path::PathBuf::from);
    if let Some(control) = &faults {
        warn!(
            "{} is set: storage faults are injected from {} (a test hook)",
            chatd_kv::FAULTS_ENV,
            control.display()
        );
    }
    Ok(Arc::new(GuardedStore::open(store_config(config)?, faults)?))
}

/// Runs the server until `shutdown` completes (the binary passes SIGINT or SIGTERM), then shuts
/// down gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    // Every connection holds a descriptor: raise the limit and say so when it is too low.
    let http_connections = match config.listen.http.as_str() {
        "" => 0,
        _ => config.limits.http_max_connections,
    };
    crate::fd_limit::check(config.limits.max_connections, http_connections);
    let dir = config.storage.path.clone();
    let stores = stores::open(&config)?;
    let storage = stores.health.clone();
    let held = stores.held.clone();
    // The embedded store creates it; a cluster node keeps only listen.json and keys there.
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("storage.path: cannot create {}", dir.display()))?;
    datadir::remove_listen_file(&dir);
    let admin_token = datadir::admin_token(&dir, config.auth.admin_token.as_deref())?;
    let jwt = jwt_verifier(&config)?;

    let accounts = if config.cluster.is_cluster() {
        Accounts::shared(stores.accounts.clone())
    } else {
        Accounts::new(stores.accounts.clone())
    };
    let hub = Arc::new(Hub::with_session_buffer(
        config.limits.max_session_buffer_bytes,
    ));
    let router = Router::start();
    // The relay subscribes before anything is published.
    let presence_relay = PresenceRelay::start(&router).context("cannot start presence relay")?;
    let last_seen = LastSeen::new(stores.last_seen.clone());
    let presence = Arc::new(Presence::new(router, last_seen).context("cannot start presence")?);
    // Stopped last, when the server has shut down (the cluster's background tasks).
    let background = CancellationToken::new();
    let bus = match &config.redis.url {
        Some(url) if config.cluster.is_cluster() => Some(
            WakeBus::start(
                url,
                &config.redis.key_prefix,
                config.node.id,
                Duration::from_secs(config.redis.ttl_secs),
                hub.clone(),
                presence.clone(),
                background.clone(),
            )
            .context("redis.url")?,
        ),
        _ => None,
    };
    // Before messaging starts, so that a bad push credential stops the server at once and no
    // push job is written unless the bridge runs. A user is online for push while a device
    // is connected here or, in a cluster, on any node.
    let online: Arc<dyn OnlineCheck> = match &bus {
        Some(_) => presence.clone(),
        None => hub.clone(),
    };
    let push = match &config.push {
        Some(cfg) => Some(
            push::start(
                cfg,
                stores.push_jobs.clone(),
                stores.push_tokens.clone(),
                &hub,
                online,
            )
            .context("cannot start push")?,
        ),
        None => None,
    };
    let outbox: Arc<dyn Deliver> = match &bus {
        Some(bus) => Arc::new(ClusterDeliver::new(
            hub.clone(),
            bus.clone(),
            presence.clone(),
        )),
        None => hub.clone(),
    };
    stores::watch_health(
        &config,
        stores.log.clone(),
        storage.clone(),
        background.clone(),
    );
    let chat = Chat::open(
        stores.log.clone(),
        accounts.clone(),
        ChatConfig {
            push_jobs: push.is_some(),
            ..config.chat()
        },
        outbox,
    )
    .context("cannot start messaging")?;
    let conn_cache = conncache::from_config(&config).await;
    // The HTTP listener is bound first: the fs media back end's URLs are derived from its
    // address when media.fs.public_url is not set.
    let http_listener = match config.listen.http.as_str() {
        "" => None,
        addr => Some(bind("http", addr).await?),
    };
    let http_addr = http_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let media = media::open(&config, stores.media.clone(), http_addr).await?;
    chat.set_media_gate(media.clone());
    let profiles = Arc::new(Profiles::new(
        stores.profiles.clone(),
        stores.log.clone(),
        accounts.clone(),
        media.clone(),
        config.chat().max_groups_per_user,
    ));
    media.set_avatar_access(profiles.clone());
    let rpc = rpc_router(&chat, &media, &presence, &profiles, push.as_ref())?;
    let kept = Arc::new(
        Keeper::open(
            stores.sessions.clone(),
            KeepLimits {
                max_expiry_secs: config.limits.max_session_expiry_secs,
                per_user: config.limits.max_kept_sessions_per_user,
                total: config.limits.max_kept_sessions,
            },
            config.cluster.is_cluster(),
        )
        .context("cannot read the kept MQTT sessions")?,
    );
    // Stopped after the sessions ended, so that their last states are written.
    let keeper_stop = CancellationToken::new();
    kept.start(keeper_stop.clone());
    let shared = Arc::new(Shared {
        limits: config.limits.clone(),
        chat: chat.clone(),
        accounts,
        jwt,
        login_tokens: LoginTokens::new(
            datadir::login_key(&dir, config.auth.login_token_secret.as_deref())?.as_bytes(),
            Duration::from_secs(config.auth.login_token_ttl_secs),
        ),
        hub: hub.clone(),
        kept: kept.clone(),
        cluster: config.cluster.is_cluster(),
        bus,
        presence,
        presence_relay,
        metrics: Metrics::default(),
        admin_token,
        typing: TypingLimiter::new(config.limits.typing_per_sec),
        hashing_slots: tokio::sync::Semaphore::new(Shared::hashing_permits()),
        conn_cache: conn_cache.clone(),
        push: push.clone(),
        media,
        login_limits: LoginLimiter::new(LoginLimitConfig {
            per_user: config.limits.login_failures_per_user,
            per_source: config.limits.login_failures_per_ip,
            window: Duration::from_secs(config.limits.login_failure_window_secs),
        }),
        handshakes: HandshakeGate::new(config.limits.max_handshakes_per_ip),
        sends: UserRate::new(config.limits.sends_per_sec, config.limits.sends_burst),
        requests: UserRate::new(config.limits.requests_per_sec, config.limits.requests_burst),
        rpc,
        storage,
        held,
    });

    let stop = CancellationToken::new();
    let sessions = TaskTracker::new();
    let mut tasks = Vec::new();
    let mut bound = BTreeMap::new();
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let mqtt_listeners = [
        ("mqtt", &config.listen.mqtt, Framing::Mqtt, false),
        ("ws", &config.listen.ws, Framing::WebSocket, false),
        ("mqtts", &config.listen.mqtts, Framing::Mqtt, true),
        ("wss", &config.listen.wss, Framing::WebSocket, true),
    ];
    for (name, addr, framing, secure) in mqtt_listeners {
        if addr.is_empty() {
            continue;
        }
        let listener = bind(name, addr).await?;
        bound.insert(name, listener.local_addr()?);
        let acceptor = if secure { tls.clone() } else { None };
        tasks.push(tokio::spawn(accept_loop(
            listener,
            framing,
            acceptor,
            shared.clone(),
            stop.clone(),
            sessions.clone(),
        )));
    }
    if let Some(listener) = http_listener {
        bound.insert("http", listener.local_addr()?);
        let app = http::routes(shared.clone(), &config.web);
        tasks.push(tokio::spawn(http_serve::serve(
            listener,
            app,
            HttpLimits::from_config(&config.limits),
            shared.clone(),
            stop.clone(),
            sessions.clone(),
        )));
    }
    datadir::write_listen_file(&dir, &bound)?;
    for (name, addr) in &bound {
        info!("listening: {name} on {addr}");
    }
    info!(data = %dir.display(), "chatd ready");

    shutdown.await;
    info!("shutting down: no new connections, finishing in-flight stores");
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    hub.stop_all();
    sessions.close();
    if tokio::time::timeout(SESSION_GRACE, sessions.wait())
        .await
        .is_err()
    {
        warn!("some sessions did not end within {SESSION_GRACE:?}");
    }
    keeper_stop.cancel();
    if !kept.drained(SESSION_GRACE).await {
        warn!("some MQTT sessions were not saved within {SESSION_GRACE:?}");
    }
    conn_cache.close().await;
    tokio::task::spawn_blocking(move || chat.close()).await?;
    if let Some(push) = &push {
        // Pushes in flight get a short grace; unsent jobs stay in the store for the next start.
        push.shutdown().await;
    }
    background.cancel();
    datadir::remove_listen_file(&dir);
    info!("stopped");
    Ok(())
}

/// The request router: every component that answers ops of `chat/{me}/rpc` registers here,
/// once, at start (push only when `[push]` is configured; its ops are refused otherwise).
fn rpc_router(
    chat: &Arc<Chat>,
    media: &Arc<MediaService>,
    presence: &Arc<Presence>,
    profiles: &Arc<Profiles>,
    push: Option<&Arc<PushBridge>>,
) -> Result<RpcRouter> {
    let mut router = RpcRouter::new();
    router.register(chat.clone())?;
    router.register(media.clone())?;
    router.register(presence.clone())?;
    router.register(profiles.clone())?;
    if let Some(push) = push {
        router.register(push.clone())?;
    }
    Ok(router)
}

async fn bind(name: &str, addr: &str) -> Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("listen.{name}: `{addr}` is not an address"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen.{name}: cannot listen on {addr}"))
}

fn jwt_verifier(config: &Config) -> Result<JwtVerifier> {
    let secret = config.auth.jwt_hs256_secret.as_deref().map(str::as_bytes);
    let public_key = match &config.auth.jwt_rs256_public_key_file {
        Some(path) => Some(std::fs::read(path).with_context(|| {
            format!(
                "auth.jwt_rs256_public_key_file: cannot read {}",
                path.display()
            )
        })?),
        None => None,
    };
    JwtVerifier::new(secret, public_key.as_deref())
        .map_err(|e| anyhow!("auth.jwt_rs256_public_key_file: {e}"))
}
