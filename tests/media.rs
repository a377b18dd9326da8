//! The media service end to end, for both back ends: `fs` (bytes under the data directory,
//! served by chatd's HTTP listener) and `s3` (a real S3-compatible server, `s3s-fs`, started by
//! these tests on a free port; it checks presigned signatures and expiry).
//!
//! Upload, de-duplication, verification, a 1:1 image message and its download by sender and
//! recipient, refusals for strangers and for media someone else uploaded or that is not
//! verified, forged and expired URLs, size and MIME limits, hash mismatches. (What a hash alone
//! does not give is in `tests/media_dedup.rs`; both share `support/media_kit.rs`.)
//!
//! The `s3` tests need `s3s-fs` on the PATH (`cargo install s3s-fs@0.14.1 --locked --features
//! binary`, which `.ci/run` does); without it they fail saying so.

use crate::support;

use crate::support::media_kit;

use std::time::{Duration, Instant};

use media_kit::*;
use serde_json::{json, Value};
use support::{now_ms, online, unique, WAIT};

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

    // Carol has the same bytes, but nothing shows she does: like anyone with new content she
    // gets an upload URL and an id of her own (never alice's), not usable before her bytes
    // arrive. Other declarations of the same hash are not refused either: a refusal would
    // tell her what is stored.
    let reply = rpc(
        &mut carol,
        "carol",
        "media.upload",
        json!({"mime": "image/png", "size": photo.len() + 1, "sha256": sha256_hex(&photo)}),
    )
    .await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");
    let reply = ask_upload(&mut carol, "carol", "image/jpeg", &photo).await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");
    let (carols, carol_url, _) = upload_grant(&mut carol, "carol", "image/png", &photo).await;
    assert_ne!(carols, media, "carol got alice's media id");
    let ack = send_media(&mut carol, "carol", "bob", "file", &carols).await;
    assert_ack_refused(&ack, "bad_request", "not been uploaded");

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

    // Carol uploads her bytes: checked, then dropped in favour of the stored copy. She sends
    // the de-duplicated content under her id; bob fetches it through that id.
    let (status, body) = put(&carol_url, photo.clone()).await;
    assert_eq!(status, f.put_ok(), "carol's PUT: {body}");
    let ack = send_media(&mut carol, "carol", "bob", "file", &carols).await;
    assert_sent(&ack);
    assert_eq!(
        f.objects(),
        vec![content_path(kind, &sha256_hex(&photo))],
        "exactly one stored copy"
    );
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
            json!({"mime": "image/png", "size": 10, "sha256": sha, "title": "x"}),
            "unknown field `title`",
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
