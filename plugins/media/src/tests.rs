//! Service-level tests: de-duplication, lazy verification, sender and kind rules, download
//! rights and the `fs` upload path, on a temporary sled store behind the embedded adapter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::backend::{Backend, BackendFuture, UrlWindow, Verification};
use super::fs::FsBackend;
use super::record::MediaRecord;
use super::sign::Access;
use super::*;
use chatd_core::media_gate::MediaGate;
use chatd_embedded::keys;
use chatd_embedded::media::EmbeddedMedia;
use chatd_kv::{KvStore, Op};
use chatd_wire::reply::ErrorCode;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A back end that checks lazily like `s3`: tests put "uploaded" bytes into `staged`.
#[derive(Default)]
struct LazyBackend {
    staged: Mutex<HashMap<String, Vec<u8>>>,
    stored: Mutex<HashMap<String, Vec<u8>>>,
    /// Verified uploads dropped because their content was already stored.
    discarded: Mutex<usize>,
}

impl Backend for Arc<LazyBackend> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &'static str {
        "lazy"
    }

    fn upload_url<'a>(&'a self, r: &'a MediaRecord, w: UrlWindow) -> BackendFuture<'a, String> {
        let url = format!("lazy://up/{}?until={}", r.id, w.expires());
        Box::pin(async move { Ok(url) })
    }

    fn download_url<'a>(&'a self, r: &'a MediaRecord, w: UrlWindow) -> BackendFuture<'a, String> {
        let url = format!("lazy://down/{}?until={}", r.sha256, w.expires());
        Box::pin(async move { Ok(url) })
    }

    fn verify<'a>(&'a self, r: &'a MediaRecord, stored: bool) -> BackendFuture<'a, Verification> {
        Box::pin(async move {
            let Some(bytes) = self.staged.lock().unwrap().remove(&r.id) else {
                return Ok(Verification::NotUploaded);
            };
            if bytes.len() as u64 != r.size || sha(&bytes) != r.sha256 {
                return Ok(Verification::Mismatch("other bytes".into()));
            }
            if stored {
                *self.discarded.lock().unwrap() += 1;
                return Ok(Verification::Verified);
            }
            self.stored.lock().unwrap().insert(r.sha256.clone(), bytes);
            Ok(Verification::Verified)
        })
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A sled store in `dir`: the engine (where the tests write what the messaging committer
/// writes, download grants) and the media records over it.
fn store(dir: &tempfile::TempDir) -> (Arc<dyn KvStore>, Arc<dyn MediaRecords>) {
    let kv: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
        chatd_kv::Engine::default(),
        dir.path().join("store"),
    ))
    .unwrap();
    (kv.clone(), Arc::new(EmbeddedMedia::new(kv)))
}

fn lazy_service(dir: &tempfile::TempDir) -> (MediaService, Arc<LazyBackend>, Arc<dyn KvStore>) {
    let backend = Arc::new(LazyBackend::default());
    let (kv, records) = store(dir);
    let service =
        MediaService::new(records, Box::new(backend.clone()), MediaSettings::default()).unwrap();
    (service, backend, kv)
}

fn bad(e: MediaError, needle: &str) {
    let f = e.failure();
    assert_eq!(f.code, ErrorCode::BadRequest, "{f:?}");
    assert!(
        f.message.contains(needle),
        "{:?} lacks {needle:?}",
        f.message
    );
}

#[tokio::test]
async fn lazy_verification_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let (media, backend, _kv) = lazy_service(&dir);
    let photo = b"a photo".to_vec();
    let digest = sha(&photo);

    let grant = media
        .upload("alice", "image/png", 7, &digest)
        .await
        .unwrap();
    assert!(!grant.exists);
    assert!(grant
        .upload_url
        .as_deref()
        .unwrap()
        .starts_with("lazy://up/m_"));
    let id = grant.media.clone();
    bad(
        media.check_media("alice", &id, None).await.unwrap_err(),
        "not been uploaded",
    );
    // Asking again while pending: the same id.
    assert_eq!(
        media
            .upload("alice", "image/png", 7, &digest)
            .await
            .unwrap()
            .media,
        id
    );

    backend
        .staged
        .lock()
        .unwrap()
        .insert(id.clone(), photo.clone());
    let checked = media
        .check_media("alice", &id, Some("image"))
        .await
        .unwrap();
    assert!(checked.is_verified());
    assert_eq!(backend.stored.lock().unwrap().len(), 1);
    let content = media.store.content(&digest).unwrap().unwrap();
    assert_eq!((content.size, content.uploader.as_str()), (7, "alice"));
    // Alice asking again: her id, nothing to upload.
    let again = media
        .upload("alice", "image/png", 7, &digest)
        .await
        .unwrap();
    assert!(again.exists && again.media == id && again.upload_url.is_none());

    // Bob knows only the hash: he must upload like anyone with new content, and his id is
    // not usable before his own bytes are verified.
    let bobs = media.upload("bob", "image/png", 7, &digest).await.unwrap();
    assert!(!bobs.exists && bobs.upload_url.is_some() && bobs.expires.is_some());
    assert_ne!(bobs.media, id);
    bad(
        media
            .check_media("bob", &bobs.media, Some("image"))
            .await
            .unwrap_err(),
        "not been uploaded",
    );
    backend
        .staged
        .lock()
        .unwrap()
        .insert(bobs.media.clone(), photo.clone());
    media
        .check_media("bob", &bobs.media, Some("image"))
        .await
        .unwrap();
    // His checked copy was dropped: still one stored copy.
    assert_eq!(backend.stored.lock().unwrap().len(), 1);
    assert_eq!(*backend.discarded.lock().unwrap(), 1);
    bad(
        media.check_media("carol", &id, None).await.unwrap_err(),
        "another user",
    );
    bad(
        media
            .check_media("alice", "m_none", None)
            .await
            .unwrap_err(),
        "unknown media",
    );
    bad(
        media.check_media("alice", "m/x", None).await.unwrap_err(),
        "not a media id",
    );

    // Carol, without the content: other declarations of it are not refused (a refusal would
    // tell her what is stored); they simply need an upload.
    for (mime, size) in [("image/png", 8), ("image/gif", 7)] {
        let g = media.upload("carol", mime, size, &digest).await.unwrap();
        assert!(!g.exists && g.upload_url.is_some(), "{g:?}");
    }
    // Alice, who has it, is told what she has.
    bad(
        media
            .upload("alice", "image/png", 8, &digest)
            .await
            .unwrap_err(),
        "with 7 bytes",
    );
    bad(
        media
            .upload("alice", "image/gif", 7, &digest)
            .await
            .unwrap_err(),
        "of type `image/png`",
    );
}

#[tokio::test]
async fn a_message_grants_the_content_to_its_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let (media, backend, kv) = lazy_service(&dir);
    let clip = b"a clip".to_vec();
    let digest = sha(&clip);
    let id = media
        .upload("alice", "video/mp4", 6, &digest)
        .await
        .unwrap()
        .media;
    backend.staged.lock().unwrap().insert(id.clone(), clip);
    media.check_media("alice", &id, None).await.unwrap();
    // What the committer writes for a message from alice to bob.
    for user in ["alice", "bob"] {
        kv.apply(vec![Op::Put(keys::media_access(&id, user), Vec::new())])
            .unwrap();
    }
    // Bob forwards it: an id of his own, verified, no upload.
    let bobs = media.upload("bob", "video/mp4", 6, &digest).await.unwrap();
    assert!(bobs.exists && bobs.upload_url.is_none(), "{bobs:?}");
    assert_ne!(bobs.media, id);
    media
        .check_media("bob", &bobs.media, Some("video"))
        .await
        .unwrap();
    bad(
        media
            .upload("bob", "video/mp4", 7, &digest)
            .await
            .unwrap_err(),
        "6 bytes",
    );
    // Carol got no message: she uploads.
    let carols = media
        .upload("carol", "video/mp4", 6, &digest)
        .await
        .unwrap();
    assert!(!carols.exists);
    assert_eq!(backend.stored.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn mismatched_uploads_are_rejected_and_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let (media, backend, _kv) = lazy_service(&dir);
    let digest = sha(b"right");
    let id = media
        .upload("alice", "audio/ogg", 5, &digest)
        .await
        .unwrap()
        .media;
    backend
        .staged
        .lock()
        .unwrap()
        .insert(id.clone(), b"wrong".to_vec());
    bad(
        media.check_media("alice", &id, None).await.unwrap_err(),
        "do not match",
    );
    bad(
        media.check_media("alice", &id, None).await.unwrap_err(),
        "rejected (other bytes)",
    );
    // A new attempt forgets the rejection.
    media
        .upload("alice", "audio/ogg", 5, &digest)
        .await
        .unwrap();
    bad(
        media.check_media("alice", &id, None).await.unwrap_err(),
        "not been uploaded",
    );
    backend
        .staged
        .lock()
        .unwrap()
        .insert(id.clone(), b"right".to_vec());
    media
        .check_media("alice", &id, Some("audio"))
        .await
        .unwrap();
}

#[tokio::test]
async fn message_type_must_fit_the_mime_type() {
    let dir = tempfile::tempdir().unwrap();
    let (media, backend, _kv) = lazy_service(&dir);
    let pdf = b"%PDF-1.7".to_vec();
    let id = media
        .upload("alice", "application/pdf", 8, &sha(&pdf))
        .await
        .unwrap()
        .media;
    backend.staged.lock().unwrap().insert(id.clone(), pdf);
    let gate: &dyn MediaGate = &media;
    let refused = gate.check_message("alice", &id, "image").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    assert!(
        refused.message.contains("send it as `file`"),
        "{}",
        refused.message
    );
    gate.check_message("alice", &id, "file").await.unwrap();
    gate.check("alice", &id).await.unwrap();
    assert_eq!(
        gate.check("bob", &id).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn download_needs_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (media, backend, kv) = lazy_service(&dir);
    let digest = sha(b"clip");
    let id = media
        .upload("alice", "video/mp4", 4, &digest)
        .await
        .unwrap()
        .media;
    backend
        .staged
        .lock()
        .unwrap()
        .insert(id.clone(), b"clip".to_vec());
    media
        .check_media("alice", &id, Some("video"))
        .await
        .unwrap();
    // The uploader alone may not download: only parties to a message may.
    let e = media.download("alice", &id).await.unwrap_err();
    assert_eq!(e.failure().code, ErrorCode::Forbidden);
    // What the committer writes for a message from alice to bob.
    for user in ["alice", "bob"] {
        kv.apply(vec![Op::Put(keys::media_access(&id, user), Vec::new())])
            .unwrap();
    }
    let grant = media.download("bob", &id).await.unwrap();
    assert_eq!((grant.size, grant.mime.as_str()), (4, "video/mp4"));
    assert_eq!(grant.sha256, digest);
    assert!(grant.url.starts_with("lazy://down/"));
    let e = media.download("carol", &id).await.unwrap_err();
    assert_eq!(e.failure().code, ErrorCode::Forbidden);
    let e = media.download("carol", "no/such").await.unwrap_err();
    assert_eq!(e.failure().code, ErrorCode::BadRequest);
}

fn fs_service(dir: &tempfile::TempDir) -> (MediaService, Arc<dyn KvStore>) {
    let fs = FsBackend::open(&dir.path().join("media"), KEY, "http://h").unwrap();
    let (kv, records) = store(dir);
    let service = MediaService::new(records, Box::new(fs), MediaSettings::default()).unwrap();
    (service, kv)
}

/// The `expires` and `sig` of an fs URL.
fn query(url: &str) -> (String, String) {
    let q = url.split_once('?').unwrap().1;
    let mut expires = String::new();
    let mut sig = String::new();
    for kv in q.split('&') {
        if let Some(v) = kv.strip_prefix("expires=") {
            expires = v.to_string();
        }
        if let Some(v) = kv.strip_prefix("sig=") {
            sig = v.to_string();
        }
    }
    (expires, sig)
}

async fn put(
    media: &MediaService,
    id: &str,
    url: &str,
    chunks: &[&[u8]],
) -> Result<UploadDone, TransferError> {
    let (expires, sig) = query(url);
    match media.begin_upload(id, &expires, &sig, None).await? {
        UploadStart::Stored(done) => Ok(done),
        UploadStart::Receiving(mut up) => {
            for chunk in chunks {
                up.write(chunk).await?;
            }
            up.finish().await
        }
    }
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[tokio::test]
async fn fs_uploads_are_checked_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (media, kv) = fs_service(&dir);
    let root = dir.path().join("media");
    let bytes = b"0123456789".to_vec();
    let grant = media
        .upload("alice", "image/jpeg", 10, &sha(&bytes))
        .await
        .unwrap();
    let (id, url) = (grant.media, grant.upload_url.unwrap());
    assert!(
        url.starts_with(&format!("http://h/media/{id}?expires=")),
        "{url}"
    );

    // Forged or misused URLs.
    let (expires, sig) = query(&url);
    // Change the last hex digit to a different one: appending a fixed "0" would forge nothing
    // whenever the real signature already ends in 0 (one run in sixteen).
    let last = if sig.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &sig[..63]);
    for (e, s) in [
        (expires.as_str(), forged.as_str()),
        ("1", sig.as_str()),
        (expires.as_str(), ""),
    ] {
        let got = media
            .begin_upload(&id, e, s, None)
            .await
            .err()
            .map(|e| e.status());
        assert_eq!(got, Some(403));
    }
    let got = media.open_download(&id, &expires, &sig).await.unwrap_err();
    assert_eq!(got.status(), 403, "an upload URL must not download");

    // Too many bytes, too few, wrong bytes: nothing kept.
    let e = put(&media, &id, &url, &[b"01234", b"567890"])
        .await
        .unwrap_err();
    assert_eq!(e.status(), 413);
    let e = put(&media, &id, &url, &[b"012345678"]).await.unwrap_err();
    assert_eq!(e.status(), 422);
    let e = put(&media, &id, &url, &[b"9876543210"]).await.unwrap_err();
    assert_eq!(e.status(), 422);
    assert!(e.to_string().contains("sha256"), "{e}");
    let (e2, s2) = query(&url);
    let early = media
        .begin_upload(&id, &e2, &s2, Some(11))
        .await
        .err()
        .map(|e| e.status());
    assert_eq!(early, Some(413));
    assert_eq!(files(&root), 0);
    bad(
        media.check_media("alice", &id, None).await.unwrap_err(),
        "rejected",
    );

    // The right bytes, in pieces.
    let done = put(&media, &id, &url, &[b"0123", b"456789"]).await.unwrap();
    assert!(!done.exists);
    assert_eq!(done.sha256, sha(&bytes));
    assert_eq!(files(&root), 1);
    media
        .check_media("alice", &id, Some("image"))
        .await
        .unwrap();
    // Again: already verified, nothing received.
    assert!(put(&media, &id, &url, &[b"ignored"]).await.unwrap().exists);
    // Bob declares the same content: he must send it, and only the right bytes verify his id;
    // the stored copy stays the only one.
    let bobs = media
        .upload("bob", "image/jpeg", 10, &sha(&bytes))
        .await
        .unwrap();
    assert!(!bobs.exists);
    let bob_url = bobs.upload_url.unwrap();
    let e = put(&media, &bobs.media, &bob_url, &[b"ignored"])
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422);
    bad(
        media
            .check_media("bob", &bobs.media, None)
            .await
            .unwrap_err(),
        "rejected",
    );
    let done = put(&media, &bobs.media, &bob_url, &[b"0123456789"])
        .await
        .unwrap();
    assert!(!done.exists);
    media.check_media("bob", &bobs.media, None).await.unwrap();
    assert_eq!(files(&root), 1);

    // Download URLs.
    kv.apply(vec![Op::Put(keys::media_access(&id, "bob"), Vec::new())])
        .unwrap();
    let url = media.download("bob", &id).await.unwrap().url;
    let (expires, sig) = query(&url);
    let mut found = media.open_download(&id, &expires, &sig).await.unwrap();
    assert_eq!((found.size, found.mime.as_str()), (10, "image/jpeg"));
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut found.file, &mut got)
        .await
        .unwrap();
    assert_eq!(got, bytes);
    let fs = media.backend.as_any().downcast_ref::<FsBackend>().unwrap();
    let expired = fs.signed_url(Access::Download, &id, 1);
    let (expires, sig) = query(&expired);
    assert_eq!(
        media
            .open_download(&id, &expires, &sig)
            .await
            .unwrap_err()
            .status(),
        403
    );
}

#[tokio::test]
async fn media_answers_its_ops_through_the_router() {
    use chatd_wire::request::{Caller, RpcRouter};
    let dir = tempfile::tempdir().unwrap();
    let (media, _kv) = fs_service(&dir);
    let mut router = RpcRouter::new();
    router.register(Arc::new(media)).unwrap();
    let caller = Caller {
        user: "alice",
        client_id: "alice:phone",
    };
    let ask = |payload: String| {
        let router = &router;
        async move {
            let reply = router.answer(caller, payload.as_bytes()).await;
            serde_json::from_slice::<serde_json::Value>(&reply).unwrap()
        }
    };
    // Ops of other services are not media's: they reach no media code.
    let other = ask(r#"{"rid":"r","op":"history","with":"bob"}"#.into()).await;
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{other}"
    );
    let req = format!(
        r#"{{"rid":"r-9","op":"media.upload","mime":"image/png","size":3,"sha256":"{}"}}"#,
        sha(b"abc").to_uppercase()
    );
    let reply = ask(req).await;
    assert_eq!(reply["rid"], "r-9");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["exists"], false);
    assert!(reply["result"]["expires"].as_u64().unwrap() > 1_700_000_000_000);
    let reply = ask(r#"{"rid":"r-10","op":"media.download","media":"m_1"}"#.into()).await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    let reply = ask(r#"{"rid":"r-11","op":"media.upload","mime":"image/png"}"#.into()).await;
    assert_eq!(reply["rid"], "r-11");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
}

#[test]
fn settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let backend = || Box::new(Arc::new(LazyBackend::default())) as Box<dyn Backend>;
    let ttl = MediaSettings {
        url_ttl_secs: 0,
        ..MediaSettings::default()
    };
    let e = MediaService::new(store(&dir).1, backend(), ttl).unwrap_err();
    assert!(e.to_string().contains("URL lifetime"), "{e}");
    assert_eq!(e.failure().code, ErrorCode::Internal);
}
