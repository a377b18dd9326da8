//! `chatd user …`: account commands that work whether the server runs or not. With the server
//! stopped they open the store directly; while it runs (the store is locked by it) they go through
//! its admin HTTP API with the admin token.

use anyhow::{anyhow, bail, Context, Result};
use std::sync::Arc;

use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_kv::{KvStore, StoreError};
use clap::Subcommand;
use serde_json::json;

use crate::config::Config;
use crate::datadir;
use crate::server::open_store;

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        /// User id: 1-64 of A-Z a-z 0-9 _ . -
        id: String,
        /// The password.
        #[arg(long)]
        password: String,
        /// Give out again an id that was removed (refused without this flag).
        #[arg(long)]
        reclaim: bool,
    },
    /// Change an account's password (its sessions are closed).
    Passwd {
        /// User id.
        id: String,
        /// The new password.
        #[arg(long)]
        password: String,
    },
    /// Remove an account (its sessions are closed).
    Remove {
        /// User id.
        id: String,
    },
    /// List accounts, one per line.
    List,
}

/// Runs one account command and prints its result.
pub fn run(config: &Config, command: UserCommand) -> Result<()> {
    match open_store(config) {
        Ok(store) => offline(config, store, command),
        Err(StoreError::Locked) => online(config, command),
        Err(e) => Err(anyhow!(e).context(format!(
            "cannot open the store in {}",
            config.storage.path.display()
        ))),
    }
}

fn offline(config: &Config, store: Arc<dyn KvStore>, command: UserCommand) -> Result<()> {
    let accounts = Accounts::new(Arc::new(EmbeddedAccounts::new(store.clone())));
    match command {
        UserCommand::Add {
            id,
            password,
            reclaim,
        } => {
            accounts.add_reclaiming(&id, &password, reclaim)?;
            println!("added {id}");
        }
        UserCommand::Passwd { id, password } => {
            accounts.set_password(&id, &password)?;
            println!("password changed for {id}");
        }
        UserCommand::Remove { id } => {
            accounts.remove(&id)?;
            // Starting messaging finishes every pending clean-up, this one included.
            let log = chatd_embedded::log::EmbeddedLog::open(store)
                .context("the user was removed, but the message log could not be opened")?;
            let chat = Chat::open(
                Arc::new(log),
                accounts,
                ChatConfig {
                    node_id: config.node.id,
                    ..ChatConfig::default()
                },
                Arc::new(NoDelivery),
            )
            .context("the user was removed, but its data could not be cleaned up")?;
            chat.close();
            println!("removed {id}");
        }
        UserCommand::List => {
            for user in accounts.list()? {
                println!("{user}");
            }
        }
    }
    Ok(())
}

fn online(config: &Config, command: UserCommand) -> Result<()> {
    let dir = &config.storage.path;
    let addr = datadir::running_http_addr(dir)?;
    let token = datadir::read_admin_token(dir, config.auth.admin_token.as_deref())?;
    let base = format!("http://{addr}/admin/users");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let (request, done) = match &command {
        UserCommand::Add {
            id,
            password,
            reclaim,
        } => (
            client
                .post(&base)
                .json(&json!({"user": id, "password": password, "reclaim": reclaim})),
            format!("added {id}"),
        ),
        UserCommand::Passwd { id, password } => (
            client
                .put(format!("{base}/{id}/password"))
                .json(&json!({"password": password})),
            format!("password changed for {id}"),
        ),
        UserCommand::Remove { id } => (
            client.delete(format!("{base}/{id}")),
            format!("removed {id}"),
        ),
        UserCommand::List => (client.get(&base), String::new()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach the running server at {addr}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(json!({}));
        if !status.is_success() {
            let why = body["error"].as_str().unwrap_or("request failed");
            bail!("{why} (HTTP {status})");
        }
        if let UserCommand::List = command {
            for user in body["users"].as_array().into_iter().flatten() {
                if let Some(user) = user.as_str() {
                    println!("{user}");
                }
            }
        } else {
            println!("{done}");
        }
        Ok(())
    })
}

/// Where the offline commands' messaging hands deliveries: nobody is connected.
struct NoDelivery;

impl Deliver for NoDelivery {
    fn deliver(&self, _item: Outgoing) {}

    fn is_online(&self, _user: &str) -> bool {
        false
    }
}
