//! `chatbench startup`: how long chatd takes from its start to `chatd ready` on a given data
//! directory, and how much of that is opening the store and the message log.
//!
//! chatd writes `listen.json` right before it logs `chatd ready` (after the store, the message
//! log, messaging and every listener are up), and removes a stale one as soon as the store is
//! open, so the first moment the file exists is the ready moment, at no cost to parse logs.
//! The store is then opened in this process too, after chatd has stopped (it holds the store's
//! lock while it runs), to tell the engine's open apart from chatd's own start-up steps.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chatd_core::ports::log::MessageLog;
use chatd_embedded::log::EmbeddedLog;
use chatd_kv::{Engine, EngineConfig};
use serde::Serialize;

use crate::cli::StartupArgs;
use crate::procmem;
use crate::report::Render;

/// How often the data directory is looked at for `listen.json`.
const POLL: Duration = Duration::from_millis(1);

/// One timed start of chatd.
#[derive(Debug, Clone, Serialize)]
pub struct StartRun {
    /// Seconds from spawning chatd to its `listen.json`.
    pub ready_s: f64,
    /// chatd's resident memory when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Bytes chatd had read when ready (`rchar`: files and sockets, page-cache hits
    /// included): far below the store's size when start-up does not scan it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
    /// Seconds from SIGTERM to its exit.
    pub stop_s: f64,
}

/// What `chatbench startup` measured.
#[derive(Debug, Serialize)]
pub struct StartupReport {
    /// Always `startup`.
    pub mode: &'static str,
    /// The data directory.
    pub data: String,
    /// Bytes of every file under it.
    pub store_bytes: u64,
    /// Every start of chatd, in order.
    pub runs: Vec<StartRun>,
    /// Seconds to open the store alone (`chatd_kv::open`), in this process.
    pub store_open_s: f64,
    /// Seconds to open the message log on it (`EmbeddedLog::open`: the groups index check and
    /// the newest id).
    pub log_open_s: f64,
    /// Seconds to read the newest id once more (what messaging's start reads first).
    pub newest_id_s: f64,
}

impl Render for StartupReport {
    fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "chatbench startup: {} ({:.1} MB on disk)",
            self.data,
            self.store_bytes as f64 / 1e6
        )?;
        for (i, r) in self.runs.iter().enumerate() {
            let mb = |label: &str, bytes: Option<u64>| {
                bytes
                    .map(|b| format!(", {label} {:.1} MB", b as f64 / 1e6))
                    .unwrap_or_default()
            };
            let rss = mb("rss", r.rss_bytes) + &mb("read", r.read_bytes);
            writeln!(
                out,
                "  run {}: start -> ready {:.3} s{rss}, SIGTERM -> exit {:.3} s",
                i + 1,
                r.ready_s,
                r.stop_s
            )?;
        }
        writeln!(
            out,
            "  store open {:.3} s, message log open {:.3} s, newest id {:.6} s",
            self.store_open_s, self.log_open_s, self.newest_id_s
        )
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs `chatbench startup`.
pub fn run(args: &StartupArgs) -> Result<StartupReport> {
    let listen = args.data.join("listen.json");
    if listen.exists() {
        bail!(
            "{} exists: is a chatd running on this data directory?",
            listen.display()
        );
    }
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let run = start_once(args, &listen).with_context(|| format!("start {}", i + 1))?;
        eprintln!(
            "  start {}: ready after {:.3} s, stopped in {:.3} s",
            i + 1,
            run.ready_s,
            run.stop_s
        );
        runs.push(run);
    }
    let (store_open_s, log_open_s, newest_id_s) = open_alone(&args.data)?;
    Ok(StartupReport {
        mode: "startup",
        data: args.data.display().to_string(),
        store_bytes: crate::generate::dir_bytes(&args.data)?,
        runs,
        store_open_s,
        log_open_s,
        newest_id_s,
    })
}

/// Starts chatd, waits for `listen` to appear, stops it.
fn start_once(args: &StartupArgs, listen: &Path) -> Result<StartRun> {
    let started = Instant::now();
    let mut child = Command::new(&args.chatd)
        .arg("--config")
        .arg(&args.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.chatd.display()))?;
    let timeout = Duration::from_secs(args.timeout);
    let ready_s = loop {
        if listen.exists() {
            break started.elapsed().as_secs_f64();
        }
        if let Some(status) = child.try_wait()? {
            bail!("chatd exited before it was ready ({status})");
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chatd not ready after {timeout:?}");
        }
        std::thread::sleep(POLL);
    };
    let rss_bytes = procmem::rss_bytes(child.id()).ok();
    let read_bytes = procmem::read_chars(child.id()).ok();
    let stopping = Instant::now();
    // SIGTERM: chatd shuts down gracefully (and removes listen.json); no libc for one signal.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        let _ = child.kill();
    }
    child.wait()?;
    let stop_s = stopping.elapsed().as_secs_f64();
    Ok(StartRun {
        ready_s,
        rss_bytes,
        read_bytes,
        stop_s,
    })
}

/// Opens the store and the message log of `data` the way chatd does; their times, and that of
/// one more newest-id read.
fn open_alone(data: &Path) -> Result<(f64, f64, f64)> {
    let t = Instant::now();
    let chosen = EngineConfig::for_data_dir(data, Engine::default())?;
    let store = chatd_kv::open(&chosen.config)?;
    let store_open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let log = EmbeddedLog::open(store)?;
    let log_open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    log.newest_id()?;
    let newest_id_s = t.elapsed().as_secs_f64();
    Ok((store_open_s, log_open_s, newest_id_s))
}
