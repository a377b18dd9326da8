//! The media service end to end, for both back ends: `fs` (bytes under the data directory,
//! served by chatd's HTTP listener) and `s3` (a real S3-compatible server, `s3s-fs`, started by
//! these tests on a free port; it checks presigned signatures and expiry).
//!
//! Upload, de-duplication, verification, a 1:1 image message and its download by sender and
//! recipient, refusals for strangers and for media someone else uploaded or that is not
//! verified, forged and expired URLs, size and MIME limits, hash mismatches.
//!
//! The `s3` tests need `s3s-fs` on the PATH (`cargo install s3s-fs@0.14.1 --locked --features
//! binary`, which `.ci/run` does); without it they fail saying so.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{now_ms, online, unique, Client, Server, WAIT};

// ---------------------------------------------------------------------------------------------
// s3s-fs
// ---------------------------------------------------------------------------------------------

const S3_ACCESS_KEY: &str = "chatd-test-access";
const S3_SECRET_KEY: &str = "chatd-test-secret-key-0123456789";
const S3_BUCKET: &str = "media";

/// An `s3s-fs` child process serving a temporary directory on 127.0.0.1 and a free port, with
/// the bucket `media` created. Killed when dropped.
struct S3Server {
    port: u16,
    root: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    fn start() -> S3Server {
        let found = Command::new("s3s-fs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !found.is_ok_and(|s| s.success()) {
            panic!(
                "s3s-fs is not installed, so the s3 back end cannot be tested: run \
                 `cargo install s3s-fs@0.14.1 --locked --features binary` (.ci/run does)"
            );
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().expect("local addr").port()
        };
        let root = tempfile::Builder::new()
            .prefix("chatd-s3-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(root.path().join(S3_BUCKET)).expect("create the bucket");
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let s = S3Server { port, root, child };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        s
    }

    fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(S3_BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A chatd with one back end
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fs,
    S3,
}

/// chatd (users alice, bob, carol, dave) with the media back end of `kind`.
struct Fixture {
    kind: Kind,
    server: Server,
    s3: Option<S3Server>,
}

impl Fixture {
    /// `media_keys`: extra lines for the `[media]` table (e.g. `url_ttl_secs = 2`);
    /// `sections`: extra tables (e.g. `[media.limits.image]`).
    fn start(kind: Kind, media_keys: &str, sections: &str) -> Fixture {
        let s3 = (kind == Kind::S3).then(S3Server::start);
        let backend = match &s3 {
            None => "[media]\nbackend = \"fs\"\n".to_string(),
            Some(s3) => format!(
                "[media]\nbackend = \"s3\"\n{media_keys}\n\n[media.s3]\nendpoint = \"http://127.0.0.1:{}\"\n\
                 region = \"us-east-1\"\nbucket = \"{S3_BUCKET}\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\n\
                 secret_access_key = \"{S3_SECRET_KEY}\"\nforce_path_style = true\n",
                s3.port
            ),
        };
        let media = if kind == Kind::Fs {
            format!("{backend}{media_keys}\n")
        } else {
            backend
        };
        let server = Server::start_with(&format!("{media}\n{sections}\n"));
        for u in ["alice", "bob", "carol", "dave"] {
            server.add_user(u, &format!("{u}-pw"));
        }
        Fixture { kind, server, s3 }
    }

    /// Every stored object: files under the fs root (but `tmp/`), or in the bucket.
    fn objects(&self) -> Vec<String> {
        let root = match &self.s3 {
            Some(s3) => s3.bucket_dir(),
            None => self.server.data_dir().join("media"),
        };
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.retain(|p| !p.starts_with("tmp/"));
        out.sort();
        out
    }

    /// Stored content objects (named by their SHA-256), without staging uploads.
    fn contents(&self) -> Vec<String> {
        self.objects()
            .into_iter()
            .filter(|p| !p.starts_with("uploads/"))
            .collect()
    }

    /// Uploads in progress left on the fs back end (must be none).
    fn fs_leftovers(&self) -> Vec<String> {
        let tmp = self.server.data_dir().join("media").join("tmp");
        let mut out = Vec::new();
        walk(&tmp, &tmp, &mut out);
        out
    }

    /// The status a successful upload `PUT` answers.
    fn put_ok(&self) -> u16 {
        match self.kind {
            Kind::Fs => 201,
            Kind::S3 => 200,
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` bytes that differ for each `seed`.
fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed).wrapping_mul(0x0100_0193);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("http client")
}

async fn put(url: &str, body: Vec<u8>) -> (u16, String) {
    let r = http()
        .put(url)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// `(status, content type, body)`.
async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let r = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    (status, ctype, body)
}

async fn rpc(c: &mut Client, me: &str, op: &str, args: Value) -> Value {
    let mut req = json!({"rid": unique("r"), "op": op});
    for (k, v) in args.as_object().expect("args object") {
        req[k] = v.clone();
    }
    c.rpc(me, req).await
}

fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "reply: {reply}");
    &reply["result"]
}

fn assert_refused(reply: &Value, code: &str, needle: &str) {
    assert_eq!(reply["ok"], false, "reply: {reply}");
    assert_eq!(reply["error"]["code"], code, "reply: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "reply message should contain {needle:?}: {reply}"
    );
}

/// `media.upload` for `bytes` declared as `mime`.
async fn ask_upload(c: &mut Client, me: &str, mime: &str, bytes: &[u8]) -> Value {
    rpc(
        c,
        me,
        "media.upload",
        json!({"mime": mime, "size": bytes.len(), "sha256": sha256_hex(bytes)}),
    )
    .await
}

/// A successful `media.upload` that needs an upload: `(media, upload_url, expires)`.
async fn upload_grant(c: &mut Client, me: &str, mime: &str, bytes: &[u8]) -> (String, String, i64) {
    let reply = ask_upload(c, me, mime, bytes).await;
    let r = result(&reply);
    assert_eq!(r["exists"], false, "{reply}");
    let media = r["media"].as_str().expect("media id").to_string();
    assert!(media.starts_with("m_") && media.len() <= 64, "{reply}");
    let url = r["upload_url"].as_str().expect("upload_url").to_string();
    let expires = r["expires"].as_i64().expect("expires");
    assert!(
        expires > now_ms(),
        "expires {expires} is not in the future: {reply}"
    );
    (media, url, expires)
}

/// Uploads `bytes` as `me` until the upload succeeds (each try with a fresh URL, so a URL that
/// expired before it could be used on a slow machine is simply asked for again): the media id.
async fn upload_verified(
    f: &Fixture,
    c: &mut Client,
    me: &str,
    mime: &str,
    bytes: &[u8],
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (media, url, _) = upload_grant(c, me, mime, bytes).await;
        let (status, body) = put(&url, bytes.to_vec()).await;
        if status == f.put_ok() {
            return media;
        }
        assert!(
            status == 403 && Instant::now() < deadline,
            "upload PUT answered {status} {body}"
        );
    }
}

async fn send_media(c: &mut Client, me: &str, to: &str, kind: &str, media: &str) -> Value {
    let msg = json!({"cid": unique("c"), "to": to, "type": kind, "media": media, "text": "look"});
    c.send_json(me, &msg).await
}

fn assert_sent(ack: &Value) -> String {
    assert_eq!(ack["status"], "sent", "ack: {ack}");
    ack["id"].as_str().expect("message id").to_string()
}

fn assert_ack_refused(ack: &Value, code: &str, needle: &str) {
    assert_eq!(ack["error"]["code"], code, "ack: {ack}");
    let message = ack["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "ack message should contain {needle:?}: {ack}"
    );
}

/// `media.download` that must succeed: `(url, result)`.
async fn download_url(c: &mut Client, me: &str, media: &str) -> (String, Value) {
    let reply = rpc(c, me, "media.download", json!({"media": media})).await;
    let r = result(&reply).clone();
    assert_eq!(r["media"], media, "{reply}");
    let url = r["url"].as_str().expect("url").to_string();
    (url, r)
}

/// The value of query parameter `name` in `url`.
fn param<'a>(url: &'a str, name: &str) -> &'a str {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// `url` with the first character of parameter `name`'s value changed.
fn forge_param(url: &str, name: &str) -> String {
    let value = param(url, name);
    let at = url
        .find(&format!("{name}={value}"))
        .expect("param position")
        + name.len()
        + 1;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = match bytes[at] {
        b'0'..=b'8' | b'a'..=b'e' => bytes[at] + 1,
        _ => b'1',
    };
    String::from_utf8(bytes).expect("ascii url")
}

/// The signature and expiry parameter names of a back end's URLs.
fn sig_names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Fs => ("sig", "expires"),
        Kind::S3 => ("X-Amz-Signature", "X-Amz-Expires"),
    }
}

/// Waits (polling the clock) until `expires` (Unix ms) is past by more than a second, the
/// granularity of both back ends' expiry checks.
fn wait_past(expires: i64) {
    let deadline = Instant::now()
        + WAIT
        + Duration::from_millis(expires.saturating_sub(now_ms()).max(0) as u64);
    while now_ms() <= expires + 1500 {
        assert!(
            Instant::now() < deadline,
            "the clock did not pass {expires}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Upload, de-duplication, verification, download rights
// ---------------------------------------------------------------------------------------------

async fn share_a_photo(kind: Kind) {
    let f = Fixture::start(kind, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    let mut dave = online(s, "dave", "dave").await;
    // Over axum's default 2 MiB body limit, to show uploads are streamed.
    let photo = content(1, 3 * 1024 * 1024 + 17);

    let (media, url, _) = upload_grant(&mut alice, "alice", "image/png", &photo).await;
    // Asking again while it is pending: the same id (and a fresh URL).
    let again = ask_upload(&mut alice, "alice", "image/png", &photo).await;
    assert_eq!(result(&again)["media"], media.as_str(), "{again}");
    assert_eq!(result(&again)["exists"], false, "{again}");

    // Nothing uploaded yet: no message may reference it.
    let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
    assert_ack_refused(&ack, "bad_request", "not been uploaded");

    let (status, body) = put(&url, photo.clone()).await;
    assert_eq!(status, f.put_ok(), "PUT: {body}");
    if kind == Kind::Fs {
        let done: Value = serde_json::from_str(&body).expect("PUT answer is JSON");
        assert_eq!(done["media"], media.as_str(), "{done}");
        assert_eq!(done["sha256"], sha256_hex(&photo), "{done}");
        assert_eq!(done["size"], photo.len(), "{done}");
        assert!(f.fs_leftovers().is_empty(), "{:?}", f.fs_leftovers());
    }

    // Carol has the same bytes: stored already, no upload, an id of her own.
    let reply = ask_upload(&mut carol, "carol", "image/png", &photo).await;
    let r = result(&reply);
    assert_eq!(r["exists"], true, "{reply}");
    assert!(r.get("upload_url").is_none(), "{reply}");
    let carols = r["media"].as_str().expect("media").to_string();
    assert_ne!(carols, media, "carol got alice's media id");
    assert_eq!(
        f.contents(),
        vec![content_path(kind, &sha256_hex(&photo))],
        "exactly one stored copy"
    );
    assert!(f.objects().len() == 1, "objects: {:?}", f.objects());
    // The same content declared with another size or MIME type is refused.
    let reply = rpc(
        &mut carol,
        "carol",
        "media.upload",
        json!({"mime": "image/png", "size": photo.len() + 1, "sha256": sha256_hex(&photo)}),
    )
    .await;
    assert_refused(&reply, "bad_request", "stored with");
    let reply = ask_upload(&mut carol, "carol", "image/jpeg", &photo).await;
    assert_refused(&reply, "bad_request", "already stored as `image/png`");

    // Alice shares it with bob.
    let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
    let id = assert_sent(&ack);
    let m = bob.next_where("user/bob/inbox", "id", &json!(id)).await;
    assert_eq!(m["type"], "image", "{m}");
    assert_eq!(m["media"], media.as_str(), "{m}");
    assert_eq!(m["text"], "look", "{m}");

    // Sender and recipient download it.
    for (c, me) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let (url, r) = download_url(c, me, &media).await;
        assert_eq!(r["size"], photo.len(), "{r}");
        assert_eq!(r["mime"], "image/png", "{r}");
        assert_eq!(r["sha256"], sha256_hex(&photo), "{r}");
        assert!(r["expires"].as_i64().expect("expires") > now_ms(), "{r}");
        let (status, ctype, body) = get(&url).await;
        assert_eq!(status, 200, "GET as {me}");
        assert!(
            body == photo,
            "{me} downloaded other bytes ({} bytes)",
            body.len()
        );
        if kind == Kind::Fs {
            assert_eq!(ctype, "image/png");
        }
    }

    // Nobody else: not carol (she holds the same content under her own id), not dave, and
    // nobody for an id that does not exist.
    let reply = rpc(
        &mut carol,
        "carol",
        "media.download",
        json!({"media": media}),
    )
    .await;
    assert_refused(&reply, "forbidden", "may download");
    let reply = rpc(&mut dave, "dave", "media.download", json!({"media": media})).await;
    assert_refused(&reply, "forbidden", "may download");
    let reply = rpc(
        &mut dave,
        "dave",
        "media.download",
        json!({"media": "m_nosuch"}),
    )
    .await;
    assert_refused(&reply, "forbidden", "may download");

    // Bob may not send alice's media on; nobody may send an unknown id.
    let ack = send_media(&mut bob, "bob", "carol", "image", &media).await;
    assert_ack_refused(&ack, "bad_request", "uploaded by another user");
    let ack = send_media(&mut bob, "bob", "carol", "file", "m_0123456789").await;
    assert_ack_refused(&ack, "bad_request", "unknown media");

    // Carol sends the de-duplicated content under her id; bob fetches it through that id.
    let ack = send_media(&mut carol, "carol", "bob", "file", &carols).await;
    assert_sent(&ack);
    let (url, _) = download_url(&mut bob, "bob", &carols).await;
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body == photo, "bob downloaded other bytes via carol's id");

    // Alice asking again for verified content: her same id, exists.
    let reply = ask_upload(&mut alice, "alice", "image/png", &photo).await;
    assert_eq!(result(&reply)["media"], media.as_str(), "{reply}");
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    assert_eq!(f.objects().len(), 1, "objects: {:?}", f.objects());
}

/// Where a back end keeps the content with this hash, relative to its root.
fn content_path(kind: Kind, sha: &str) -> String {
    match kind {
        Kind::Fs => format!("{}/{sha}", &sha[..2]),
        Kind::S3 => sha.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_share_a_photo() {
    share_a_photo(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_share_a_photo() {
    share_a_photo(Kind::S3).await;
}

// ---------------------------------------------------------------------------------------------
// Forged and expired URLs
// ---------------------------------------------------------------------------------------------

async fn forged_urls(kind: Kind) {
    let f = Fixture::start(kind, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let _bob = online(s, "bob", "bob").await;
    let photo = content(2, 4000);
    let (sig, exp) = sig_names(kind);

    let (media, url, _) = upload_grant(&mut alice, "alice", "image/jpeg", &photo).await;
    let other_id = match kind {
        Kind::Fs => url.replacen(&media, "m_0000000000", 1),
        Kind::S3 => url.replacen(&media, &format!("{}x", &media[..media.len() - 1]), 1),
    };
    for forged in [forge_param(&url, sig), forge_param(&url, exp), other_id] {
        assert_ne!(forged, url);
        let (status, body) = put(&forged, photo.clone()).await;
        assert_eq!(status, 403, "forged upload URL {forged}: {body}");
    }
    // An upload URL does not download.
    let (status, _, _) = get(&url).await;
    assert!(
        status == 403 || status == 404,
        "GET on an upload URL: {status}"
    );
    assert!(f.contents().is_empty(), "stored: {:?}", f.contents());
    if kind == Kind::Fs {
        assert!(f.objects().is_empty(), "stored: {:?}", f.objects());
    }
    let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
    assert_ack_refused(&ack, "bad_request", "not been uploaded");

    // The real URL works.
    let (status, body) = put(&url, photo.clone()).await;
    assert_eq!(status, f.put_ok(), "{body}");
    assert_sent(&send_media(&mut alice, "alice", "bob", "image", &media).await);
    let (url, _) = download_url(&mut alice, "alice", &media).await;
    for forged in [forge_param(&url, sig), forge_param(&url, exp)] {
        let (status, _, body) = get(&forged).await;
        assert_eq!(
            status,
            403,
            "forged download URL {forged}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A download URL does not upload.
    let (status, _) = put(&url, content(3, 4000)).await;
    assert_eq!(status, 403, "PUT on a download URL");
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body == photo, "download changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_forged_urls_are_refused() {
    forged_urls(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_forged_urls_are_refused() {
    forged_urls(Kind::S3).await;
}

async fn expired_urls(kind: Kind) {
    let f = Fixture::start(kind, "url_ttl_secs = 2", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let _bob = online(s, "bob", "bob").await;
    let photo = content(4, 5000);

    // An upload URL used after it expired.
    let (media, url, expires) = upload_grant(&mut alice, "alice", "image/png", &photo).await;
    wait_past(expires);
    let (status, body) = put(&url, photo.clone()).await;
    assert_eq!(status, 403, "expired upload URL: {body}");
    assert!(f.contents().is_empty(), "stored: {:?}", f.contents());
    let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
    assert_ack_refused(&ack, "bad_request", "not been uploaded");

    // A download URL used after it expired.
    let media = upload_verified(&f, &mut alice, "alice", "image/png", &photo).await;
    assert_sent(&send_media(&mut alice, "alice", "bob", "image", &media).await);
    let (url, r) = download_url(&mut alice, "alice", &media).await;
    wait_past(r["expires"].as_i64().expect("expires"));
    let (status, _, _) = get(&url).await;
    assert_eq!(status, 403, "expired download URL");
    // A fresh one works.
    let (url, _) = download_url(&mut alice, "alice", &media).await;
    let (status, _, body) = get(&url).await;
    assert!(status == 200 && body == photo, "fresh download: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_expired_urls_are_refused() {
    expired_urls(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_expired_urls_are_refused() {
    expired_urls(Kind::S3).await;
}

// ---------------------------------------------------------------------------------------------
// Limits and malformed requests
// ---------------------------------------------------------------------------------------------

async fn limits(kind: Kind) {
    let f = Fixture::start(
        kind,
        "",
        "[media.limits.image]\nmax_bytes = 1000\n\n[media.limits.file]\nmime = [\"application/pdf\"]\n",
    );
    let mut alice = online(&f.server, "alice", "alice").await;
    let sha = sha256_hex(b"x");
    let up = |mime: &str, size: Value| json!({"mime": mime, "size": size, "sha256": sha});

    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        up("image/png", json!(1001)),
    )
    .await;
    assert_refused(&reply, "too_large", "media.limits.image.max_bytes");
    assert_refused(&reply, "too_large", "1000");
    // Video keeps its default limit.
    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        up("video/mp4", json!(1001)),
    )
    .await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");
    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        up("IMAGE/PNG", json!(1000)),
    )
    .await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");

    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        up("application/zip", json!(10)),
    )
    .await;
    assert_refused(&reply, "bad_request", "`application/zip` is not allowed");
    assert_refused(&reply, "bad_request", "file: application/pdf");
    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        up("application/pdf", json!(10)),
    )
    .await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");

    for (args, needle) in [
        (up("image", json!(10)), "MIME type"),
        (up("image/png; q=1", json!(10)), "MIME type"),
        (up("image/png", json!(0)), "`size`"),
        (up("image/png", json!("10")), "`size`"),
        (up("image/png", json!(-5)), "`size`"),
        (up("image/png", json!(1.5)), "`size`"),
        (
            json!({"mime": "image/png", "size": 10, "sha256": "abc"}),
            "`sha256`",
        ),
        (
            json!({"mime": "image/png", "size": 10}),
            "`sha256` is required",
        ),
        (json!({"size": 10, "sha256": sha}), "`mime` is required"),
        (
            json!({"mime": "image/png", "size": 10, "sha256": sha, "name": "x"}),
            "unknown field `name`",
        ),
    ] {
        let reply = rpc(&mut alice, "alice", "media.upload", args.clone()).await;
        assert_refused(&reply, "bad_request", needle);
    }
    for (args, needle) in [
        (json!({"media": "m/1"}), "not a media id"),
        (json!({}), "`media` is required"),
        (json!({"media": "m_1", "x": 1}), "unknown field `x`"),
    ] {
        let reply = rpc(&mut alice, "alice", "media.download", args).await;
        assert_refused(&reply, "bad_request", needle);
    }
    // Without a usable rid the reply has none.
    alice
        .publish_json(
            "chat/alice/rpc",
            &json!({"op": "media.download", "media": "m_1"}),
        )
        .await;
    let reply = alice.next_on("user/alice/rpc").await;
    assert!(reply.get("rid").is_none(), "{reply}");
    assert_refused(&reply, "bad_request", "`rid` is required");
    assert!(f.contents().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_limits_are_enforced() {
    limits(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_limits_are_enforced() {
    limits(Kind::S3).await;
}

// ---------------------------------------------------------------------------------------------
// Uploads that do not match their declaration
// ---------------------------------------------------------------------------------------------

async fn mismatches(kind: Kind) {
    let f = Fixture::start(kind, "", "");
    let mut alice = online(&f.server, "alice", "alice").await;
    let _bob = online(&f.server, "bob", "bob").await;
    let declared = content(5, 6000);
    let other = content(6, 6000);

    // Other bytes of the same length.
    let (media, url, _) = upload_grant(&mut alice, "alice", "image/png", &declared).await;
    let (status, body) = put(&url, other.clone()).await;
    match kind {
        Kind::Fs => {
            assert_eq!(status, 422, "{body}");
            assert!(body.contains("sha256"), "{body}");
        }
        // S3 stores whatever the URL allows; chatd checks when a message references it.
        Kind::S3 => {
            assert_eq!(status, 200, "{body}");
            assert_eq!(f.objects(), vec![format!("uploads/{media}")]);
            let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
            assert_ack_refused(&ack, "bad_request", "do not match");
        }
    }
    assert!(f.objects().is_empty(), "kept: {:?}", f.objects());
    let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
    assert_ack_refused(&ack, "bad_request", "rejected");
    assert_ack_refused(&ack, "bad_request", "sha256");

    // One byte too many, and one too few.
    for (bytes, fs_status, needle) in [
        ([declared.as_slice(), b"!"].concat(), 413, "more"),
        (declared[..declared.len() - 1].to_vec(), 422, "bytes"),
    ] {
        let (again, url, _) = upload_grant(&mut alice, "alice", "image/png", &declared).await;
        assert_eq!(again, media, "asking again gives the same id");
        let (status, body) = put(&url, bytes).await;
        if kind == Kind::Fs {
            assert_eq!(status, fs_status, "{body}");
        } else {
            assert_eq!(status, 200, "{body}");
        }
        let ack = send_media(&mut alice, "alice", "bob", "image", &media).await;
        assert_ack_refused(&ack, "bad_request", needle);
        assert!(f.objects().is_empty(), "kept: {:?}", f.objects());
        if kind == Kind::Fs {
            assert!(f.fs_leftovers().is_empty(), "{:?}", f.fs_leftovers());
        }
    }

    // The right bytes, at last.
    let (_, url, _) = upload_grant(&mut alice, "alice", "image/png", &declared).await;
    let (status, body) = put(&url, declared.clone()).await;
    assert_eq!(status, f.put_ok(), "{body}");
    assert_sent(&send_media(&mut alice, "alice", "bob", "image", &media).await);
    assert_eq!(
        f.objects(),
        vec![content_path(kind, &sha256_hex(&declared))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_hash_mismatch_is_rejected() {
    mismatches(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hash_mismatch_is_rejected() {
    mismatches(Kind::S3).await;
}

// ---------------------------------------------------------------------------------------------
// fs: restarts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_media_and_signing_key_survive_a_restart() {
    let mut f = Fixture::start(Kind::Fs, "", "");
    let photo = content(7, 2048);
    let (media, url) = {
        let mut alice = online(&f.server, "alice", "alice").await;
        let _bob = online(&f.server, "bob", "bob").await;
        let media = upload_verified(&f, &mut alice, "alice", "image/webp", &photo).await;
        assert_sent(&send_media(&mut alice, "alice", "bob", "image", &media).await);
        let (url, _) = download_url(&mut alice, "alice", &media).await;
        (media, url)
    };
    let key = f.server.data_dir().join("media.key");
    let mode = std::fs::metadata(&key).expect("media.key").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "media.key must be private"
    );
    assert_eq!(f.server.stop().code(), Some(0));
    f.server.restart();

    // The URL issued before the restart still verifies (same key), at the new address.
    let path = &url[url.find("/media/").expect("media path")..];
    let url = format!("http://{}{path}", f.server.http);
    let (status, ctype, body) = get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "image/webp");
    assert!(body == photo, "other bytes after a restart");
    let mut bob = online(&f.server, "bob:2", "bob").await;
    let (url, _) = download_url(&mut bob, "bob", &media).await;
    assert_eq!(get(&url).await.0, 200);
}

/// Group media: a member at send time may download, a member removed before the send may not
/// (media sent before the removal stays theirs), a stranger never.
async fn group_media(kind: Kind) {
    let f = Fixture::start(kind, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    let mut dave = online(s, "dave", "dave").await;
    let created = rpc(
        &mut alice,
        "alice",
        "group.create",
        json!({"name": "photos", "members": ["bob", "carol"]}),
    )
    .await;
    let group = result(&created)["group"].as_str().unwrap().to_string();
    let group_send =
        |media: &str| json!({"cid": unique("c"), "group": group, "type": "image", "media": media});

    let before = upload_verified(&f, &mut alice, "alice", "image/png", &content(7, 4096)).await;
    assert_sent(&alice.send_json("alice", &group_send(&before)).await);
    let removed = rpc(
        &mut alice,
        "alice",
        "group.remove",
        json!({"group": group, "users": ["carol"]}),
    )
    .await;
    result(&removed);
    let after = upload_verified(&f, &mut alice, "alice", "image/png", &content(8, 4096)).await;
    assert_sent(&alice.send_json("alice", &group_send(&after)).await);

    // bob, a member both times, downloads both.
    for media in [&before, &after] {
        let (url, _) = download_url(&mut bob, "bob", media).await;
        let (status, _, _) = get(&url).await;
        assert_eq!(status, 200, "bob downloads {media}");
    }
    // carol keeps what was sent while she was a member, nothing after.
    download_url(&mut carol, "carol", &before).await;
    let refused = rpc(
        &mut carol,
        "carol",
        "media.download",
        json!({"media": after}),
    )
    .await;
    assert_refused(&refused, "forbidden", "");
    // dave was never a member.
    let refused = rpc(
        &mut dave,
        "dave",
        "media.download",
        json!({"media": before}),
    )
    .await;
    assert_refused(&refused, "forbidden", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_group_media_follows_membership() {
    group_media(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_group_media_follows_membership() {
    group_media(Kind::S3).await;
}
