//! `chatd user …`: account commands that work whether the server runs or not. With the server
//! stopped they open the store directly; while it runs (the store is locked by it) they go through
//! its admin HTTP API with the admin token.
//!
//! `chatd store migrate …`: converting the data directory's store to another engine, offline
//! only (`chatd_kv::migrate`).

use anyhow::{anyhow, bail, Context, Result};
use std::sync::Arc;

use chatd_core::accounts::Accounts;
use chatd_core::messaging::{Chat, ChatConfig};
use chatd_core::outbox::{Deliver, Outgoing};
use chatd_kv::migrate::{self, MigrateError};
use chatd_kv::{Engine, StoreError, StoreHealth};
use clap::{ArgGroup, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::datadir;
use crate::server::open_store;
use crate::stores::{self, Stores};

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
    if config.cluster.is_cluster() {
        // The cluster's database is shared: the command writes there whether nodes run or not.
        return offline(config, stores::open(config)?, command);
    }
    match open_store(config) {
        Ok(store) => offline(
            config,
            stores::on_embedded(store, Arc::new(StoreHealth::default()))?,
            command,
        ),
        Err(StoreError::Locked) => online(config, command),
        Err(e) => Err(anyhow!(e).context(format!(
            "cannot open the store in {}",
            config.storage.path.display()
        ))),
    }
}

fn offline(config: &Config, stores: Stores, command: UserCommand) -> Result<()> {
    let accounts = if config.cluster.is_cluster() {
        Accounts::shared(stores.accounts.clone())
    } else {
        Accounts::new(stores.accounts.clone())
    };
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
            let chat = Chat::open(
                stores.log.clone(),
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

/// Store commands (the server must be stopped).
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Convert the data directory's store to another engine (offline; the old store is kept
    /// as `store.old` or `fjall.old` until `--remove-old`).
    Migrate(MigrateArgs),
}

/// `chatd store migrate --to ENGINE | --remove-old`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["to", "remove_old"])))]
pub struct MigrateArgs {
    /// The engine to convert the store to: sled or fjall.
    #[arg(long, value_name = "ENGINE")]
    pub to: Option<Engine>,
    /// Delete the old copy (store.old / fjall.old) an earlier migration left, once the
    /// data directory's store is on the other engine.
    #[arg(long)]
    pub remove_old: bool,
}

/// Runs one store command and prints what it did.
pub fn run_store(config: &Config, command: StoreCommand) -> Result<()> {
    let StoreCommand::Migrate(args) = command;
    let dir = &config.storage.path;
    match args.to {
        Some(to) => {
            // The new store keeps the memtable size it is created with: the configured one.
            let memtable = config.storage.memtable_mb.saturating_mul(1024 * 1024);
            let done = migrate::migrate_data_dir_with(dir, to, memtable).map_err(migrate_error)?;
            if let Some(leftover) = &done.removed_leftover {
                println!(
                    "removed {} left by an interrupted migration, and started again",
                    leftover.display()
                );
            }
            let summary = &done.summary;
            println!(
                "migrated the store from {} to {}: {} keys, {} bytes in {:.2} s; verified (key \
                 count and SHA-256 of every pair)",
                done.from,
                done.to,
                summary.keys,
                summary.bytes,
                done.elapsed.as_secs_f64(),
            );
            println!("new store: {}", done.path.display());
            println!(
                "old store: moved to {}; once the server runs well on {}, remove it with \
                 `chatd store migrate --remove-old`",
                done.old_path.display(),
                done.to,
            );
            println!(
                "note: storage.engine in the configuration was not changed; it only matters \
                 for a new data directory (an existing one is opened with its store's engine)"
            );
        }
        None => {
            for removed in migrate::remove_old(dir).map_err(migrate_error)? {
                println!("removed {}", removed.display());
            }
        }
    }
    Ok(())
}

fn migrate_error(e: MigrateError) -> anyhow::Error {
    anyhow!(e).context("store migrate")
}

/// Where the offline commands' messaging hands deliveries: nobody is connected.
struct NoDelivery;

impl Deliver for NoDelivery {
    fn deliver(&self, _item: Outgoing) {}

    fn is_online(&self, _user: &str) -> bool {
        false
    }
}
