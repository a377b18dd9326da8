//! A user name and password checked under the failed-login limits: the one path of MQTT
//! CONNECT and `POST /auth/token`, so that guesses through either count against the same
//! budgets (`limits.login_failures_*`).

use crate::login_limit::Limited;
use crate::source_addr::SourceKey;
use crate::state::Shared;

/// Why a password login did not succeed.
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    /// Wrong password or unknown user (counted as a failure).
    Wrong,
    /// Too many failed logins for the user or the source address: not checked.
    Limited(Limited),
    /// The server could not check (store failure, shutting down, overloaded).
    Unavailable,
}

/// Checks `password` of `user` from `source`. A used-up budget refuses at once, without
/// waiting for a hashing slot; otherwise the budget's token is taken only once the hash is
/// about to run, so logins queued for a hashing slot (a reconnect storm from behind one NAT
/// address) are not counted against the address, and at most one guess per slot can overrun
/// a budget. Success gives the token back and forgets the address's failures for the user.
pub async fn check_password(
    shared: &Shared,
    user: &str,
    password: String,
    source: SourceKey,
) -> Result<(), Refused> {
    if let Some(limited) = shared.login_limits.exhausted(user, source) {
        return Err(Refused::Limited(limited));
    }
    let accounts = shared.accounts.clone();
    let limits = shared.login_limits.clone();
    let user = user.to_string();
    let verified = shared
        .hashing(move || {
            let admission = limits.admit(&user, source).map_err(Refused::Limited)?;
            match accounts.verify(&user, &password) {
                Ok(true) => {
                    admission.succeeded();
                    Ok(())
                }
                // Dropping `admission` counts the failure.
                Ok(false) => Err(Refused::Wrong),
                Err(e) => {
                    // The server could not check: not the client's fault.
                    tracing::warn!("cannot check a password: {e}");
                    admission.not_counted();
                    Err(Refused::Unavailable)
                }
            }
        })
        .await;
    // No result: the server is shutting down or overloaded.
    verified.unwrap_or(Err(Refused::Unavailable))
}
