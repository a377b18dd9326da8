//! `chatd`: a chat backend that speaks MQTT. One binary, one TOML file. This is the thin command
//! line around the `chatd` library (`lib.rs`): parse arguments, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chatd::cli;
use chatd::config::Config;
use chatd::db_cli;
use chatd::signals::Signals;

/// mimalloc instead of glibc's malloc, for two measured reasons (docs/benchmarks.md): the store's
/// committer thread spent a fifth of its time in glibc's malloc and free (sled copies nodes on
/// every write), and 1:1 throughput went from ~9,500 to ~14,200 msg/s with mimalloc; and
/// argon2's ~19 MB blocks go back to the OS when freed (glibc kept them in per-thread arenas
/// unless its mmap threshold was pinned: RSS 650 MB after 40 logins).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage the store (offline).
    #[command(subcommand)]
    Store(cli::StoreCommand),
    /// Manage the cluster's PostgreSQL schema.
    #[command(subcommand)]
    Db(db_cli::DbCommand),
}

fn main() -> ExitCode {
    // Before any other thread allocates (see `allocator.rs`).
    chatd::allocator::keep_freed_memory();
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
        Some(Command::Store(command)) => cli::run_store(&config, command),
        Some(Command::Db(command)) => db_cli::run(&config, command),
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
    runtime.block_on(async {
        // Watched before anything is announced, so a supervisor that sends SIGTERM as soon as
        // listen.json appears gets a graceful shutdown, not the default kill.
        let signals = Signals::install()?;
        chatd::run(config, signals.wait()).await
    })
}
