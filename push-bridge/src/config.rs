//! `[push]` of the broker's TOML file (with `[push.fcm]` and `[push.apns]`): its defaults and
//! the checks that name the key of a value that cannot work; the bridge's settings made from
//! it; and the credential files it points at (FCM service account JSON, APNs `.p8` key),
//! checked when the adapters are built so that a bad file stops the server at start, not at
//! the first push.

use std::path::PathBuf;
use std::time::Duration;

use chatd_core::config::{first_invalid, InvalidSetting};
use serde::Deserialize;

/// `[push]`: push notifications for users with no device online. At least one of
/// `[push.fcm]` and `[push.apns]` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Messages to one user in one conversation within this many ms become one notification.
    pub collapse_window_ms: u64,
    /// Put the start of the message text in notifications (off: sender and count only).
    pub previews: bool,
    /// Most push requests in flight at once.
    pub concurrency: usize,
    /// Retries of one notification (429, 5xx, network errors) before it is dropped.
    pub max_retries: u32,
    /// First retry delay in ms, doubled for each further retry (`Retry-After` wins if longer).
    pub retry_base_ms: u64,
    /// Longest wait before one retry, in ms.
    pub retry_max_ms: u64,
    /// Safety-net scan for pending jobs, in ms.
    pub scan_interval_ms: u64,
    /// How long a notification stays worth delivering, in seconds (APNs `apns-expiration`,
    /// FCM `android.ttl`).
    pub ttl_secs: u64,
    /// Limit for one HTTP request to a push service, in ms.
    pub timeout_ms: u64,
    /// Firebase Cloud Messaging.
    pub fcm: Option<FcmConfig>,
    /// Apple Push Notification service.
    pub apns: Option<ApnsConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            collapse_window_ms: 2000,
            previews: false,
            concurrency: 32,
            max_retries: 5,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            scan_interval_ms: 1000,
            ttl_secs: 86_400,
            timeout_ms: 10_000,
            fcm: None,
            apns: None,
        }
    }
}

/// `[push.fcm]`: FCM HTTP v1 with a service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service account key file (JSON) downloaded from the Firebase console.
    pub service_account: PathBuf,
    /// Base URL of the FCM API; default `https://fcm.googleapis.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Overrides the service account's `token_uri` (OAuth token endpoint).
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// `[push.apns]`: APNs with a token-based (`.p8`) key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` key file from the Apple developer account.
    pub key_file: PathBuf,
    /// The key's id (10 characters).
    pub key_id: String,
    /// The developer team id (10 characters).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `production` (default) or `sandbox`: which Apple endpoint the app's tokens belong to.
    #[serde(default)]
    pub environment: ApnsEnvironment,
    /// Overrides the environment's endpoint (a relay or a test server).
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl PushConfig {
    /// The bridge's settings: the section's values as durations, the rest at their defaults.
    pub fn bridge_settings(&self) -> BridgeSettings {
        BridgeSettings {
            collapse_window: Duration::from_millis(self.collapse_window_ms),
            previews: self.previews,
            concurrency: self.concurrency,
            max_retries: self.max_retries,
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            scan_interval: Duration::from_millis(self.scan_interval_ms),
            ttl: Duration::from_secs(self.ttl_secs),
            ..BridgeSettings::default()
        }
    }

    /// Checks the section's values (the credential files are read when the adapters are
    /// built), naming the key of the first that cannot work.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.fcm.is_none() && self.apns.is_none() {
            return Err(InvalidSetting::new(
                "push",
                "configure [push.fcm] or [push.apns] (or remove [push] to turn push off)",
            ));
        }
        first_invalid(&[
            (
                "push.collapse_window_ms",
                self.collapse_window_ms <= 600_000,
                "must be at most 600000 (10 minutes)",
            ),
            (
                "push.concurrency",
                (1..=1024).contains(&self.concurrency),
                "must be between 1 and 1024",
            ),
            (
                "push.max_retries",
                self.max_retries <= 20,
                "must be at most 20",
            ),
            (
                "push.retry_base_ms",
                (10..=60_000).contains(&self.retry_base_ms),
                "must be between 10 and 60000",
            ),
            (
                "push.retry_max_ms",
                self.retry_max_ms >= self.retry_base_ms && self.retry_max_ms <= 3_600_000,
                "must be at least push.retry_base_ms and at most 3600000",
            ),
            (
                "push.scan_interval_ms",
                (50..=60_000).contains(&self.scan_interval_ms),
                "must be between 50 and 60000",
            ),
            (
                "push.ttl_secs",
                self.ttl_secs <= 2_419_200,
                "must be at most 2419200 (28 days)",
            ),
            (
                "push.timeout_ms",
                (100..=120_000).contains(&self.timeout_ms),
                "must be between 100 and 120000",
            ),
        ])?;
        if let Some(fcm) = &self.fcm {
            fcm.validate()?;
        }
        if let Some(apns) = &self.apns {
            apns.validate()?;
        }
        Ok(())
    }
}

/// An optional URL that, when set, must be an absolute http(s) URL.
fn url_ok(url: &Option<String>) -> bool {
    url.as_deref().is_none_or(|u| check_endpoint(u).is_ok())
}

impl FcmConfig {
    /// Checks `[push.fcm]`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.service_account.as_os_str().is_empty() {
            return Err(InvalidSetting::new(
                "push.fcm.service_account",
                "must not be empty",
            ));
        }
        first_invalid(&[
            (
                "push.fcm.endpoint",
                url_ok(&self.endpoint),
                "must start with http:// or https://",
            ),
            (
                "push.fcm.token_uri",
                url_ok(&self.token_uri),
                "must start with http:// or https://",
            ),
        ])
    }
}

impl ApnsConfig {
    /// Checks `[push.apns]`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.key_file.as_os_str().is_empty() {
            return Err(InvalidSetting::new(
                "push.apns.key_file",
                "must not be empty",
            ));
        }
        let id_ok = |s: &str| {
            !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric())
        };
        let topic_ok = !self.topic.is_empty()
            && !self
                .topic
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        first_invalid(&[
            (
                "push.apns.key_id",
                id_ok(&self.key_id),
                "must be the key's id: letters and digits (10 characters)",
            ),
            (
                "push.apns.team_id",
                id_ok(&self.team_id),
                "must be the team id: letters and digits (10 characters)",
            ),
            (
                "push.apns.topic",
                topic_ok,
                "must be the app's bundle id, without spaces",
            ),
            (
                "push.apns.endpoint",
                url_ok(&self.endpoint),
                "must start with http:// or https://",
            ),
        ])
    }
}

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

/// Which APNs environment the app's tokens belong to (`push.apns.environment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `https://api.push.apple.com`: App Store and TestFlight builds.
    #[default]
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
    fn section_checks_name_their_keys() {
        let fcm = FcmConfig {
            service_account: "sa.json".into(),
            endpoint: None,
            token_uri: None,
        };
        let apns = ApnsConfig {
            key_file: "k.p8".into(),
            key_id: "ABC123DEFG".into(),
            team_id: "TEAM123456".into(),
            topic: "com.example.chat".into(),
            environment: ApnsEnvironment::default(),
            endpoint: None,
        };
        let ok = PushConfig {
            fcm: Some(fcm.clone()),
            apns: Some(apns.clone()),
            ..PushConfig::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.bridge_settings().collapse_window, Duration::from_secs(2));
        assert_eq!(apns.environment, ApnsEnvironment::Production);
        let cases = [
            (PushConfig::default(), "push"),
            (
                PushConfig {
                    retry_max_ms: 100,
                    ..ok.clone()
                },
                "push.retry_max_ms",
            ),
            (
                PushConfig {
                    fcm: Some(FcmConfig {
                        token_uri: Some("oauth.example".into()),
                        ..fcm.clone()
                    }),
                    ..ok.clone()
                },
                "push.fcm.token_uri",
            ),
            (
                PushConfig {
                    apns: Some(ApnsConfig {
                        team_id: String::new(),
                        ..apns.clone()
                    }),
                    ..ok.clone()
                },
                "push.apns.team_id",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().key, key, "{cfg:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let ok = r#"{"client_email":"a@b","private_key":"SECRET",
            "token_uri":"https://t","project_id":"p"}"#;
        let text = format!("{:?}", ServiceAccount::from_json(ok).unwrap());
        assert!(!text.contains("SECRET"), "{text}");
    }
}
