//! Shared by the media end-to-end tests (`tests/media.rs`, `tests/media_dedup.rs`): an `s3s-fs`
//! server, a chatd with either media back end, and client helpers for `media.upload` /
//! `media.download`, uploads and downloads.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{now_ms, unique, Client, Server, WAIT};

// ---------------------------------------------------------------------------------------------
// s3s-fs
// ---------------------------------------------------------------------------------------------

pub const S3_ACCESS_KEY: &str = "chatd-test-access";
pub const S3_SECRET_KEY: &str = "chatd-test-secret-key-0123456789";
pub const S3_BUCKET: &str = "media";

/// An `s3s-fs` child process serving a temporary directory on 127.0.0.1 and a free port, with
/// the bucket `media` created. Killed when dropped.
pub struct S3Server {
    port: u16,
    root: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
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

    pub fn bucket_dir(&self) -> PathBuf {
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

/// The media back end under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes under the data directory, through chatd's HTTP listener.
    Fs,
    /// Bytes in `s3s-fs`, through presigned URLs.
    S3,
}

/// chatd (users alice, bob, carol, dave) with the media back end of `kind`.
pub struct Fixture {
    pub kind: Kind,
    pub server: Server,
    pub s3: Option<S3Server>,
}

impl Fixture {
    /// `media_keys`: extra lines for the `[media]` table (e.g. `url_ttl_secs = 2`);
    /// `sections`: extra tables (e.g. `[media.limits.image]`).
    pub fn start(kind: Kind, media_keys: &str, sections: &str) -> Fixture {
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
    pub fn objects(&self) -> Vec<String> {
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
    pub fn contents(&self) -> Vec<String> {
        self.objects()
            .into_iter()
            .filter(|p| !p.starts_with("uploads/"))
            .collect()
    }

    /// Uploads in progress left on the fs back end (must be none).
    pub fn fs_leftovers(&self) -> Vec<String> {
        let tmp = self.server.data_dir().join("media").join("tmp");
        let mut out = Vec::new();
        walk(&tmp, &tmp, &mut out);
        out
    }

    /// The status a successful upload `PUT` answers.
    pub fn put_ok(&self) -> u16 {
        match self.kind {
            Kind::Fs => 201,
            Kind::S3 => 200,
        }
    }
}

pub fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` bytes that differ for each `seed`.
pub fn content(seed: u8, len: usize) -> Vec<u8> {
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

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("http client")
}

pub async fn put(url: &str, body: Vec<u8>) -> (u16, String) {
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
pub async fn get(url: &str) -> (u16, String, Vec<u8>) {
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

pub async fn rpc(c: &mut Client, me: &str, op: &str, args: Value) -> Value {
    let mut req = json!({"rid": unique("r"), "op": op});
    for (k, v) in args.as_object().expect("args object") {
        req[k] = v.clone();
    }
    c.rpc(me, req).await
}

pub fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "reply: {reply}");
    &reply["result"]
}

pub fn assert_refused(reply: &Value, code: &str, needle: &str) {
    assert_eq!(reply["ok"], false, "reply: {reply}");
    assert_eq!(reply["error"]["code"], code, "reply: {reply}");
    let message = reply["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "reply message should contain {needle:?}: {reply}"
    );
}

/// `media.upload` for `bytes` declared as `mime`.
pub async fn ask_upload(c: &mut Client, me: &str, mime: &str, bytes: &[u8]) -> Value {
    rpc(
        c,
        me,
        "media.upload",
        json!({"mime": mime, "size": bytes.len(), "sha256": sha256_hex(bytes)}),
    )
    .await
}

/// A successful `media.upload` that needs an upload: `(media, upload_url, expires)`.
pub async fn upload_grant(
    c: &mut Client,
    me: &str,
    mime: &str,
    bytes: &[u8],
) -> (String, String, i64) {
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
pub async fn upload_verified(
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

pub async fn send_media(c: &mut Client, me: &str, to: &str, kind: &str, media: &str) -> Value {
    let msg = json!({"cid": unique("c"), "to": to, "type": kind, "media": media, "text": "look"});
    c.send_json(me, &msg).await
}

pub fn assert_sent(ack: &Value) -> String {
    assert_eq!(ack["status"], "sent", "ack: {ack}");
    ack["id"].as_str().expect("message id").to_string()
}

pub fn assert_ack_refused(ack: &Value, code: &str, needle: &str) {
    assert_eq!(ack["error"]["code"], code, "ack: {ack}");
    let message = ack["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "ack message should contain {needle:?}: {ack}"
    );
}

/// `media.download` that must succeed: `(url, result)`.
pub async fn download_url(c: &mut Client, me: &str, media: &str) -> (String, Value) {
    let reply = rpc(c, me, "media.download", json!({"media": media})).await;
    let r = result(&reply).clone();
    assert_eq!(r["media"], media, "{reply}");
    let url = r["url"].as_str().expect("url").to_string();
    (url, r)
}

/// Where a back end keeps the content with this hash, relative to its root.
pub fn content_path(kind: Kind, sha: &str) -> String {
    match kind {
        Kind::Fs => format!("{}/{sha}", &sha[..2]),
        Kind::S3 => sha.to_string(),
    }
}
