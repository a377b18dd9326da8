//! `POST /auth/token`: a login token for a user name and password, so that a web page never
//! keeps the password (see [`crate::login_token`]). Checked like an MQTT password login, under
//! the same failed-login limits, counted per source address of the HTTP connection.

// Handlers return axum's `Response` as their error: it is what they produce anyway.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::metrics::Metrics;
use crate::password_login::{check_password, Refused};
use crate::source_addr::SourceKey;
use crate::state::Shared;

/// Largest request body: a user id and a password, with room to spare.
const MAX_BODY: usize = 4096;

/// The route, for [`crate::http::routes`].
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/auth/token", post(issue))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn issue(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            r#"expected {"user": "…", "password": "…"}"#,
        );
    };
    let source = SourceKey::of(peer.ip());
    // A malformed id is no account: the same answer as a wrong password, so that the
    // answer never tells which ids exist.
    if chatd_auth::validate_user_id(&login.user).is_err() {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user or password",
        );
    }
    match check_password(&shared, &login.user, login.password, source).await {
        Ok(()) => {}
        Err(Refused::Wrong) => {
            Metrics::inc(&shared.metrics.refused_total);
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong user or password",
            );
        }
        Err(Refused::Limited(_)) => {
            Metrics::inc(&shared.metrics.logins_rate_limited_total);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed logins; try again later",
            );
        }
        Err(Refused::Unavailable) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot check the password now; try again",
            );
        }
    }
    match shared.login_tokens.issue(&login.user) {
        Ok(issued) => {
            Json(json!({"token": issued.token, "expires": issued.expires_ms})).into_response()
        }
        Err(e) => {
            tracing::warn!("cannot sign a login token: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot issue a token",
            )
        }
    }
}
