//! `chatd user …`: account commands that work whether the server runs or not. With the server
//! stopped they open the store directly; while it runs (the store is locked by it) they go through
//! its admin HTTP API with the admin token.

use anyhow::{anyhow, bail, Context, Result};
use chatd_plugins::accounts::Accounts;
use chatd_plugins::store::StoreError;
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
        Ok(store) => offline(Accounts::new(store), command),
        Err(StoreError::Locked) => online(config, command),
        Err(e) => Err(anyhow!(e).context(format!(
            "cannot open the store in {}",
            config.storage.path.display()
        ))),
    }
}

fn offline(accounts: Accounts, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add { id, password } => {
            accounts.add(&id, &password)?;
            println!("added {id}");
        }
        UserCommand::Passwd { id, password } => {
            accounts.set_password(&id, &password)?;
            println!("password changed for {id}");
        }
        UserCommand::Remove { id } => {
            accounts.remove(&id)?;
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
        UserCommand::Add { id, password } => (
            client
                .post(&base)
                .json(&json!({"user": id, "password": password})),
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
