//! The files chatd keeps beside its store: the generated admin token, the generated media URL
//! signing key, and `listen.json`, which says where a running server actually listens (useful
//! with port 0, and for the CLI).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Name of the admin token file.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Name of the generated media URL signing key file.
pub const MEDIA_KEY_FILE: &str = "media.key";
/// Name of the generated login token signing key file.
pub const LOGIN_KEY_FILE: &str = "login.key";
/// Name of the bound-addresses file.
pub const LISTEN_FILE: &str = "listen.json";

/// The configured admin token, or the one in the data directory, created (mode 0600) if absent.
pub fn admin_token(dir: &Path, configured: Option<&str>) -> Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = dir.join(ADMIN_TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..40)
            .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
            .collect()
    };
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// The configured media URL signing key, or the one in the data directory, created (mode 0600,
/// 256 random bits in hex) if absent — so signed URLs stay valid across restarts.
pub fn media_key(dir: &Path, configured: Option<&str>) -> Result<String> {
    secret_key(dir, MEDIA_KEY_FILE, configured)
}

/// The configured login token signing key, or the one in the data directory, created like
/// the media key — so login tokens stay valid across restarts.
pub fn login_key(dir: &Path, configured: Option<&str>) -> Result<String> {
    secret_key(dir, LOGIN_KEY_FILE, configured)
}

/// `configured`, or the key in `file` of the data directory, created (mode 0600, 256 random
/// bits in hex) if absent.
fn secret_key(dir: &Path, file: &str, configured: Option<&str>) -> Result<String> {
    if let Some(key) = configured {
        return Ok(key.to_string());
    }
    let path = dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim().to_string();
        if !key.is_empty() {
            return Ok(key);
        }
    }
    let key: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    write_private(&path, key.as_bytes())?;
    Ok(key)
}

/// Reads the admin token a running server uses, for the CLI.
pub fn read_admin_token(dir: &Path, configured: Option<&str>) -> Result<String> {
    if let Some(token) = configured {
        return Ok(token.to_string());
    }
    let path = dir.join(ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the admin token in {}", path.display()))?;
    Ok(token.trim().to_string())
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(())
}

fn listen_path(dir: &Path) -> PathBuf {
    dir.join(LISTEN_FILE)
}

/// Writes the bound addresses atomically (temporary file, then rename).
pub fn write_listen_file(dir: &Path, bound: &BTreeMap<&'static str, SocketAddr>) -> Result<()> {
    let body: BTreeMap<_, _> = bound.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let tmp = dir.join(".listen.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&body)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, listen_path(dir))?;
    Ok(())
}

/// Removes `listen.json` (at start, a stale one; at exit, ours).
pub fn remove_listen_file(dir: &Path) {
    let _ = std::fs::remove_file(listen_path(dir));
}

/// The HTTP address of a running server, from its `listen.json`.
pub fn running_http_addr(dir: &Path) -> Result<SocketAddr> {
    let path = listen_path(dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the server holds the store but {} is missing",
            path.display()
        )
    })?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text)?;
    let addr = map
        .get("http")
        .context("the running server has no HTTP listener (listen.http is off)")?;
    let mut addr: SocketAddr = addr.parse()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}
