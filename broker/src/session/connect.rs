//! The first packet of a connection: CONNECT, its credentials and its will, answered by CONNACK.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chatd_auth::acl;
use chatd_core::accounts::AccountError;
use futures_util::future::BoxFuture;
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, Connect, ConnectProperties, ConnectReturnCode, LastWill, Login,
    Packet, QoS,
};
use tracing::{debug, info};

use crate::hub::SessionClaim;
use crate::kept::{Begun, Request};
use crate::login_limit::Limited;
use crate::login_token::LoginTokens;
use crate::metrics::Metrics;
use crate::password_login::{check_password, Refused};
use crate::source_addr::SourceKey;
use crate::state::Shared;
use crate::transport::Transport;
use crate::untrusted::Untrusted;
use crate::wire::{detect_version, Codec, Version, WireError};

/// How many QoS 1 publishes a client may have in flight to us (MQTT 5 receive maximum).
pub const SERVER_RECEIVE_MAXIMUM: u16 = 64;

/// Time a refused client gets to take its CONNACK: a refusal never waits on the client.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);

/// What a successful handshake established.
pub struct Accepted {
    /// Codec for the negotiated version.
    pub codec: Codec,
    /// The authenticated user.
    pub user: String,
    /// The MQTT client id (`user` or `user:device`).
    pub client_id: String,
    /// Keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    /// The will, already checked to be on a `chat/{me}/…` topic.
    pub will: Option<(String, Bytes)>,
    /// MQTT 5 Will Delay Interval in seconds (0: sent as the connection ends).
    pub will_delay: u32,
    /// The session: resumed or new, and how long it is kept after the connection.
    pub kept: Begun,
    /// The Session Expiry Interval the client asked for (5.0; 3.1.1: 0 or `u32::MAX`): a
    /// DISCONNECT may not raise it from 0.
    pub asked_expiry: u32,
    /// The connection's ticket (the session's id in the hub and the keeper).
    pub ticket: u64,
    /// How many QoS 1 publishes the client accepts in flight.
    pub receive_maximum: u16,
    /// Bytes that arrived after CONNECT.
    pub leftover: BytesMut,
    /// The user's revocation count before its credentials were checked.
    pub revocation: u64,
    /// The session's place among its user's sessions until it is registered.
    pub claim: Option<SessionClaim>,
}

/// Why a CONNECT was refused, mapped to each version's return code.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    ClientId,
    Credentials,
    NotAuthorized,
    Busy,
    /// The user has `limits.max_sessions_per_user` connections already.
    Quota,
    /// Too many failed logins for the user or the source address; credentials not checked.
    RateLimited(Limited),
    /// An MQTT 5 will at QoS 2: CONNACK announces Maximum QoS 1 ([MQTT-3.2.2-12]).
    WillQos,
    /// An MQTT 5 will with Will Retain 1: CONNACK announces Retain Available 0
    /// ([MQTT-3.2.2-13]).
    WillRetain,
    /// An MQTT 5 Authentication Method: chatd offers no enhanced authentication
    /// ([MQTT-4.12.0-1]).
    AuthMethod,
}

impl Refusal {
    fn code(self, version: Version) -> ConnectReturnCode {
        match (self, version) {
            (Refusal::ClientId, _) => ConnectReturnCode::ClientIdentifierNotValid,
            (Refusal::Credentials, _) => ConnectReturnCode::BadUserNamePassword,
            (Refusal::NotAuthorized, _) => ConnectReturnCode::NotAuthorized,
            (Refusal::Busy, Version::V4) => ConnectReturnCode::ServiceUnavailable,
            (Refusal::Busy, Version::V5) => ConnectReturnCode::ServerBusy,
            // 3.1.1 has no quota code: 3 says "not now" without blaming the credentials.
            (Refusal::Quota, Version::V4) => ConnectReturnCode::ServiceUnavailable,
            (Refusal::Quota, Version::V5) => ConnectReturnCode::QuotaExceeded,
            // 3.1.1 has no "try later" code: 5 says that this login is not allowed now, whatever
            // the password, and differs from 4 (wrong password) so an app can tell the user.
            (Refusal::RateLimited(_), Version::V4) => ConnectReturnCode::NotAuthorized,
            (Refusal::RateLimited(_), Version::V5) => ConnectReturnCode::ConnectionRateExceeded,
            (Refusal::WillQos, Version::V5) => ConnectReturnCode::QoSNotSupported,
            (Refusal::WillRetain, Version::V5) => ConnectReturnCode::RetainNotSupported,
            (Refusal::AuthMethod, Version::V5) => ConnectReturnCode::BadAuthenticationMethod,
            // Never refused in 3.1.1, whose CONNACK announces nothing (see `will_refusal`);
            // 5 is the nearest code should that change.
            (Refusal::WillQos | Refusal::WillRetain, Version::V4) => {
                ConnectReturnCode::NotAuthorized
            }
            // 3.1.1 has no properties, so no Authentication Method; 5 is the nearest code.
            (Refusal::AuthMethod, Version::V4) => ConnectReturnCode::NotAuthorized,
        }
    }
}

/// Whether an MQTT 5 will asks for more than CONNACK announces (Maximum QoS 1, Retain Available
/// 0). Checked before the credentials: it says nothing about the account and costs no hashing.
/// 3.1.1 announces nothing, so its wills are accepted as they are (the will is acted on as a
/// chat publish, where QoS and retain change nothing).
fn will_refusal(version: Version, will: &Option<LastWill>) -> Option<Refusal> {
    let will = will.as_ref()?;
    if version == Version::V4 {
        return None;
    }
    if will.qos == QoS::ExactlyOnce {
        return Some(Refusal::WillQos);
    }
    will.retain.then_some(Refusal::WillRetain)
}

/// Whether an MQTT 5 CONNECT asks for enhanced authentication (an Authentication Method),
/// which chatd does not offer: refused with 0x8C whatever its credentials, before they are
/// checked (the method alone decides, and the refusal costs no hashing).
fn auth_refusal(props: &Option<ConnectProperties>) -> Option<Refusal> {
    props
        .as_ref()
        .and_then(|p| p.authentication_method.as_ref())
        .map(|_| Refusal::AuthMethod)
}

/// Reads CONNECT within the configured timeout, authenticates it and writes CONNACK. `source`
/// is what the failed-login limits count against.
/// Returns `None` when the connection must be closed (CONNACK with an error was sent if possible).
/// Boxed: the handshake's state (~2.5 KB) is needed only until CONNACK, so it must not be part of
/// the connection task, which lives as long as the session.
pub fn handshake<'a, T: Transport>(
    t: &'a mut T,
    shared: &'a Shared,
    source: SourceKey,
    ticket: u64,
) -> BoxFuture<'a, Option<Accepted>> {
    Box::pin(handshake_unboxed(t, shared, source, ticket))
}

async fn handshake_unboxed<T: Transport>(
    t: &mut T,
    shared: &Shared,
    source: SourceKey,
    ticket: u64,
) -> Option<Accepted> {
    let timeout = Duration::from_secs(shared.limits.connect_timeout_secs);
    match tokio::time::timeout(timeout, read_connect(t, shared)).await {
        Ok(Some((codec, packet, leftover))) => {
            accept(t, shared, codec, packet, leftover, source, ticket).await
        }
        Ok(None) => None,
        Err(_) => {
            debug!("no CONNECT within {}s", timeout.as_secs());
            None
        }
    }
}

async fn read_connect<T: Transport>(
    t: &mut T,
    shared: &Shared,
) -> Option<(Codec, Packet, BytesMut)> {
    let mut buf = BytesMut::with_capacity(512);
    let version = loop {
        match detect_version(&buf) {
            Ok(Some(v)) => break v,
            Ok(None) => {}
            Err(WireError::UnsupportedLevel(level)) => {
                debug!("refusing protocol level {level}");
                // 3.1.1's "unacceptable protocol version" is what older clients understand.
                let _ = t.write_all_flush(&[0x20, 0x02, 0x00, 0x01]).await;
                return None;
            }
            Err(e) => {
                debug!("bad first packet: {e}");
                return None;
            }
        }
        if buf.len() > 1024 {
            return None;
        }
        match t.read_into(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    };
    let codec = Codec::new(version, shared.limits.max_packet_size);
    loop {
        match codec.read(&mut buf) {
            Ok(Some(incoming)) => return Some((codec, incoming.packet, buf)),
            Ok(None) => {}
            Err(e) => {
                debug!("bad CONNECT: {e}");
                return None;
            }
        }
        match t.read_into(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn accept<T: Transport>(
    t: &mut T,
    shared: &Shared,
    mut codec: Codec,
    packet: Packet,
    leftover: BytesMut,
    source: SourceKey,
    ticket: u64,
) -> Option<Accepted> {
    let Packet::Connect(connect, props, will, will_props, login) = packet else {
        debug!("first packet was not CONNECT");
        return None;
    };
    let asked_expiry = asked_expiry(codec.version(), &connect, &props);
    let refusal = auth_refusal(&props).or_else(|| will_refusal(codec.version(), &will));
    let checked = match refusal {
        Some(refusal) => Err(refusal),
        None => check(shared, &connect, &will, login, source).await,
    };
    let checked = match checked {
        Ok((user, revocation, claim)) => {
            // Online before the client hears CONNACK: whoever it tells next ("I am connected")
            // and then watches its presence must never see it offline. Counted before a
            // connection with the same client id is taken over (the keeper stops it and waits
            // for its session), so a takeover never shows the user offline in between. The
            // session's end (or a refusal or failed write below) makes it offline again.
            shared.presence.connected(&user);
            let kept = shared
                .kept
                .begin(
                    &shared.hub,
                    Request {
                        client_id: &connect.client_id,
                        user: &user,
                        ticket,
                        clean_start: connect.clean_session,
                        expiry_secs: asked_expiry,
                    },
                )
                .await;
            if kept.over_limit {
                Metrics::inc(&shared.metrics.kept_sessions_refused_total);
            }
            if kept.over_limit && codec.version() == Version::V4 {
                // 3.1.1 cannot say "your session will not be kept": refused, as when the
                // server is full. (5.0 hears Session Expiry 0 in CONNACK instead.)
                shared
                    .kept
                    .end(&connect.client_id, ticket, &user, 0, None, None);
                shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                shared.presence.disconnected(&user);
                Err(Refusal::Busy)
            } else {
                Ok((user, revocation, claim, kept))
            }
        }
        Err(refusal) => Err(refusal),
    };
    match checked {
        Ok((user, revocation, claim, kept)) => {
            let receive_maximum = client_receive_maximum(&props, shared.limits.max_inflight);
            // MQTT 5 Maximum Packet Size: nothing larger may be written to this client, CONNACK
            // included (0 is not a size a client may declare; it is taken as no limit).
            if let Some(max) = props.as_ref().and_then(|p| p.max_packet_size) {
                if max > 0 {
                    codec.limit_output(max);
                }
            }
            let mut properties = connack_properties(codec.version(), shared);
            if let Some(p) = properties.as_mut() {
                // Said only when the server does not take what the client asked for.
                if kept.expiry_secs != asked_expiry {
                    p.session_expiry_interval = Some(kept.expiry_secs);
                }
            }
            let connack = Packet::ConnAck(
                ConnAck {
                    session_present: kept.present,
                    code: ConnectReturnCode::Success,
                },
                properties,
            );
            let mut out = BytesMut::new();
            let written = match codec.write(connack, &mut out) {
                Ok(_) => t.write_all_flush(&out).await.is_ok(),
                Err(_) => false,
            };
            if !written {
                // The slot taken by `check` is given back: there will be no session. What
                // was kept stays kept, as after any lost connection.
                shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                shared.presence.disconnected(&user);
                let state = Some(kept.state);
                shared.kept.end(
                    &connect.client_id,
                    ticket,
                    &user,
                    kept.expiry_secs,
                    state,
                    None,
                );
                return None;
            }
            let will = will.map(|w| {
                (
                    String::from_utf8_lossy(&w.topic).into_owned(),
                    w.message.clone(),
                )
            });
            Some(Accepted {
                codec,
                user,
                client_id: connect.client_id,
                keep_alive: connect.keep_alive,
                will,
                will_delay: will_props.and_then(|p| p.delay_interval).unwrap_or(0),
                kept,
                asked_expiry,
                ticket,
                receive_maximum,
                leftover,
                revocation,
                claim: Some(claim),
            })
        }
        Err(refusal) => {
            Metrics::inc(&shared.metrics.refused_total);
            if let Refusal::RateLimited(budget) = refusal {
                // Counted, not logged one by one: a brute force must not become a log flood.
                Metrics::inc(&shared.metrics.logins_rate_limited_total);
                let client_id = Untrusted(&connect.client_id);
                debug!(%client_id, %source, ?budget, "CONNECT refused: too many failed logins");
            } else if let Refusal::Quota = refusal {
                // Counted, not logged one by one: a reconnect loop must not flood the log.
                Metrics::inc(&shared.metrics.sessions_quota_refused_total);
                let client_id = Untrusted(&connect.client_id);
                debug!(%client_id, "CONNECT refused: too many sessions of the user");
            } else {
                // The client id is the client's word, not yet checked: escaped.
                let client_id = Untrusted(&connect.client_id);
                info!(%client_id, %source, ?refusal, "CONNECT refused");
            }
            let mut out = BytesMut::new();
            let connack = Packet::ConnAck(
                ConnAck {
                    session_present: false,
                    code: refusal.code(codec.version()),
                },
                None,
            );
            if codec.write(connack, &mut out).is_ok() {
                let _ = tokio::time::timeout(REFUSAL_WRITE, t.write_all_flush(&out)).await;
            }
            let _ = tokio::time::timeout(REFUSAL_WRITE, t.close()).await;
            None
        }
    }
}

/// The checks of the contract's "Connecting" section, in the order that leaks the least. The
/// failed-login limits are consulted before a password is looked at, so a refused guess costs
/// no hashing; a JWT is checked first (cheap, unguessable), so a valid one is never refused.
async fn check(
    shared: &Shared,
    connect: &Connect,
    will: &Option<LastWill>,
    login: Option<Login>,
    source: SourceKey,
) -> Result<(String, u64, SessionClaim), Refusal> {
    let client = chatd_auth::parse_client_id(&connect.client_id).map_err(|_| Refusal::ClientId)?;
    let login = login.ok_or(Refusal::Credentials)?;
    if login.username != client.user {
        return Err(if login.username.is_empty() {
            Refusal::Credentials
        } else {
            Refusal::ClientId
        });
    }
    let user = client.user;
    let revocation = shared.hub.revocation(&user);
    if LoginTokens::is_login_token(&login.password) {
        // chatd's own token (`POST /auth/token`): no hashing, and no account is created —
        // the account it was issued for must still exist. A bad one counts as a failure.
        if !shared.login_tokens.verify(&login.password, &user) {
            return Err(match shared.login_limits.admit(&user, source) {
                Ok(_failed) => Refusal::Credentials,
                Err(limited) => Refusal::RateLimited(limited),
            });
        }
        match shared.accounts.exists(&user) {
            Ok(true) => {}
            Ok(false) => return Err(Refusal::Credentials),
            Err(_) => return Err(Refusal::Busy),
        }
    } else if shared.jwt.is_enabled() && chatd_auth::looks_like_jwt(&login.password) {
        // A valid token is never refused by the failed-login budgets: it cannot be guessed,
        // and checking it costs no hashing, so password failures (anyone's) must not lock its
        // holder out. A bad token counts as a failure, and over budget it gets the rate-limit
        // refusal like a password.
        if shared.jwt.verify(&login.password, &user).is_err() {
            return Err(match shared.login_limits.admit(&user, source) {
                // Dropping the admission counts the failure.
                Ok(_failed) => Refusal::Credentials,
                Err(limited) => Refusal::RateLimited(limited),
            });
        }
        ensure_account(shared, &user).await?;
    } else {
        check_password(shared, &user, login.password, source)
            .await
            .map_err(|refused| match refused {
                Refused::Wrong => Refusal::Credentials,
                Refused::Limited(limited) => Refusal::RateLimited(limited),
                Refused::Unavailable => Refusal::Busy,
            })?;
    }
    if let Some(will) = will {
        let topic = std::str::from_utf8(&will.topic).map_err(|_| Refusal::NotAuthorized)?;
        if !acl::will_allowed(&user, topic) {
            return Err(Refusal::NotAuthorized);
        }
    }
    // The user's place among its sessions, after the credentials: only the user can learn
    // how many it has. Held until the session is registered.
    let claim = shared
        .hub
        .claim(
            &user,
            &connect.client_id,
            shared.limits.max_sessions_per_user,
        )
        .ok_or(Refusal::Quota)?;
    // Take a connection slot atomically (check-then-add would let concurrent logins through
    // the limit); the session gives it back when it ends.
    let taken = shared.metrics.connections.fetch_add(1, Ordering::Relaxed) as usize;
    if taken >= shared.limits.max_connections {
        shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        return Err(Refusal::Busy);
    }
    Ok((user, revocation, claim))
}

/// A user who proves itself with a JWT may have no account yet; give it one without a password
/// so that others can message it. No argon2 hash: a first token login costs a store write, not
/// a hashing slot (68-102 such logins/s on 2 cores with a hash of a random password).
async fn ensure_account(shared: &Shared, user: &str) -> Result<(), Refusal> {
    // The usual case, an existing account, is one store read on this thread.
    if let Ok(true) = shared.accounts.exists(user) {
        return Ok(());
    }
    let accounts = shared.accounts.clone();
    let user = user.to_string();
    // Off the async threads: the record is flushed before the login is accepted.
    tokio::task::spawn_blocking(move || match accounts.add_without_password(&user) {
        Ok(()) | Err(AccountError::Exists) => Ok(()),
        Err(e) => Err(e),
    })
    .await
    .map_err(|_| Refusal::Busy)?
    .map_err(|e| match e {
        // A removed id stays removed until an administrator reclaims it, and a token may
        // not create a look-alike of an existing id: the token is valid, the login is not.
        AccountError::Removed | AccountError::RemovalPending | AccountError::TooSimilar(_) => {
            Refusal::NotAuthorized
        }
        _ => Refusal::Busy,
    })
}

/// How long the client asks its session to outlive the connection: 3.1.1 CleanSession 0
/// means until a CleanSession 1 connect (`u32::MAX`, cut to the server's maximum); 5.0 says it
/// in Session Expiry Interval (absent: 0, the session ends with the connection).
fn asked_expiry(version: Version, connect: &Connect, props: &Option<ConnectProperties>) -> u32 {
    match version {
        Version::V4 if connect.clean_session => 0,
        Version::V4 => u32::MAX,
        Version::V5 => props
            .as_ref()
            .and_then(|p| p.session_expiry_interval)
            .unwrap_or(0),
    }
}

fn client_receive_maximum(props: &Option<ConnectProperties>, configured: u16) -> u16 {
    let asked = props
        .as_ref()
        .and_then(|p| p.receive_maximum)
        .unwrap_or(u16::MAX);
    asked.clamp(1, configured.max(1))
}

fn connack_properties(version: Version, shared: &Shared) -> Option<ConnAckProperties> {
    if version == Version::V4 {
        return None;
    }
    Some(ConnAckProperties {
        session_expiry_interval: None,
        receive_max: Some(SERVER_RECEIVE_MAXIMUM),
        max_qos: Some(1),
        retain_available: Some(0),
        max_packet_size: u32::try_from(shared.limits.max_packet_size).ok(),
        assigned_client_identifier: None,
        topic_alias_max: Some(0),
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(0),
        shared_subscription_available: Some(0),
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    })
}
