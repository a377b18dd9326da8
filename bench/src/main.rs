//! chatbench — load generator for chatd and for plain MQTT brokers.
//!
//! `chatbench chat …` loads chatd with 1:1 chat traffic; `chatbench raw …` runs the same shape of
//! load as plain MQTT QoS 1 publish/subscribe against any broker. See `chatbench --help`.

mod admin;
mod chat;
mod cli;
mod clock;
mod control;
mod mqtt;
mod pace;
mod publisher;
mod raw;
mod receipts;
mod report;
mod stamp;
mod stats;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Mode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected mode and prints its report.
fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let json = match &cli.mode {
        Mode::Chat(a) => a.load.json,
        Mode::Raw(a) => a.load.json,
    };
    let report = runtime.block_on(async {
        let limit = match &cli.mode {
            Mode::Chat(a) => a.load.duration_limit,
            Mode::Raw(a) => a.load.duration_limit,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(limit);
        match &cli.mode {
            Mode::Chat(args) => chat::run(args, deadline).await,
            Mode::Raw(args) => raw::run(args, deadline).await,
        }
    })?;
    // Tasks that outlived the run (none normally) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if json {
        report.write_table(&mut std::io::stderr())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", report.to_json_line())?;
    } else {
        report.write_table(&mut std::io::stdout().lock())?;
    }
    Ok(())
}
