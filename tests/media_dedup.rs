//! De-duplication never grants access (issue 12, item 13), for both media back ends.
//!
//! Someone who knows only a stored content's SHA-256 — not its bytes — learns nothing from
//! `media.upload` (no refusal names the stored size or MIME type, no `exists: true`) and gets
//! no usable media id: they must upload the bytes like anyone with new content. Who holds the
//! content — its uploader, a recipient of a message carrying it — gets `exists: true`, and
//! storage keeps one copy however many users upload the same bytes.
//!
//! The `s3` test needs `s3s-fs` on the PATH (see `tests/media.rs`).

use crate::support;

use crate::support::media_kit;

use media_kit::*;
use serde_json::{json, Value};
use support::online;

/// `media.upload` of `sha256` with an arbitrary declaration.
async fn declare(c: &mut support::Client, me: &str, mime: &str, size: usize, sha: &str) -> Value {
    rpc(
        c,
        me,
        "media.upload",
        json!({"mime": mime, "size": size, "sha256": sha}),
    )
    .await
}

/// Asserts an answer that needs an upload, exactly like one for content nobody stored: the
/// media id.
fn needs_upload(reply: &Value) -> String {
    let r = result(reply);
    assert_eq!(r["exists"], false, "{reply}");
    assert!(r["upload_url"].is_string(), "{reply}");
    assert!(r["expires"].is_i64(), "{reply}");
    r["media"].as_str().expect("media id").to_string()
}

async fn a_hash_alone_gets_nothing(kind: Kind) {
    let f = Fixture::start(kind, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    // dave has read the hash somewhere (a log, a message preview, a public file list).
    let mut dave = online(s, "dave", "dave").await;
    let secret = content(40, 5000);
    let sha = sha256_hex(&secret);

    // Alice uploads the photo and sends it to bob: stored, verified, referenced.
    let alices = upload_verified(&f, &mut alice, "alice", "image/png", &secret).await;
    let id = assert_sent(&send_media(&mut alice, "alice", "bob", "image", &alices).await);
    bob.next_where("user/bob/inbox", "id", &json!(id)).await;

    // What dave gets for a declaration is what he would get for content nobody stored: no
    // refusal telling the stored size or MIME type, no `exists`.
    let unstored = sha256_hex(b"nobody stored this");
    for (mime, size) in [
        ("image/png", secret.len() + 1),
        ("image/jpeg", secret.len()),
        ("image/png", secret.len()),
    ] {
        let fresh = declare(&mut dave, "dave", mime, size, &unstored).await;
        needs_upload(&fresh);
        let reply = declare(&mut dave, "dave", mime, size, &sha).await;
        needs_upload(&reply);
    }
    // His id for the content is not usable: no message may carry it, so no download right.
    let reply = declare(&mut dave, "dave", "image/png", secret.len(), &sha).await;
    let daves = needs_upload(&reply);
    assert_ne!(daves, alices);
    let ack = send_media(&mut dave, "dave", "carol", "image", &daves).await;
    assert_ack_refused(&ack, "bad_request", "not been uploaded");
    for media in [&daves, &alices] {
        let reply = rpc(&mut dave, "dave", "media.download", json!({"media": media})).await;
        assert_refused(&reply, "forbidden", "may download");
    }

    // Guessed bytes of the right size do not verify it.
    let url = result(&reply)["upload_url"].as_str().unwrap().to_string();
    let (status, body) = put(&url, content(41, secret.len())).await;
    match kind {
        Kind::Fs => assert_eq!(status, 422, "{body}"),
        Kind::S3 => assert_eq!(status, 200, "{body}"),
    }
    let ack = send_media(&mut dave, "dave", "carol", "image", &daves).await;
    assert_ack_refused(&ack, "bad_request", "sha256");

    // bob holds the content through alice's message: he may forward it without uploading.
    let reply = ask_upload(&mut bob, "bob", "image/png", &secret).await;
    let r = result(&reply);
    assert_eq!(r["exists"], true, "{reply}");
    assert!(r.get("upload_url").is_none(), "{reply}");
    let bobs = r["media"].as_str().expect("media").to_string();
    assert_ne!(bobs, alices);
    let id = assert_sent(&send_media(&mut bob, "bob", "carol", "image", &bobs).await);
    carol.next_where("user/carol/inbox", "id", &json!(id)).await;
    let (url, _) = download_url(&mut carol, "carol", &bobs).await;
    let (status, _, body) = get(&url).await;
    assert!(
        status == 200 && body == secret,
        "carol's download: {status}"
    );

    // dave with the real bytes is a legitimate uploader: his own id, and still one stored copy.
    let daves_again = upload_verified(&f, &mut dave, "dave", "image/png", &secret).await;
    assert_eq!(daves_again, daves);
    assert_sent(&send_media(&mut dave, "dave", "carol", "image", &daves).await);
    assert_eq!(
        f.objects(),
        vec![content_path(kind, &sha)],
        "exactly one stored copy and no staging object"
    );
    if kind == Kind::Fs {
        assert!(f.fs_leftovers().is_empty(), "{:?}", f.fs_leftovers());
    }
    // Now that he has it, dave is told when his declaration contradicts what he holds.
    let reply = declare(&mut dave, "dave", "image/png", secret.len() + 1, &sha).await;
    assert_refused(&reply, "bad_request", &format!("{} bytes", secret.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_a_hash_alone_gets_nothing() {
    a_hash_alone_gets_nothing(Kind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_hash_alone_gets_nothing() {
    a_hash_alone_gets_nothing(Kind::S3).await;
}
