//! `[media]` of the broker's TOML file: which back end holds the bytes, how long URLs live and
//! what may be uploaded, with the defaults an absent key gets and the checks that name the key
//! of a value that cannot work. The broker embeds [`MediaConfig`] in its configuration and adds
//! the checks that involve other sections (the `fs` back end needs `listen.http`).

use std::path::PathBuf;

use chatd_core::config::InvalidSetting;
use serde::Deserialize;

use crate::{Limits, MediaKind, MediaSettings, TypeLimit, MAX_URL_TTL_SECS};

/// `[media]`: where media bytes live and what may be uploaded. No section at all: the `fs`
/// back end under `{storage.path}/media`, served by chatd's own HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `fs` (local disk, the default) or `s3`.
    pub backend: MediaBackend,
    /// Lifetime of upload and download URLs, in seconds.
    pub url_ttl_secs: u64,
    /// `[media.limits.image]`, `…video`, `…audio`, `…file`.
    pub limits: MediaLimitsConfig,
    /// `[media.fs]`: settings of the `fs` back end.
    pub fs: FsMediaConfig,
    /// `[media.s3]`: settings of the `s3` back end (required with `backend = "s3"`).
    pub s3: Option<S3MediaConfig>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            backend: MediaBackend::Fs,
            url_ttl_secs: 900,
            limits: MediaLimitsConfig::default(),
            fs: FsMediaConfig::default(),
            s3: None,
        }
    }
}

/// `media.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// Local disk under the data directory, served by chatd's HTTP listener.
    Fs,
    /// An S3-compatible object store with presigned URLs.
    S3,
}

/// `[media.limits]`: one optional table per kind; a missing table or key keeps the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimitsConfig {
    /// `[media.limits.image]`
    pub image: Option<TypeLimitConfig>,
    /// `[media.limits.video]`
    pub video: Option<TypeLimitConfig>,
    /// `[media.limits.audio]`
    pub audio: Option<TypeLimitConfig>,
    /// `[media.limits.file]`
    pub file: Option<TypeLimitConfig>,
}

/// `[media.limits.{kind}]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypeLimitConfig {
    /// Largest upload of this kind, in bytes.
    pub max_bytes: Option<u64>,
    /// Accepted MIME types (`image/png`, `image/*`, `*/*`).
    pub mime: Option<Vec<String>>,
}

/// `[media.fs]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsMediaConfig {
    /// Where the bytes live; default `{storage.path}/media`.
    pub path: Option<PathBuf>,
    /// Base of the upload/download URLs handed to clients (how clients reach chatd's HTTP
    /// listener, e.g. `https://chat.example.com`); default `http://` + the listener's address.
    pub public_url: Option<String>,
    /// HMAC key for the URLs (at least 32 characters); default generated into
    /// `{storage.path}/media.key` (mode 0600).
    pub signing_key: Option<String>,
    /// Declares `path` shared by every node of a cluster (an NFS mount, say): required for
    /// `fs` media when `cluster.store = "postgres"`, meaningless on one node.
    pub shared: bool,
}

/// `[media.s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3MediaConfig {
    /// Service URL (MinIO, other S3-compatible stores); absent: AWS's endpoint for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region used for signing.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// The bucket (it must exist).
    pub bucket: String,
    /// Access key id; absent: `AWS_ACCESS_KEY_ID` from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret key; absent: `AWS_SECRET_ACCESS_KEY` from the environment.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), needed by MinIO and most self-hosted stores.
    #[serde(default)]
    pub force_path_style: bool,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

/// Largest object one S3 `PUT` may carry (5 GiB).
const S3_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

impl MediaLimitsConfig {
    /// The effective limits: each kind's defaults overridden by what the file sets.
    pub fn resolve(&self) -> Limits {
        let one = |kind: MediaKind, set: &Option<TypeLimitConfig>| {
            let mut limit: TypeLimit = Limits::default_for(kind);
            if let Some(set) = set {
                if let Some(max) = set.max_bytes {
                    limit.max_bytes = max;
                }
                if let Some(mime) = &set.mime {
                    limit.mime = mime.clone();
                }
            }
            limit
        };
        Limits {
            image: one(MediaKind::Image, &self.image),
            video: one(MediaKind::Video, &self.video),
            audio: one(MediaKind::Audio, &self.audio),
            file: one(MediaKind::File, &self.file),
        }
    }
}

impl MediaConfig {
    /// The service's settings that do not depend on the back end.
    pub fn settings(&self) -> MediaSettings {
        MediaSettings {
            url_ttl_secs: self.url_ttl_secs,
            limits: self.limits.resolve(),
        }
    }

    /// Every check of the section, in the order an operator learns about mistakes: first
    /// [`validate_service`](Self::validate_service), then
    /// [`validate_backend`](Self::validate_backend). The broker calls the two itself, with
    /// its cross-section check between them.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_service()?;
        self.validate_backend()
    }

    /// The settings of the service whatever the back end: URL lifetime and per-kind limits.
    pub fn validate_service(&self) -> Result<(), InvalidSetting> {
        if !(1..=MAX_URL_TTL_SECS).contains(&self.url_ttl_secs) {
            return Err(InvalidSetting::new(
                "media.url_ttl_secs",
                format!("must be between 1 and {MAX_URL_TTL_SECS} (7 days)"),
            ));
        }
        if let Err(e) = self.limits.resolve().validate() {
            // The message names the exact key (media.limits.{kind}.…).
            return Err(InvalidSetting::new("media.limits", e.to_string()));
        }
        Ok(())
    }

    /// The settings of the back end `backend` chooses (`[media.fs]` or `[media.s3]`).
    pub fn validate_backend(&self) -> Result<(), InvalidSetting> {
        match self.backend {
            MediaBackend::Fs => self.fs.validate(),
            MediaBackend::S3 => {
                let Some(s3) = &self.s3 else {
                    return Err(InvalidSetting::new(
                        "media.s3",
                        "backend = \"s3\" needs a [media.s3] section (bucket, region, credentials)",
                    ));
                };
                s3.validate()?;
                let limits = self.limits.resolve();
                if let Some(kind) = MediaKind::ALL
                    .into_iter()
                    .find(|k| limits.get(*k).max_bytes > S3_MAX_PUT_BYTES)
                {
                    return Err(InvalidSetting::new(
                        "media.limits",
                        format!(
                            "media.limits.{kind}.max_bytes is over 5 GiB, more than one S3 PUT can carry"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl FsMediaConfig {
    /// Checks `[media.fs]`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(InvalidSetting::new(
                    "media.fs.public_url",
                    format!("must start with http:// or https://, not {url:?}"),
                ));
            }
        }
        if let Some(key) = &self.signing_key {
            if key.len() < 32 {
                return Err(InvalidSetting::new(
                    "media.fs.signing_key",
                    "must be at least 32 characters",
                ));
            }
        }
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(InvalidSetting::new("media.fs.path", "must not be empty"));
        }
        Ok(())
    }
}

impl S3MediaConfig {
    /// Checks `[media.s3]` (the size limits an S3 `PUT` imposes are checked with `[media]`).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(InvalidSetting::new(
                "media.s3.bucket",
                format!(
                    "{:?} is not a bucket name (3 to 63 of a-z 0-9 . -)",
                    self.bucket
                ),
            ));
        }
        if self.region.is_empty() || self.region.chars().any(char::is_whitespace) {
            return Err(InvalidSetting::new(
                "media.s3.region",
                "must be a region name like eu-west-1",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(InvalidSetting::new(
                    "media.s3.endpoint",
                    format!("must start with http:// or https://, not {endpoint:?}"),
                ));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(InvalidSetting::new(
                "media.s3.secret_access_key",
                "set access_key_id and secret_access_key together (or neither, to use \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str) -> S3MediaConfig {
        S3MediaConfig {
            endpoint: None,
            region: default_s3_region(),
            bucket: bucket.into(),
            access_key_id: None,
            secret_access_key: None,
            force_path_style: false,
        }
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = MediaConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.settings(), MediaSettings::default());
    }

    #[test]
    fn checks_name_their_keys() {
        let s3_with = |s3: S3MediaConfig| MediaConfig {
            backend: MediaBackend::S3,
            s3: Some(s3),
            ..MediaConfig::default()
        };
        let cases = [
            (
                MediaConfig {
                    url_ttl_secs: 0,
                    ..MediaConfig::default()
                },
                "media.url_ttl_secs",
            ),
            (
                MediaConfig {
                    fs: FsMediaConfig {
                        signing_key: Some("short".into()),
                        ..FsMediaConfig::default()
                    },
                    ..MediaConfig::default()
                },
                "media.fs.signing_key",
            ),
            (
                MediaConfig {
                    backend: MediaBackend::S3,
                    ..MediaConfig::default()
                },
                "media.s3",
            ),
            (s3_with(s3("No_Such")), "media.s3.bucket"),
            (
                s3_with(S3MediaConfig {
                    region: "eu west".into(),
                    ..s3("b-1")
                }),
                "media.s3.region",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().key, key, "{cfg:?}");
        }
        s3_with(s3("b-1")).validate().unwrap();
    }
}
