//! The media service as the broker runs it: built from `[media]` at start-up (the `fs` back end
//! under the data directory by default, or `s3`), answering `media.*` requests in sessions,
//! checking media messages for messaging, and serving the `fs` URLs on the HTTP listener.

pub mod http;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use chatd_media::config::{MediaBackend, S3MediaConfig};
use chatd_media::fs::FsBackend;
use chatd_media::record::MediaRecords;
use chatd_media::s3::{S3Backend, S3Settings};
use chatd_media::{Backend, MediaService};
use tracing::{info, warn};

use crate::config::Config;
use crate::datadir;

/// Builds the media service from `config`, its metadata in `store`. `http` is the bound address of chatd's HTTP
/// listener, from which the `fs` back end's URLs are derived when `media.fs.public_url` is
/// not set.
pub async fn open(
    config: &Config,
    store: Arc<dyn MediaRecords>,
    http: Option<SocketAddr>,
) -> Result<Arc<MediaService>> {
    let m = &config.media;
    let backend: Box<dyn Backend> = match m.backend {
        MediaBackend::Fs => {
            let root =
                m.fs.path
                    .clone()
                    .unwrap_or_else(|| config.storage.path.join("media"));
            let key = datadir::media_key(&config.storage.path, m.fs.signing_key.as_deref())
                .context("media.fs.signing_key: cannot create the signing key")?;
            let public_url = match &m.fs.public_url {
                Some(url) => url.clone(),
                None => default_public_url(http)?,
            };
            let fs = FsBackend::open(&root, key.as_bytes(), &public_url)
                .with_context(|| format!("media.fs: cannot use {}", root.display()))?;
            info!(path = %root.display(), %public_url, "media: fs back end");
            Box::new(fs)
        }
        MediaBackend::S3 => {
            let s3 = m
                .s3
                .as_ref()
                .ok_or_else(|| anyhow!("media.s3: backend = \"s3\" needs a [media.s3] section"))?;
            let settings = s3_settings(s3)?;
            let backend = S3Backend::new(&settings);
            match backend.check_bucket().await {
                Ok(()) => info!(bucket = %settings.bucket, "media: s3 back end"),
                // S3 may come back later; uploads fail with `internal` until it does.
                Err(e) => warn!("media.s3: the bucket cannot be used now: {e}"),
            }
            Box::new(backend)
        }
    };
    let service = MediaService::new(store, backend, m.settings()).context("media")?;
    Ok(Arc::new(service))
}

/// `http://` + the HTTP listener's address; a wildcard address becomes loopback (with a
/// warning: such URLs only work on this machine).
fn default_public_url(http: Option<SocketAddr>) -> Result<String> {
    let Some(mut addr) = http else {
        return Err(anyhow!(
            "media.backend: \"fs\" serves media through chatd's HTTP listener, so listen.http must be set"
        ));
    };
    if addr.ip().is_unspecified() {
        let loopback: IpAddr = match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
        warn!(
            "media.fs.public_url is not set: media URLs point at http://{addr}, which only this \
             machine can reach; set it to the address clients use"
        );
    }
    Ok(format!("http://{addr}"))
}

/// The S3 settings, with credentials from the config or else from the environment.
fn s3_settings(s3: &S3MediaConfig) -> Result<S3Settings> {
    let from_env = |key: &str, name: &str| {
        std::env::var(name)
            .map_err(|_| anyhow!("media.s3.{key} is not set, and {name} is not in the environment"))
    };
    let (access_key_id, secret_access_key) = match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => (
            from_env("access_key_id", "AWS_ACCESS_KEY_ID")?,
            from_env("secret_access_key", "AWS_SECRET_ACCESS_KEY")?,
        ),
    };
    Ok(S3Settings {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        access_key_id,
        secret_access_key,
        force_path_style: s3.force_path_style,
    })
}
