//! `chatd db migrate`: creates or upgrades the cluster's PostgreSQL schema. The server never
//! does this itself (it refuses a database whose schema it does not know), so that an upgrade
//! is one deliberate step, run once, and not a race between nodes starting together.

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;

use crate::config::Config;

/// Database commands (`[postgres] url`).
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the schema in an empty database, or upgrade it to this build's version (safe to
    /// run again, and from several machines at once).
    Migrate,
}

/// Runs one database command and prints what it did.
pub fn run(config: &Config, command: DbCommand) -> Result<()> {
    let DbCommand::Migrate = command;
    let url = config.postgres.url.as_deref().ok_or_else(|| {
        anyhow!("config key `postgres.url` is not set: there is no database to migrate")
    })?;
    let found = chatd_postgres::migrate(url).context("db migrate")?;
    let now = chatd_postgres::schema::VERSION;
    match found {
        0 => println!("created the chatd schema, version {now}"),
        v if v == now => println!("the schema is up to date (version {now})"),
        v => println!("upgraded the schema from version {v} to {now}"),
    }
    Ok(())
}
