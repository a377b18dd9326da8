//! The HTTP listener: `/healthz`, `/metrics`, the admin API for accounts, login tokens
//! (`/auth/token`, see `token_http`), and the `fs` media back end's signed upload and download
//! URLs (`/media/{media}`, see `media::http`), and the web client at `/` (see `web`). MQTT over
//! WebSocket at `/mqtt` is taken off this listener before HTTP (see `mqtt_on_http`).
//!
//! The admin API is what the `chatd user …` commands use while the server holds the store; it is
//! refused without the admin bearer token.

// Handlers return axum's `Response` as their error: it is what they produce anyway.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chatd_core::accounts::AccountError;
use serde::Deserialize;
use serde_json::json;

use crate::config::WebConfig;
use crate::state::Shared;

/// The HTTP routes; the web client (`web`) takes every `GET` no other route does.
pub fn routes(shared: Arc<Shared>, web: &WebConfig) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/admin/users", get(list_users).post(add_user))
        .route("/admin/users/:id", delete(remove_user))
        .route("/admin/users/:id/password", put(set_password))
        .route("/admin/users/:id/devices", get(devices))
        .merge(crate::media::http::routes())
        .merge(crate::token_http::routes())
        .merge(crate::web::routes(web))
        .with_state(shared)
}

/// 200 while the node serves: `ok`, or `degraded` when the connection cache's backend is
/// down (the node still works). 503 `failing` while the store does not take durable writes:
/// nothing is acknowledged then, so a load balancer should send clients elsewhere.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let cache = shared.conn_cache.health();
    let cache = if cache.ok {
        json!({"backend": cache.backend, "ok": true})
    } else {
        json!({"backend": cache.backend, "ok": false, "detail": cache.detail})
    };
    let ok = cache["ok"] == true;
    match shared.storage.detail() {
        None => Json(json!({
            "status": if ok { "ok" } else { "degraded" },
            "storage": {"ok": true},
            "connection_cache": cache,
        }))
        .into_response(),
        Some(detail) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failing",
                "storage": {"ok": false, "detail": detail},
                "connection_cache": cache,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = shared.metrics.render(
        &shared.chat.stats(),
        shared.hub.session_count(),
        &shared.conn_cache.health(),
        shared.conn_cache.dropped(),
        &shared.storage,
    );
    let push = shared.push.as_ref().map(|p| p.stats()).unwrap_or_default();
    body.push_str(&crate::push::render_metrics(&push));
    body.push_str(&shared.presence_relay.render_metrics());
    body.push_str(&shared.hub.render_metrics());
    body.push_str(&shared.kept.render_metrics());
    if let Some(held) = &shared.held {
        body.push_str(&crate::metrics::render_held(held.len()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Compares the bearer token in constant time.
fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = shared.admin_token.as_bytes();
    let given = given.as_bytes();
    let mut diff = (given.len() != expected.len()) as u8;
    for (i, b) in expected.iter().enumerate() {
        diff |= b ^ given.get(i).copied().unwrap_or(0);
    }
    if diff == 0 {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer …)",
        ))
    }
}

fn account_error(e: AccountError) -> Response {
    match e {
        AccountError::Exists => error(StatusCode::CONFLICT, "user already exists"),
        AccountError::TooSimilar(_) | AccountError::Removed | AccountError::RemovalPending => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        AccountError::NotFound => error(StatusCode::NOT_FOUND, "no such user"),
        AccountError::InvalidId(_) | AccountError::InvalidPassword(_) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// Runs an account operation off the async threads (argon2 is deliberately slow).
async fn blocking<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<T, Response> {
    match shared.hashing(f).await {
        Some(result) => result.map_err(account_error),
        None => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "task failed")),
    }
}

async fn list_users(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    let accounts = shared.accounts.clone();
    match blocking(&shared, move || accounts.list()).await {
        Ok(users) => Json(json!({"users": users})).into_response(),
        Err(r) => r,
    }
}

/// Body of `POST /admin/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    user: String,
    password: String,
    /// Gives a removed id out again (refused without it).
    #[serde(default)]
    reclaim: bool,
}

/// Body of `PUT /admin/users/{id}/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

async fn add_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    let new: NewUser = match parse(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let accounts = shared.accounts.clone();
    let user = new.user.clone();
    let added = move || accounts.add_reclaiming(&new.user, &new.password, new.reclaim);
    match blocking(&shared, added).await {
        Ok(()) => (StatusCode::CREATED, Json(json!({"user": user}))).into_response(),
        Err(r) => r,
    }
}

async fn set_password(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    let new: NewPassword = match parse(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let accounts = shared.accounts.clone();
    let user = id.clone();
    match blocking(&shared, move || accounts.set_password(&user, &new.password)).await {
        Ok(()) => {
            // Sessions that logged in with the old password end now.
            shared.hub.kick_user(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

/// How long a removal waits for the user's sessions to end before cleaning up anyway.
const SESSIONS_END: std::time::Duration = std::time::Duration::from_secs(10);

async fn remove_user(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    let accounts = shared.accounts.clone();
    let user = id.clone();
    if let Err(r) = blocking(&shared, move || accounts.remove(&user)).await {
        return r;
    }
    shared.hub.kick_user(&id);
    // Whatever the sessions handed to messaging is stored before the clean-up runs, so
    // nothing of theirs is written after it.
    if !shared.hub.wait_gone(&id, SESSIONS_END).await {
        tracing::warn!(user = %id, "sessions of a removed user did not end in time");
    }
    // Their kept MQTT sessions go with them (the store's records go with the account's).
    shared.kept.forget_user(&id);
    let chat = shared.chat.clone();
    let user = id.clone();
    match tokio::task::spawn_blocking(move || chat.purge_account(&user)).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("user removed, but {e}; the clean-up is retried at the next start"),
        ),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "task failed"),
    }
}

/// `GET /admin/users/{id}/devices`: the user's connections as the connection cache knows them.
async fn devices(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    match shared.conn_cache.devices(&id).await {
        Ok(devices) => Json(json!({"devices": devices})).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
