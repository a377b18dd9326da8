//! What every session and HTTP handler shares.

use std::sync::Arc;

use chatd_auth::JwtVerifier;
use chatd_plugins::accounts::Accounts;
use chatd_plugins::messaging::Chat;

use crate::config::LimitsConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::router::Router;

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
    /// Connected sessions.
    pub hub: Arc<Hub>,
    /// The embedded rumqttd router.
    pub router: Router,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Bearer token of the admin API.
    pub admin_token: String,
}
