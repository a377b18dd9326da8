//! The bridge's settings, as the broker hands them over after reading its TOML file, and the
//! credential files they point at (FCM service account JSON, APNs `.p8` key), checked when the
//! adapters are built so that a bad file stops the server at start, not at the first push.

use std::time::Duration;

use serde::Deserialize;

/// Why a push setting or credential cannot be used. Each variant names what is wrong so that
/// the broker can prefix the config key it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The service account file is not the JSON Google issues.
    #[error("service account JSON: {0}")]
    ServiceAccount(String),
    /// A private key could not be read as the PEM the service needs.
    #[error("private key: {0}")]
    Key(String),
    /// An endpoint is not an `http://` or `https://` URL.
    #[error("endpoint `{0}` must start with http:// or https://")]
    Endpoint(String),
    /// The HTTP client could not be built (TLS setup).
    #[error("HTTP client: {0}")]
    Client(String),
}

/// How the bridge works, whatever the services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSettings {
    /// Jobs of one user and conversation wait this long after the oldest of them, so that a
    /// burst of messages becomes one notification.
    pub collapse_window: Duration,
    /// Put (the start of) the newest message's text in the notification; off by default, so
    /// that no content passes through Google's or Apple's servers.
    pub previews: bool,
    /// Most push requests in flight at once.
    pub concurrency: usize,
    /// Retries of one notification to one token (429, 5xx, network errors) before it is
    /// dropped.
    pub max_retries: u32,
    /// First retry delay; doubled for each further retry (a `Retry-After` that asks for more
    /// wins).
    pub retry_base: Duration,
    /// Longest wait before one retry, whatever `Retry-After` says.
    pub retry_max: Duration,
    /// Safety-net scan for jobs even when nothing woke the bridge.
    pub scan_interval: Duration,
    /// How long the notification stays worth delivering (APNs `apns-expiration`, FCM
    /// `android.ttl`).
    pub ttl: Duration,
    /// How long shutdown waits for pushes in flight before leaving their jobs for the next start.
    pub shutdown_grace: Duration,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            collapse_window: Duration::from_secs(2),
            previews: false,
            concurrency: 32,
            max_retries: 5,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            scan_interval: Duration::from_secs(1),
            ttl: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A Google service account key file (the fields the bridge uses).
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The account: the JWT assertion's `iss`.
    pub client_email: String,
    /// PEM RSA private key that signs the assertion (RS256).
    pub private_key: String,
    /// Optional id of that key, sent as the JWT `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where the assertion is exchanged for an access token (also the assertion's `aud`).
    pub token_uri: String,
    /// The Firebase project messages are sent for.
    pub project_id: String,
}

impl std::fmt::Debug for ServiceAccount {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses the JSON Google issues for a service account key and checks its fields.
    pub fn from_json(text: &str) -> Result<ServiceAccount, ConfigError> {
        let account: ServiceAccount =
            serde_json::from_str(text).map_err(|e| ConfigError::ServiceAccount(e.to_string()))?;
        for (name, value) in [
            ("client_email", &account.client_email),
            ("private_key", &account.private_key),
            ("token_uri", &account.token_uri),
            ("project_id", &account.project_id),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::ServiceAccount(format!("`{name}` is empty")));
            }
        }
        check_endpoint(&account.token_uri)?;
        if !account
            .project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == ':')
        {
            return Err(ConfigError::ServiceAccount(format!(
                "`project_id` {:?} has characters a project id cannot have",
                account.project_id
            )));
        }
        Ok(account)
    }
}

/// Firebase Cloud Messaging (HTTP v1).
#[derive(Clone, Debug)]
pub struct FcmSettings {
    /// The service account that sends.
    pub account: ServiceAccount,
    /// Base URL of the messages API (`https://fcm.googleapis.com`); the bridge posts to
    /// `{endpoint}/v1/projects/{project_id}/messages:send`.
    pub endpoint: String,
    /// Overrides the service account's `token_uri` (a relay or a test server).
    pub token_uri: Option<String>,
    /// Limit for one HTTP request.
    pub timeout: Duration,
}

/// The default FCM API base.
pub const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";

/// Which APNs environment the app's tokens belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com`: App Store and TestFlight builds.
    Production,
    /// `https://api.sandbox.push.apple.com`: development builds.
    Sandbox,
}

impl ApnsEnvironment {
    /// Apple's endpoint for this environment.
    pub fn endpoint(self) -> &'static str {
        match self {
            ApnsEnvironment::Production => "https://api.push.apple.com",
            ApnsEnvironment::Sandbox => "https://api.sandbox.push.apple.com",
        }
    }
}

/// Apple Push Notification service with token-based (`.p8`) authentication.
#[derive(Clone)]
pub struct ApnsSettings {
    /// The `.p8` file's contents: a PKCS#8 PEM P-256 private key.
    pub key_pem: Vec<u8>,
    /// The key's 10-character id (JWT `kid`).
    pub key_id: String,
    /// The developer team id (JWT `iss`).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Base URL; the environment's default unless a relay or test server is configured.
    pub endpoint: String,
    /// Limit for one HTTP request.
    pub timeout: Duration,
}

impl std::fmt::Debug for ApnsSettings {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsSettings")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Refuses an endpoint that is not an absolute http(s) URL.
pub fn check_endpoint(url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::Endpoint(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_fields_are_checked() {
        let ok = r#"{"type":"service_account","client_email":"a@b","private_key":"k",
            "token_uri":"https://oauth2.googleapis.com/token","project_id":"p-1"}"#;
        assert!(ServiceAccount::from_json(ok).is_ok());
        let missing = r#"{"client_email":"a@b","private_key":"k","project_id":"p"}"#;
        assert!(ServiceAccount::from_json(missing)
            .unwrap_err()
            .to_string()
            .contains("token_uri"));
        let bad_uri = ok.replace("https://oauth2", "ftp://oauth2");
        assert!(ServiceAccount::from_json(&bad_uri).is_err());
        let bad_project = ok.replace("p-1", "p/../x");
        assert!(ServiceAccount::from_json(&bad_project).is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let ok = r#"{"client_email":"a@b","private_key":"SECRET",
            "token_uri":"https://t","project_id":"p"}"#;
        let text = format!("{:?}", ServiceAccount::from_json(ok).unwrap());
        assert!(!text.contains("SECRET"), "{text}");
    }
}
