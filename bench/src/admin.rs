//! chatd's operator side: reading its data directory and creating users via the admin API.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cli::ChatdArgs;
use crate::mqtt::Endpoint;

/// Requests to the admin API at the same time (password hashing is expensive server-side).
const CONCURRENCY: usize = 8;

/// What chatd publishes in its storage directory.
#[derive(Debug, Default)]
pub struct ChatdFiles {
    /// `mqtt` from listen.json.
    pub mqtt: Option<String>,
    /// `http` from listen.json.
    pub http: Option<String>,
    /// Content of admin.token.
    pub token: Option<String>,
}

/// Reads `{dir}/listen.json` and `{dir}/admin.token` (each optional).
pub fn read_chatd_files(dir: &Path) -> Result<ChatdFiles> {
    let mut files = ChatdFiles::default();
    let listen = dir.join("listen.json");
    if listen.exists() {
        let text = std::fs::read_to_string(&listen)
            .with_context(|| format!("reading {}", listen.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", listen.display()))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        files.mqtt = get("mqtt");
        files.http = get("http");
    }
    let token = dir.join("admin.token");
    if token.exists() {
        let text = std::fs::read_to_string(&token)
            .with_context(|| format!("reading {}", token.display()))?;
        files.token = Some(text.trim().to_string());
    }
    Ok(files)
}

/// The MQTT address as given: `mqtt`, else `listen.json` of `chatd_data`, else the default.
pub fn mqtt_text(mqtt: Option<&str>, chatd_data: Option<&Path>) -> Result<String> {
    let from_files = match chatd_data {
        Some(dir) => read_chatd_files(dir)?.mqtt,
        None => None,
    };
    Ok(mqtt
        .map(str::to_string)
        .or(from_files)
        .unwrap_or_else(|| "127.0.0.1:1883".into()))
}

/// Fills in the MQTT address, the HTTP address and the admin token from the command line, then
/// from `--chatd-data`, then defaults.
pub fn resolve(args: &ChatdArgs) -> Result<(Endpoint, String, String)> {
    let files = match &args.chatd_data {
        Some(dir) => read_chatd_files(dir)?,
        None => ChatdFiles::default(),
    };
    let mqtt = args
        .mqtt
        .clone()
        .or(files.mqtt)
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let http = args
        .http
        .clone()
        .or(files.http)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let token = args
        .admin_token
        .clone()
        .or(files.token)
        .ok_or_else(|| anyhow!("an admin token is needed: --admin-token or --chatd-data"))?;
    Ok((Endpoint::parse(&mqtt)?, http, token))
}

/// A client of chatd's admin HTTP API.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// A client for the HTTP listener at `addr` (`host:port` or `http://host:port`).
    /// It talks to that address only: no proxies, no redirects.
    pub fn new(addr: &str, token: &str) -> Result<Self> {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Admin {
            http,
            base,
            token: token.to_string(),
        })
    }

    /// Creates `user`; `Ok(false)` when it already exists (409).
    pub async fn create_user(&self, user: &str, password: &str) -> Result<bool> {
        let resp = self
            .http
            .post(format!("{}/admin/users", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "user": user, "password": password }))
            .send()
            .await
            .with_context(|| format!("POST {}/admin/users", self.base))?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            status => {
                let body = resp.text().await.unwrap_or_default();
                bail!("creating user {user}: HTTP {status}: {}", body.trim())
            }
        }
    }

    /// Lists the existing users (`GET /admin/users`).
    pub async fn list_users(&self) -> Result<HashSet<String>> {
        let resp = self
            .http
            .get(format!("{}/admin/users", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {}/admin/users", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("listing users: HTTP {status}: {}", body.trim());
        }
        let v: serde_json::Value = resp.json().await?;
        let users = v
            .get("users")
            .and_then(|u| u.as_array())
            .ok_or_else(|| anyhow!("listing users: no \"users\" array"))?;
        Ok(users
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect())
    }

    /// Creates those of `users` that do not exist yet (a few requests at a time; existing
    /// accounts keep their password). Returns (created, already existing).
    pub async fn ensure_users(&self, users: &[String], password: &str) -> Result<(usize, usize)> {
        // Skipping known users saves a password hash per user on the server.
        let known = self.list_users().await?;
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut set = JoinSet::new();
        let mut existing = 0;
        for user in users {
            if known.contains(user) {
                existing += 1;
                continue;
            }
            let (admin, user, password, limit) = (
                self.clone(),
                user.clone(),
                password.to_string(),
                limit.clone(),
            );
            set.spawn(async move {
                let _permit = limit.acquire().await;
                admin.create_user(&user, &password).await
            });
        }
        let mut created = 0;
        while let Some(joined) = set.join_next().await {
            match joined.map_err(|e| anyhow!(e))?? {
                true => created += 1,
                false => existing += 1,
            }
        }
        Ok((created, existing))
    }
}
