//! Choosing and opening an engine: the one place that turns configuration into a [`KvStore`],
//! so that servers, tools, tests and benches all open stores the same way and a new engine is
//! added by one more [`Engine`] variant.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::{FjallStore, KvStore, SledStore, StoreError, DEFAULT_BACKGROUND_NICE};

/// The key-value engines chatd can run on (`storage.engine` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// sled 0.34, the engine of every data directory created before fjall became the default
    /// (still opened as such).
    Sled,
    /// fjall 3, an LSM-tree engine: the default for new data directories (it writes chatd's
    /// batches about 2.5 times faster than sled, into a smaller store).
    #[default]
    Fjall,
}

impl Engine {
    /// Every engine, in the order error messages list them.
    pub const ALL: &'static [Engine] = &[Engine::Sled, Engine::Fjall];

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Fjall => "fjall",
        }
    }

    /// The engine's directory inside a chatd data directory: `{storage.path}/store` for sled
    /// (the layout every existing deployment has), `{storage.path}/fjall` for fjall.
    pub(crate) fn dir_in_data_dir(self) -> &'static str {
        match self {
            Engine::Sled => "store",
            Engine::Fjall => "fjall",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `storage.engine` value that names no engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage engine `{given}` (known: {known})")]
pub struct UnknownEngine {
    /// The name as written.
    pub given: String,
    /// The accepted names, comma-separated.
    pub known: String,
}

impl FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Engine, UnknownEngine> {
        Engine::ALL
            .iter()
            .copied()
            .find(|engine| engine.name() == s)
            .ok_or_else(|| UnknownEngine {
                given: s.to_string(),
                known: Engine::ALL
                    .iter()
                    .map(|engine| engine.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The block cache an engine gets unless configured otherwise (`storage.cache_mb`): 32 MiB.
///
/// Small on purpose: the operating system's page cache keeps the store's hot files in memory
/// anyway, and the server's resident memory should not grow with the store (sled's own
/// default is 1 GiB, which it fills as the store grows).
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The most a fjall memtable holds before it is written out as a table, for stores created
/// unless configured otherwise (`storage.memtable_mb`): 32 MiB.
///
/// fjall's own default is 64 MiB. Each memtable is dropped whole, entry by entry, once it is
/// written out, and fjall drops it while it holds the lock that every write takes: at
/// 10,000 msg/s a 64 MiB memtable (about 600,000 entries) stopped every write for 110–240 ms
/// every 5.5 s. A smaller memtable makes that pause shorter (in proportion) and more frequent,
/// and bounds memory (the active memtable plus those being written out) and the journal that
/// start-up replays; but it also means more, smaller tables to compact, which costs
/// throughput (16 MiB: about 10 % fewer msg/s than 64). 32 MiB keeps the server's memory at
/// 5,000 msg/s well under 256 MB. See docs/benchmarks.md, "the 100–200 ms stalls".
pub const DEFAULT_MEMTABLE_BYTES: u64 = 32 * 1024 * 1024;

/// How much of a table fjall is writing is handed to the disk at a time, and how much of a
/// file it deleted is freed at a time, unless configured otherwise (`storage.table_pacing_kb`):
/// 1 MiB.
///
/// Without it the kernel keeps a whole table (14–65 MiB) dirty until fjall's fsync at its
/// end and frees a deleted one all at once, and the journal fsyncs that follow wait behind
/// it: p99 20–32 ms at 10,000 msg/s on the benchmark machine against 8–17 ms with it
/// (docs/benchmarks.md, "fjall's table writes and deletions paced").
pub const DEFAULT_PACING_CHUNK_BYTES: u64 = 1024 * 1024;

/// Which engine to open, and the directory it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The engine's own directory (created if missing); nothing else should live in it.
    pub path: PathBuf,
    /// The engine.
    pub engine: Engine,
    /// The engine's block (page) cache in bytes.
    pub cache_bytes: u64,
    /// fjall: the largest memtable in bytes, recorded when the store is created (fjall keeps
    /// a store's first value); sled has no memtable.
    pub memtable_bytes: u64,
    /// fjall: how much of a table being written is handed to the disk, and of a deleted file
    /// freed, at a time; 0 leaves both to fjall (see `table_pacer.rs`). sled: unused.
    pub pacing_chunk_bytes: u64,
    /// fjall: how many nice levels below the rest of the process its flush and compaction
    /// threads run (0: the same; see `background_priority.rs`). sled: unused.
    pub background_nice: u8,
}

impl EngineConfig {
    /// `engine` on exactly the directory `path` (tools, tests and benches with a scratch
    /// directory).
    pub fn new(engine: Engine, path: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            path: path.into(),
            engine,
            cache_bytes: DEFAULT_CACHE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
            pacing_chunk_bytes: DEFAULT_PACING_CHUNK_BYTES,
            background_nice: DEFAULT_BACKGROUND_NICE,
        }
    }

    /// The same store with a block cache of `bytes`.
    pub fn with_cache_bytes(mut self, bytes: u64) -> EngineConfig {
        self.cache_bytes = bytes;
        self
    }

    /// The same store with memtables of at most `bytes` (fjall, when the store is created).
    pub fn with_memtable_bytes(mut self, bytes: u64) -> EngineConfig {
        self.memtable_bytes = bytes;
        self
    }

    /// The same store handing tables to the disk `bytes` at a time while fjall writes them
    /// (0: only at fjall's fsync).
    pub fn with_pacing_chunk_bytes(mut self, bytes: u64) -> EngineConfig {
        self.pacing_chunk_bytes = bytes;
        self
    }

    /// The same store with its background threads `levels` nice levels below the rest of the
    /// process (0: the same priority).
    pub fn with_background_nice(mut self, levels: u8) -> EngineConfig {
        self.background_nice = levels;
        self
    }

    /// The store of the chatd data directory `data_dir` (`storage.path`), where the server
    /// keeps it.
    pub fn in_data_dir(data_dir: &Path, engine: Engine) -> EngineConfig {
        EngineConfig::new(engine, data_dir.join(engine.dir_in_data_dir()))
    }

    /// The store to open in the chatd data directory `data_dir`, whose configuration asks for
    /// `configured`: an existing store is opened with the engine that created it, whatever the
    /// configuration says; only a data directory without one gets `configured`.
    ///
    /// A data directory holding the directories of two engines is refused: which one holds
    /// the live data is for an operator to say.
    pub fn for_data_dir(data_dir: &Path, configured: Engine) -> Result<DataDirStore, DataDirError> {
        let mut found = Vec::new();
        for &engine in Engine::ALL {
            let config = EngineConfig::in_data_dir(data_dir, engine);
            let exists = config
                .path
                .try_exists()
                .map_err(|source| DataDirError::Io {
                    path: config.path.clone(),
                    source,
                })?;
            if exists {
                found.push(config);
            }
        }
        let config = match found.len() {
            0 => EngineConfig::in_data_dir(data_dir, configured),
            1 => found.remove(0),
            _ => return Err(DataDirError::SeveralEngines(found)),
        };
        Ok(DataDirStore { config, configured })
    }
}

/// The store a chatd data directory is opened with ([`EngineConfig::for_data_dir`]), and the
/// engine the configuration asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirStore {
    /// The engine and directory to open.
    pub config: EngineConfig,
    /// The engine the configuration names (`storage.engine`).
    pub configured: Engine,
}

impl DataDirStore {
    /// When the data directory already holds a store of another engine than the configured
    /// one, what to warn about (naming both engines); `None` when they agree.
    pub fn mismatch_warning(&self) -> Option<String> {
        (self.config.engine != self.configured).then(|| {
            format!(
                "storage.engine is `{configured}`, but the data directory already holds a {found} \
                 store ({path}): opening it with {found}; {configured} is only used for a new \
                 data directory",
                configured = self.configured,
                found = self.config.engine,
                path = self.config.path.display(),
            )
        })
    }
}

/// Why the store of a data directory cannot be chosen.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The data directory holds the directories of more than one engine.
    #[error(
        "the data directory holds the stores of more than one engine: {}; keep the one in \
         use and move the others away",
        list_stores(.0)
    )]
    SeveralEngines(Vec<EngineConfig>),
    /// Looking for an engine's directory failed.
    #[error("cannot look for a store at {}: {source}", path.display())]
    Io {
        /// The directory looked for.
        path: PathBuf,
        /// The file-system error.
        source: io::Error,
    },
}

/// `{path} ({engine}), …` for an error message.
fn list_stores(stores: &[EngineConfig]) -> String {
    stores
        .iter()
        .map(|store| format!("{} ({})", store.path.display(), store.engine))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens (creating the directory and the store if needed) the store `config` describes.
///
/// A directory that another open store holds gives [`StoreError::Locked`].
pub fn open(config: &EngineConfig) -> Result<Arc<dyn KvStore>, StoreError> {
    std::fs::create_dir_all(&config.path)?;
    match config.engine {
        Engine::Sled => Ok(Arc::new(SledStore::open(&config.path, config.cache_bytes)?)),
        Engine::Fjall => Ok(Arc::new(FjallStore::open(config)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>(), Ok(*engine));
            assert_eq!(engine.to_string(), engine.name());
        }
        assert_eq!(Engine::default(), Engine::Fjall);
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = "rocksdb".parse::<Engine>().expect_err("not an engine");
        assert_eq!(
            err.to_string(),
            "unknown storage engine `rocksdb` (known: sled, fjall)"
        );
        assert!("Fjall".parse::<Engine>().is_err(), "names are exact");
        assert!("Sled".parse::<Engine>().is_err(), "names are exact");
        assert!("".parse::<Engine>().is_err());
    }

    #[test]
    fn the_data_dir_layout_is_unchanged() {
        let config = EngineConfig::in_data_dir(Path::new("/var/lib/chatd"), Engine::Sled);
        assert_eq!(config.path, Path::new("/var/lib/chatd/store"));
        assert_eq!(config.engine, Engine::Sled);
        let config = EngineConfig::in_data_dir(Path::new("/var/lib/chatd"), Engine::Fjall);
        assert_eq!(config.path, Path::new("/var/lib/chatd/fjall"));
        assert_eq!(config.engine, Engine::Fjall);
    }

    #[test]
    fn a_new_data_dir_gets_the_configured_engine() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        // Also when the data directory itself does not exist yet.
        for data_dir in [dir.path().to_path_buf(), dir.path().join("missing")] {
            for &engine in Engine::ALL {
                let chosen = EngineConfig::for_data_dir(&data_dir, engine)?;
                assert_eq!(chosen.config, EngineConfig::in_data_dir(&data_dir, engine));
                assert_eq!(chosen.configured, engine);
                assert_eq!(chosen.mismatch_warning(), None);
            }
        }
        Ok(())
    }

    #[test]
    fn an_existing_store_keeps_its_engine() -> Result<(), StoreError> {
        for &existing in Engine::ALL {
            let dir = tempfile::tempdir()?;
            open(&EngineConfig::in_data_dir(dir.path(), existing))?.flush()?;
            for &configured in Engine::ALL {
                let chosen = EngineConfig::for_data_dir(dir.path(), configured)
                    .map_err(|e| StoreError::Other(e.to_string()))?;
                assert_eq!(
                    chosen.config,
                    EngineConfig::in_data_dir(dir.path(), existing)
                );
                assert_eq!(chosen.configured, configured);
                match chosen.mismatch_warning() {
                    None => assert_eq!(configured, existing),
                    Some(warning) => {
                        assert_ne!(configured, existing);
                        assert!(warning.contains(&format!("`{configured}`")), "{warning}");
                        assert!(
                            warning.contains(&format!("opening it with {existing}")),
                            "{warning}"
                        );
                        let path = dir.path().join(existing.dir_in_data_dir());
                        assert!(warning.contains(&path.display().to_string()), "{warning}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_message_names_both_engines() {
        let chosen = DataDirStore {
            config: EngineConfig::in_data_dir(Path::new("/srv/chatd"), Engine::Sled),
            configured: Engine::Fjall,
        };
        assert_eq!(
            chosen.mismatch_warning().as_deref(),
            Some(
                "storage.engine is `fjall`, but the data directory already holds a sled store \
                 (/srv/chatd/store): opening it with sled; fjall is only used for a new data \
                 directory"
            )
        );
    }

    #[test]
    fn two_engines_in_one_data_dir_are_refused() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("store"))?;
        std::fs::create_dir(dir.path().join("fjall"))?;
        for &configured in Engine::ALL {
            let err = EngineConfig::for_data_dir(dir.path(), configured)
                .expect_err("two stores must be refused");
            assert!(matches!(err, DataDirError::SeveralEngines(ref found) if found.len() == 2));
            let text = err.to_string();
            for name in ["store", "fjall"] {
                let path = dir.path().join(name).display().to_string();
                assert!(text.contains(&path), "{text} names {path}");
            }
            assert!(
                text.contains("(sled)") && text.contains("(fjall)"),
                "{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn open_creates_missing_directories() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a/b/store");
        let store = open(&EngineConfig::new(Engine::Sled, &path))?;
        store.flush()?;
        assert!(path.is_dir());
        Ok(())
    }
}
