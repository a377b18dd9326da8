//! The `s3` back end: any S3-compatible store (AWS, MinIO, …) with presigned `PUT`/`GET` URLs,
//! so media bytes never pass through chatd.
//!
//! Object keys: an upload goes to its own staging key `uploads/{media}` (a presigned PUT can
//! only ever write there); once verified it is copied to the content key `{sha256}` — the
//! single stored copy of that content — and the staging object is deleted. So bytes that were
//! verified can never be overwritten through an upload URL that is still valid. Verification
//! is lazy: it runs when a message first references the media, streaming the object through
//! SHA-256. When the content is already stored (someone else uploaded the same bytes) a
//! verified upload is only deleted: storage stays one copy per content, but nobody gets a media
//! id of it without sending the bytes.

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use sha2::{Digest, Sha256};

use super::backend::{Backend, BackendError, BackendFuture, UrlWindow, Verification};
use super::record::MediaRecord;
use super::serving;

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Service URL (`http://127.0.0.1:9000` for MinIO); `None` for AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Region name (signing needs one even for stores that ignore it).
    pub region: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// `endpoint/bucket/key` URLs instead of `bucket.endpoint/key` (MinIO and most
    /// self-hosted stores need this).
    pub force_path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// Media bytes in an S3 bucket.
#[derive(Debug)]
pub struct S3Backend {
    client: Client,
    bucket: String,
}

/// The staging key an upload URL for `media` writes to.
pub fn staging_key(media: &str) -> String {
    format!("uploads/{media}")
}

/// The key of the verified content with this hash.
pub fn content_key(sha256: &str) -> String {
    sha256.to_string()
}

fn s3_error<E: std::error::Error>(what: &str, e: E) -> BackendError {
    BackendError::S3(format!("{what}: {}", DisplayErrorContext(e)))
}

impl S3Backend {
    /// A client for `settings` (TLS by rustls with ring, certificates from the system).
    pub fn new(settings: &S3Settings) -> S3Backend {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            None,
            None,
            "chatd-config",
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            .http_client(http)
            .timeout_config(timeouts)
            // chatd hashes every byte itself.
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        S3Backend {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
        }
    }

    /// Checks that the bucket exists and the credentials may use it (at start-up, so a wrong
    /// setting shows in the log at once).
    pub async fn check_bucket(&self) -> Result<(), BackendError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error(&format!("bucket {:?}", self.bucket), e))
    }

    fn presigning(window: UrlWindow) -> Result<PresigningConfig, BackendError> {
        PresigningConfig::builder()
            .start_time(UNIX_EPOCH + Duration::from_secs(window.issued))
            .expires_in(Duration::from_secs(window.ttl))
            .build()
            .map_err(|e| BackendError::S3(format!("presigning: {e}")))
    }

    /// Streams the staging object of `record` through SHA-256, reading at most one byte more
    /// than declared. `None` when there is no such object.
    async fn hash_staged(
        &self,
        record: &MediaRecord,
    ) -> Result<Option<(u64, String)>, BackendError> {
        let key = staging_key(&record.id);
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        let object = match got {
            Ok(object) => object,
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                if missing {
                    return Ok(None);
                }
                return Err(s3_error(&format!("reading {key}"), e));
            }
        };
        let mut body = object.body;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| s3_error(&format!("reading {key}"), e))?;
            received = received.saturating_add(chunk.len() as u64);
            if received > record.size {
                // Enough to know it is wrong; the rest need not be read.
                break;
            }
            hasher.update(&chunk);
        }
        Ok(Some((received, hex::encode(hasher.finalize()))))
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error(&format!("deleting {key}"), e))
    }
}

impl Backend for S3Backend {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &'static str {
        "s3"
    }

    fn upload_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String> {
        Box::pin(async move {
            let presigned = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(staging_key(&record.id))
                .presigned(Self::presigning(window)?)
                .await
                .map_err(|e| s3_error("presigning an upload", e))?;
            Ok(presigned.uri().to_string())
        })
    }

    fn download_url<'a>(
        &'a self,
        record: &'a MediaRecord,
        window: UrlWindow,
    ) -> BackendFuture<'a, String> {
        Box::pin(async move {
            let presigned = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(content_key(&record.sha256))
                .response_content_type(&record.mime)
                // The object store cannot add a CSP: what is not safe inline is an attachment.
                .response_content_disposition(serving::content_disposition(&record.mime))
                .presigned(Self::presigning(window)?)
                .await
                .map_err(|e| s3_error("presigning a download", e))?;
            Ok(presigned.uri().to_string())
        })
    }

    fn verify<'a>(
        &'a self,
        record: &'a MediaRecord,
        stored: bool,
    ) -> BackendFuture<'a, Verification> {
        Box::pin(async move {
            let staged = staging_key(&record.id);
            let Some((size, sha256)) = self.hash_staged(record).await? else {
                return Ok(Verification::NotUploaded);
            };
            let mismatch = if size != record.size {
                Some(if size > record.size {
                    format!("more than the declared {} bytes arrived", record.size)
                } else {
                    format!("{size} bytes arrived, not the declared {}", record.size)
                })
            } else if sha256 != record.sha256 {
                Some(format!(
                    "their sha256 is {sha256}, not the declared {}",
                    record.sha256
                ))
            } else {
                None
            };
            if let Some(why) = mismatch {
                self.delete(&staged).await?;
                return Ok(Verification::Mismatch(why));
            }
            if stored {
                // The content key already holds these bytes: the checked copy is not needed.
                self.delete(&staged).await?;
                return Ok(Verification::Verified);
            }
            let source = format!("{}/{}", self.bucket, staged);
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(content_key(&record.sha256))
                .copy_source(source)
                .send()
                .await
                .map_err(|e| s3_error(&format!("copying {staged} to its content key"), e))?;
            self.delete(&staged).await?;
            Ok(Verification::Verified)
        })
    }
}
