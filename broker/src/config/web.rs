//! `[web]`: the web client served on the HTTP listener at `/`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[web]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the web client at `/` (the bundle built into the binary).
    pub enabled: bool,
    /// Serve the client's files from this folder instead of the built-in bundle (for
    /// developing the client: a rebuilt bundle shows without rebuilding chatd).
    pub dir: Option<PathBuf>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            dir: None,
        }
    }
}

impl WebConfig {
    /// A `dir` that is not a folder stops the server at start rather than serving 404s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.dir {
            Some(dir) if self.enabled && !dir.is_dir() => Err(ConfigError::Invalid {
                key: "web.dir",
                why: format!("`{}` is not a folder", dir.display()),
            }),
            _ => Ok(()),
        }
    }
}
