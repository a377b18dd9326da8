//! `chatd`: a chat backend that speaks MQTT. One binary, one TOML file.

mod cli;
mod config;
mod datadir;
mod http;
mod hub;
mod listeners;
mod metrics;
mod router;
mod server;
mod session;
mod state;
mod tls;
mod transport;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "chatd", version, about = "Chat backend over MQTT")]
struct Args {
    /// Configuration file (TOML); without one, embedded defaults serve with data in ./data.
    #[arg(long, short, env = "CHATD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(cli::UserCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command {
        Some(Command::User(command)) => cli::run(&config, command),
        None | Some(Command::Serve) => serve(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::run(config))
}
