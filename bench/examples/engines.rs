//! The committer's write load on three embedded engines, without the network: how much of
//! chatd's 1:1 throughput the store engine allows. Each message writes what a 1:1 send writes —
//! `m/{id}` (300 bytes), `h/{conversation}/{id}`, `q/{recipient}/{id}`, `k/{sender}/{cid}`
//! (100 bytes) — after a `k/` lookup (the cid check, a miss); each batch also deletes the
//! previous batch's `q/` keys (the PUBACKs), is applied atomically and made durable (fsync)
//! before the next one. sled and fjall go through chatd's own stores (`chatd_kv::open`, fjall
//! made durable with `SyncAll`); redb is a candidate measured against them (docs/benchmarks.md,
//! "Which engine").
//!
//! `cargo run --release -p chatbench --features engines --example engines -- ENGINE MESSAGES BATCH`
//! with ENGINE `sled`, `fjall` or `redb`; data goes to a temporary directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chatd_kv::{EngineConfig, KvStore, Op};

/// Same allocator as chatd.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sender → recipient pairs the messages rotate over.
const PAIRS: u64 = 10;
const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("chat");

/// One engine under test: an atomic, durable batch, and a point read.
trait Engine {
    fn commit(&mut self, puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>>);
    fn get(&self, key: &[u8]);
}

/// One of chatd's own engines, through `KvStore`.
struct Kv(Arc<dyn KvStore>);

impl Engine for Kv {
    fn commit(&mut self, puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>>) {
        let mut ops: Vec<Op> = puts.into_iter().map(|(k, v)| Op::Put(k, v)).collect();
        ops.extend(deletes.into_iter().map(Op::Delete));
        self.0.apply(ops).expect("apply");
        self.0.flush().expect("flush");
    }
    fn get(&self, key: &[u8]) {
        self.0.get(key).expect("get");
    }
}

struct Redb(redb::Database);

impl Engine for Redb {
    fn commit(&mut self, puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>>) {
        let tx = self.0.begin_write().expect("redb begin");
        {
            let mut table = tx.open_table(TABLE).expect("redb table");
            for (k, v) in &puts {
                table
                    .insert(k.as_slice(), v.as_slice())
                    .expect("redb insert");
            }
            for k in &deletes {
                table.remove(k.as_slice()).expect("redb remove");
            }
        }
        // redb's commit is durable (fsync) by default.
        tx.commit().expect("redb commit");
    }
    fn get(&self, key: &[u8]) {
        let tx = self.0.begin_read().expect("redb read");
        if let Ok(table) = tx.open_table(TABLE) {
            table.get(key).expect("redb get");
        }
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    match engine {
        "sled" | "fjall" => {
            let engine: chatd_kv::Engine = engine.parse().expect("a chatd engine");
            Box::new(Kv(
                chatd_kv::open(&EngineConfig::new(engine, dir)).expect("open the store")
            ))
        }
        "redb" => {
            let db = redb::Database::create(dir.join("chat.redb")).expect("open redb");
            Box::new(Redb(db))
        }
        other => {
            eprintln!("engine `{other}`: choose sled, fjall or redb");
            std::process::exit(2);
        }
    }
}

fn id(n: u64) -> String {
    format!("{:020}", 1_000_000_000 + n)
}

fn recipient(n: u64) -> u64 {
    n % PAIRS + PAIRS
}

/// What message `n` writes.
fn message(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (id, from, to) = (id(n), n % PAIRS, recipient(n));
    vec![
        (format!("m/{id}").into_bytes(), vec![b'm'; 300]),
        (
            format!("h/d:bench{from}:bench{to}/{id}").into_bytes(),
            Vec::new(),
        ),
        (format!("q/bench{to}/{id}").into_bytes(), Vec::new()),
        (format!("k/bench{from}/c{n}").into_bytes(), vec![b'k'; 100]),
    ]
}

fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(engine), Some(total), Some(batch)) = (
        args.first(),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
        args.get(2)
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|b| *b > 0),
    ) else {
        eprintln!("usage: engines ENGINE MESSAGES BATCH");
        std::process::exit(2);
    };
    let dir = tempfile::Builder::new()
        .prefix("chatbench-engines-")
        .tempdir()
        .expect("temporary directory");
    let mut store = open(engine, dir.path());
    let started = Instant::now();
    let mut slowest = 0f64;
    let mut n = 0;
    while n < total {
        let batch_started = Instant::now();
        let mut puts = Vec::new();
        for i in n..n + batch {
            store.get(format!("k/bench{}/c{i}-unused", i % PAIRS).as_bytes());
            puts.extend(message(i));
        }
        let acked = (n.saturating_sub(batch)..n)
            .map(|i| format!("q/bench{}/{}", recipient(i), id(i)).into_bytes())
            .collect();
        store.commit(puts, acked);
        slowest = slowest.max(batch_started.elapsed().as_secs_f64());
        n += batch;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{engine}: {n} messages in batches of {batch}: {:.0} msg/s, {:.2} ms per batch, slowest {:.1} ms, {:.0} MB on disk",
        n as f64 / secs,
        secs * 1000.0 / (n / batch) as f64,
        slowest * 1000.0,
        disk_bytes(dir.path()) as f64 / 1e6
    );
}
