//! Choosing and opening an engine: the one place that turns configuration into a [`KvStore`],
//! so that servers, tools, tests and benches all open stores the same way and a new engine is
//! added by one more [`Engine`] variant.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::{KvStore, SledStore, StoreError};

/// The key-value engines chatd can run on (`storage.engine` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// sled 0.34, the engine chatd has always used.
    #[default]
    Sled,
}

impl Engine {
    /// Every engine, in the order error messages list them.
    pub const ALL: &'static [Engine] = &[Engine::Sled];

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
        }
    }

    /// The engine's directory inside a chatd data directory (`{storage.path}/store` for sled,
    /// the layout every existing deployment has).
    fn dir_in_data_dir(self) -> &'static str {
        match self {
            Engine::Sled => "store",
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

/// Which engine to open, and the directory it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The engine's own directory (created if missing); nothing else should live in it.
    pub path: PathBuf,
    /// The engine.
    pub engine: Engine,
}

impl EngineConfig {
    /// `engine` on exactly the directory `path` (tools, tests and benches with a scratch
    /// directory).
    pub fn new(engine: Engine, path: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            path: path.into(),
            engine,
        }
    }

    /// The store of the chatd data directory `data_dir` (`storage.path`), where the server
    /// keeps it.
    pub fn in_data_dir(data_dir: &Path, engine: Engine) -> EngineConfig {
        EngineConfig::new(engine, data_dir.join(engine.dir_in_data_dir()))
    }
}

/// Opens (creating the directory and the store if needed) the store `config` describes.
///
/// A directory that another open store holds gives [`StoreError::Locked`].
pub fn open(config: &EngineConfig) -> Result<Arc<dyn KvStore>, StoreError> {
    std::fs::create_dir_all(&config.path)?;
    match config.engine {
        Engine::Sled => Ok(Arc::new(SledStore::open(&config.path)?)),
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
        assert_eq!(Engine::default(), Engine::Sled);
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = "fjall".parse::<Engine>().expect_err("not an engine yet");
        assert_eq!(
            err.to_string(),
            "unknown storage engine `fjall` (known: sled)"
        );
        assert!("Sled".parse::<Engine>().is_err(), "names are exact");
        assert!("".parse::<Engine>().is_err());
    }

    #[test]
    fn the_data_dir_layout_is_unchanged() {
        let config = EngineConfig::in_data_dir(Path::new("/var/lib/chatd"), Engine::Sled);
        assert_eq!(config.path, Path::new("/var/lib/chatd/store"));
        assert_eq!(config.engine, Engine::Sled);
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
