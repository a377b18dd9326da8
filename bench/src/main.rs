//! chatbench — load generator for chatd and for plain MQTT brokers.
//!
//! `chatbench chat …` loads chatd with 1:1 chat traffic; `chatbench group …` measures group
//! fan-out and the 1:1 latency beside it; `chatbench raw …` runs the 1:1 shape of load as plain
//! MQTT QoS 1 publish/subscribe against any broker; `chatbench connect …` measures idle
//! connections held, memory per connection, connects/s and reconnect storms; `chatbench
//! generate …` builds a large store offline, and `startup`, `reads` and `replay` measure chatd
//! on it. See `chatbench --help`.

mod acks;
mod admin;
mod chat;
mod cli;
mod clock;
mod connect;
mod connect_report;
mod control;
mod cpu;
mod fanout;
mod generate;
mod group;
mod group_report;
mod group_setup;
mod mqtt;
mod pace;
mod pairs;
mod population;
mod procmem;
mod publisher;
mod raw;
mod rawconn;
mod reads;
mod receipts;
mod replay;
mod report;
mod sources;
mod stamp;
mod startup;
mod stats;
mod token;
mod windows;
mod wire;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Mode};
use report::Render;

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

/// The deadline of modes without `--duration-limit` (a day: in effect none).
const OFFLINE_LIMIT: u64 = 86_400;

/// Runs the selected mode and prints its report.
fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (json, limit) = match &cli.mode {
        Mode::Chat(a) => (a.load.json, a.duration_limit()),
        Mode::Group(a) => (a.load.json, a.load.duration_limit),
        Mode::Raw(a) => (a.load.json, a.load.duration_limit),
        Mode::Connect(a) => (a.json, a.duration_limit),
        Mode::Generate(a) => (a.json, OFFLINE_LIMIT),
        Mode::Startup(a) => (a.json, OFFLINE_LIMIT),
        Mode::Reads(a) => (a.store.json, a.store.duration_limit),
        Mode::Replay(a) => (a.store.json, a.store.duration_limit),
    };
    let limit = Duration::from_secs(limit);
    let report: Box<dyn Render> = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        anyhow::Ok(match &cli.mode {
            Mode::Chat(args) => Box::new(chat::run(args, deadline).await?) as Box<dyn Render>,
            Mode::Group(args) => Box::new(group::run(args, deadline).await?),
            Mode::Raw(args) => Box::new(raw::run(args, deadline).await?),
            Mode::Connect(args) => Box::new(connect::run(args, deadline).await?),
            // Offline and blocking (generate, startup): nothing else runs on the runtime then.
            Mode::Generate(args) => Box::new(generate::run(args)?),
            Mode::Startup(args) => Box::new(startup::run(args)?),
            Mode::Reads(args) => Box::new(reads::run(args, deadline).await?),
            Mode::Replay(args) => Box::new(replay::run(args, deadline).await?),
        })
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
