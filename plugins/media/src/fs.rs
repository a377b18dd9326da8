//! The `fs` back end: bytes on local disk under the data directory, uploaded and downloaded
//! through chatd's own HTTP listener with HMAC-signed, expiring URLs.
//!
//! Layout under the root (default `{storage.path}/media`): `{sha256[0..2]}/{sha256}` holds each
//! verified content once; `tmp/` holds uploads in progress (removed when they end, and at
//! start-up after a crash). A file appears under its hash only after its size and hash were
//! checked, by an atomic rename.

use std::io;
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::backend::{Backend, BackendError, BackendFuture, UrlWindow, Verification};
use super::record::MediaRecord;
use super::sign::{Access, SignError, UrlSigner};
use super::unix_secs;

/// Local-disk media storage.
#[derive(Debug)]
pub struct FsBackend {
    root: PathBuf,
    signer: UrlSigner,
    /// Base of every URL, without a trailing `/` (e.g. `https://chat.example.com`).
    public_url: String,
}

impl FsBackend {
    /// Opens (creating) the directory `root`, empties its `tmp/` (uploads cut off by a crash),
    /// and signs URLs with `key` under `public_url` (`http://…` or `https://…`).
    pub fn open(root: &Path, key: &[u8], public_url: &str) -> Result<FsBackend, BackendError> {
        let signer = UrlSigner::new(key).map_err(|e| BackendError::Config(e.to_string()))?;
        let public_url = public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(BackendError::Config(format!(
                "the public URL must start with http:// or https://, not {public_url:?}"
            )));
        }
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "part") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(FsBackend {
            root: root.to_path_buf(),
            signer,
            public_url,
        })
    }

    /// Where the content with this hash is (or would be) stored.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        let fan = sha256.get(..2).unwrap_or("00");
        self.root.join(fan).join(sha256)
    }

    /// The signed URL for `access` to `media` until `expires` (Unix seconds).
    pub fn signed_url(&self, access: Access, media: &str, expires: u64) -> String {
        let sig = self.signer.sign(access, media, expires);
        format!(
            "{}/media/{media}?expires={expires}&sig={sig}",
            self.public_url
        )
    }

    /// Checks the `expires` and `sig` of a request on `/media/{media}` (as received) now.
    pub fn check_url(
        &self,
        access: Access,
        media: &str,
        expires: &str,
        sig: &str,
    ) -> Result<u64, SignError> {
        self.signer.verify(access, media, expires, sig, unix_secs())
    }

    /// A new empty file in `tmp/` for an upload in progress.
    pub async fn temp_file(&self) -> io::Result<(PathBuf, tokio::fs::File)> {
        let mut name = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut name);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}.part", hex::encode(name)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok((path, file))
    }

    /// Makes the checked file `temp` the stored content `sha256`: renamed into place (and the
    /// directory synced), or removed when that content is already there — never two copies.
    pub async fn place(&self, temp: &Path, sha256: &str) -> io::Result<()> {
        let target = self.object_path(sha256);
        if tokio::fs::try_exists(&target).await? {
            return tokio::fs::remove_file(temp).await;
        }
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::rename(temp, &target).await?;
        tokio::fs::File::open(&dir).await?.sync_all().await
    }

    /// Opens the stored content with this hash for reading.
    pub async fn open_object(&self, sha256: &str) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.object_path(sha256)).await
    }
}

impl Backend for FsBackend {
    fn name(&self) -> &'static str {
        "fs"
    }

    fn upload_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String> {
        let url = self.signed_url(Access::Upload, &record.id, window.expires());
        Box::pin(async move { Ok(url) })
    }

    fn download_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String> {
        let url = self.signed_url(Access::Download, &record.id, window.expires());
        Box::pin(async move { Ok(url) })
    }

    /// Uploads are checked as they arrive (see `MediaService::begin_upload`), so a pending
    /// record has no bytes here to check.
    fn verify<'a>(
        &'a self,
        _record: &'a MediaRecord,
        _stored: bool,
    ) -> BackendFuture<'a, Verification> {
        Box::pin(async { Ok(Verification::NotUploaded) })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn urls_are_signed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsBackend::open(dir.path(), KEY, "http://127.0.0.1:8080/").unwrap();
        let url = fs.signed_url(Access::Upload, "m_1", 4_000_000_000);
        assert!(
            url.starts_with("http://127.0.0.1:8080/media/m_1?expires=4000000000&sig="),
            "{url}"
        );
        let sig = url.rsplit("sig=").next().unwrap();
        assert_eq!(
            fs.check_url(Access::Upload, "m_1", "4000000000", sig),
            Ok(4_000_000_000)
        );
        assert!(fs
            .check_url(Access::Download, "m_1", "4000000000", sig)
            .is_err());
        let old = fs.signed_url(Access::Download, "m_1", 5);
        let sig = old.rsplit("sig=").next().unwrap();
        assert_eq!(
            fs.check_url(Access::Download, "m_1", "5", sig),
            Err(SignError::Expired { expires: 5 })
        );
    }

    #[tokio::test]
    async fn place_keeps_one_copy_and_open_cleans_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsBackend::open(dir.path(), KEY, "http://x").unwrap();
        let sha = "ab".repeat(32);
        for _ in 0..2 {
            let (path, _file) = fs.temp_file().await.unwrap();
            tokio::fs::write(&path, b"data").await.unwrap();
            fs.place(&path, &sha).await.unwrap();
            assert!(!path.exists());
        }
        assert_eq!(std::fs::read(fs.object_path(&sha)).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(dir.path().join("ab")).unwrap().count(), 1);
        // A crash leaves a part file behind; the next open removes it.
        let (left, _file) = fs.temp_file().await.unwrap();
        drop(fs);
        FsBackend::open(dir.path(), KEY, "http://x").unwrap();
        assert!(!left.exists());
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = FsBackend::open(dir.path(), b"short", "http://x").unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        let err = FsBackend::open(dir.path(), KEY, "ftp://x").unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
