//! Media metadata end to end (issue 18, "for media a file name, pixel size, duration and a small
//! preview image"): what `media.upload` declares besides the bytes — `name`, `width` and
//! `height`, `duration`, `preview` — comes back from `media.download` to the sender and to
//! every recipient, only the fields given; wrong fields are refused naming them; asking again
//! sets what the media id carries; it survives a restart. On the `fs` back end (metadata does
//! not depend on where the bytes are).

use crate::support;

use crate::support::media_kit;

use media_kit::*;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{online, Client, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The metadata fields of the contract.
const FIELDS: [&str; 5] = ["name", "width", "height", "duration", "preview"];

/// The eight bytes every PNG starts with and a zero byte, in base64.
const PNG_START: &str = "iVBORw0KGgoA";

/// A PNG preview `data:` URL of `len` bytes in all (`len` ≡ 2 mod 4).
fn png_preview(len: usize) -> String {
    let head = format!("data:image/png;base64,{PNG_START}");
    assert_eq!((len - head.len()) % 4, 0, "a preview of {len} bytes");
    format!("{head}{}", "A".repeat(len - head.len()))
}

/// `media.upload` of `bytes` as `image/png` with the metadata fields of `meta`.
async fn upload_with(c: &mut Client, me: &str, bytes: &[u8], meta: &Value) -> Value {
    let mut args = json!({"mime": "image/png", "size": bytes.len(), "sha256": sha256_hex(bytes)});
    for (k, v) in meta.as_object().expect("meta object") {
        args[k] = v.clone();
    }
    rpc(c, me, "media.upload", args).await
}

/// Uploads `bytes` with `meta` until the PUT succeeds: the media id.
async fn upload_verified_with(
    f: &Fixture,
    c: &mut Client,
    me: &str,
    bytes: &[u8],
    meta: &Value,
) -> String {
    loop {
        let reply = upload_with(c, me, bytes, meta).await;
        let r = result(&reply);
        let media = r["media"].as_str().expect("media id").to_string();
        let url = r["upload_url"].as_str().expect("upload_url");
        let (status, body) = put(url, bytes.to_vec()).await;
        if status == f.put_ok() {
            return media;
        }
        // Only an URL that expired on a slow machine is worth another try.
        assert_eq!(status, 403, "upload PUT answered {status} {body}");
    }
}

/// `me` sends `media` to `to`, who receives it: the message.
async fn share(from: &mut Client, me: &str, to: &mut Client, them: &str, media: &str) -> Value {
    let id = assert_sent(&send_media(from, me, them, "image", media).await);
    let m = to
        .next_where(&format!("user/{them}/inbox"), "id", &json!(id))
        .await;
    assert_eq!(m["media"], media, "{m}");
    m
}

/// Asserts that a `media.download` result carries exactly the metadata of `meta`, after the
/// fields it always has.
fn assert_meta(download: &Value, meta: &Value) {
    for field in FIELDS {
        assert_eq!(
            download.get(field),
            meta.get(field),
            "`{field}` of {download}"
        );
    }
    let keys: Vec<&str> = download
        .as_object()
        .expect("result object")
        .keys()
        .map(String::as_str)
        .collect();
    let given: Vec<&str> = FIELDS
        .into_iter()
        .filter(|f| meta.get(f).is_some())
        .collect();
    assert_eq!(
        keys,
        [
            &["media", "url", "expires", "mime", "size", "sha256"][..],
            &given
        ]
        .concat(),
        "{download}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_and_recipient_see_the_metadata() {
    let f = Fixture::start(Kind::Fs, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let photo = content(60, 4000);
    let meta = json!({
        "name": "Strand, Juli 2026 — ☀.png",
        "width": 4032,
        "height": 3024,
        "duration": 0,
        "preview": png_preview(2002),
    });

    let media = upload_verified_with(&f, &mut alice, "alice", &photo, &meta).await;
    let m = share(&mut alice, "alice", &mut bob, "bob", &media).await;
    // The message names the media only; its metadata comes with the download.
    for field in FIELDS {
        assert!(m.get(field).is_none(), "{m}");
    }
    for (c, me) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let (url, r) = download_url(c, me, &media).await;
        assert_meta(&r, &meta);
        assert_eq!(
            (r["mime"].as_str(), r["size"].as_u64()),
            (Some("image/png"), Some(4000))
        );
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 200, "GET as {me}");
        assert!(body == photo, "{me} downloaded other bytes");
    }

    // A voice note: a duration and a name, nothing else, and only those come back.
    let voice = content(61, 3000);
    let meta = json!({"name": "voice.ogg", "duration": 86_400_000});
    let reply = rpc(
        &mut alice,
        "alice",
        "media.upload",
        json!({"mime": "audio/ogg", "size": voice.len(), "sha256": sha256_hex(&voice),
               "name": "voice.ogg", "duration": 86_400_000}),
    )
    .await;
    let url = result(&reply)["upload_url"]
        .as_str()
        .expect("url")
        .to_string();
    let media = result(&reply)["media"].as_str().expect("id").to_string();
    assert_eq!(put(&url, voice.clone()).await.0, 201);
    let id = assert_sent(&send_media(&mut alice, "alice", "bob", "audio", &media).await);
    bob.next_where("user/bob/inbox", "id", &json!(id)).await;
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &meta);

    // An upload as before metadata existed: none of the fields come back.
    let plain = content(62, 1000);
    let media = upload_verified(&f, &mut alice, "alice", "image/png", &plain).await;
    share(&mut alice, "alice", &mut bob, "bob", &media).await;
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_metadata_is_refused_naming_the_field() {
    let f = Fixture::start(Kind::Fs, "", "");
    let mut alice = online(&f.server, "alice", "alice").await;
    let photo = content(63, 500);
    let cases = [
        (json!({"name": ""}), "`name` must be 1 to 255 bytes"),
        (
            json!({"name": "é".repeat(128)}),
            "`name` must be 1 to 255 bytes",
        ),
        (
            json!({"name": "a\u{0}b.png"}),
            "`name` must not contain control characters",
        ),
        (
            json!({"name": "tab\there.png"}),
            "`name` must not contain control characters",
        ),
        (
            json!({"name": "../etc/passwd"}),
            "`name` must be a file name without a path",
        ),
        (
            json!({"name": "C:\\x.png"}),
            "`name` must be a file name without a path",
        ),
        (json!({"name": 7}), "`name` must be a string"),
        (json!({"width": 640}), "`width` and `height` go together"),
        (json!({"height": 480}), "`width` and `height` go together"),
        (
            json!({"width": 0, "height": 480}),
            "`width` must be 1 to 100000 pixels, not 0",
        ),
        (
            json!({"width": 640, "height": 100_001}),
            "`height` must be 1 to 100000 pixels",
        ),
        (
            json!({"width": 640.5, "height": 480}),
            "`width` must be a whole number",
        ),
        (
            json!({"width": "640", "height": 480}),
            "`width` must be a whole number",
        ),
        (json!({"duration": -1}), "`duration` must be a whole number"),
        (
            json!({"duration": 86_400_001}),
            "`duration` must be 0 to 86400000 milliseconds",
        ),
        (
            json!({"preview": "https://example.org/p.png"}),
            "`preview` must be a data URL",
        ),
        (
            json!({"preview": "data:image/svg+xml;base64,PHN2Zz4="}),
            "`preview` must be a data URL",
        ),
        (
            json!({"preview": "data:image/png;base64,iVBOR*w0K"}),
            "`preview` is not valid base64",
        ),
        // JPEG bytes labelled PNG.
        (
            json!({"preview": "data:image/png;base64,/9j/4AAQ"}),
            "`preview` does not hold the image",
        ),
        (
            json!({"preview": png_preview(16_386)}),
            "`preview` must be at most 16384 bytes",
        ),
        (json!({"thumbnail": "x"}), "unknown field `thumbnail`"),
    ];
    for (meta, needle) in cases {
        let reply = upload_with(&mut alice, "alice", &photo, &meta).await;
        assert_refused(&reply, "bad_request", needle);
    }
    // None of them left a media id behind: the first good request gets a new one, pending.
    let reply = upload_with(&mut alice, "alice", &photo, &json!({"name": "ok.png"})).await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");

    // The largest request fits: every field at its longest, a preview of 16384 bytes less two.
    let meta = json!({
        "name": "n".repeat(255),
        "width": 100_000,
        "height": 100_000,
        "duration": 86_400_000,
        "preview": png_preview(16_382),
    });
    let media = upload_verified_with(&f, &mut alice, "alice", &photo, &meta).await;
    let mut bob = online(&f.server, "bob", "bob").await;
    share(&mut alice, "alice", &mut bob, "bob", &media).await;
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_sets_what_the_media_id_carries() {
    let f = Fixture::start(Kind::Fs, "", "");
    let s = &f.server;
    let mut alice = online(s, "alice", "alice").await;
    let mut bob = online(s, "bob", "bob").await;
    let mut carol = online(s, "carol", "carol").await;
    let photo = content(64, 2500);
    let first = json!({"name": "first.png", "width": 10, "height": 20});
    let media = upload_verified_with(&f, &mut alice, "alice", &photo, &first).await;
    share(&mut alice, "alice", &mut bob, "bob", &media).await;

    // Alice has it already: `exists`, the same id, and the metadata of this request, whole.
    let second = json!({"name": "second.png", "preview": png_preview(38)});
    let reply = upload_with(&mut alice, "alice", &photo, &second).await;
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    assert_eq!(result(&reply)["media"], media.as_str(), "{reply}");
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &second);
    // A request without metadata (a client that knows none) leaves it as it is.
    let reply = upload_with(&mut alice, "alice", &photo, &json!({})).await;
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    let (_, r) = download_url(&mut alice, "alice", &media).await;
    assert_meta(&r, &second);

    // Bob received it: his own id, `exists`, with the metadata he gives; alice's id keeps hers.
    let bobs_meta = json!({"name": "forwarded.png", "duration": 5});
    let reply = upload_with(&mut bob, "bob", &photo, &bobs_meta).await;
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    let bobs = result(&reply)["media"].as_str().expect("id").to_string();
    assert_ne!(bobs, media);
    share(&mut bob, "bob", &mut carol, "carol", &bobs).await;
    let (_, r) = download_url(&mut carol, "carol", &bobs).await;
    assert_meta(&r, &bobs_meta);
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &second);

    // Carol got it from bob: asking with metadata of her own, then again with other metadata,
    // gives her own id (`exists` both times) carrying what she asked with last.
    let reply = upload_with(&mut carol, "carol", &photo, &json!({"name": "c.png"})).await;
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    let carols = result(&reply)["media"].as_str().expect("id").to_string();
    let reply = upload_with(&mut carol, "carol", &photo, &json!({"name": "c2.png"})).await;
    assert_eq!(result(&reply)["exists"], true, "{reply}");
    assert_eq!(result(&reply)["media"], carols.as_str(), "{reply}");
    share(&mut carol, "carol", &mut alice, "alice", &carols).await;
    let (_, r) = download_url(&mut alice, "alice", &carols).await;
    assert_meta(&r, &json!({"name": "c2.png"}));

    // Dave has the bytes too but never got them: an id of his own, pending, whose metadata he
    // corrects by asking again before he uploads (his bytes are checked, then dropped in
    // favour of the stored copy).
    let mut dave = online(s, "dave", "dave").await;
    let reply = upload_with(&mut dave, "dave", &photo, &json!({"name": "draft.png"})).await;
    assert_eq!(result(&reply)["exists"], false, "{reply}");
    let daves = result(&reply)["media"].as_str().expect("id").to_string();
    let fixed = json!({"name": "final.png", "width": 1, "height": 1});
    let again = upload_verified_with(&f, &mut dave, "dave", &photo, &fixed).await;
    assert_eq!(again, daves);
    share(&mut dave, "dave", &mut alice, "alice", &daves).await;
    let (_, r) = download_url(&mut alice, "alice", &daves).await;
    assert_meta(&r, &fixed);
    // Nobody's metadata changed anyone else's.
    let (_, r) = download_url(&mut alice, "alice", &media).await;
    assert_meta(&r, &second);
    let (_, r) = download_url(&mut carol, "carol", &bobs).await;
    assert_meta(&r, &bobs_meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_declared_during_the_upload_is_kept() {
    let f = Fixture::start(Kind::Fs, "", "");
    let mut alice = online(&f.server, "alice", "alice").await;
    let mut bob = online(&f.server, "bob", "bob").await;
    let photo = content(68, 3000);
    let reply = upload_with(&mut alice, "alice", &photo, &json!({"name": "before.png"})).await;
    let media = result(&reply)["media"].as_str().expect("id").to_string();
    let url = result(&reply)["upload_url"]
        .as_str()
        .expect("url")
        .to_string();

    // The PUT starts: its head and half the bytes. Once chatd has the upload's temporary file,
    // it has read the media record the upload will verify.
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .expect("an http URL");
    let mut put = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "PUT /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        photo.len()
    );
    put.write_all(head.as_bytes()).await.expect("head");
    put.write_all(&photo[..1500]).await.expect("first half");
    let deadline = Instant::now() + WAIT;
    while f.fs_leftovers().is_empty() {
        assert!(Instant::now() < deadline, "the upload did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile the same device (or another) declares other metadata: that is what counts.
    let after = json!({"name": "after.png", "width": 3, "height": 4});
    let reply = upload_with(&mut alice, "alice", &photo, &after).await;
    assert_eq!(result(&reply)["media"], media.as_str(), "{reply}");
    put.write_all(&photo[1500..]).await.expect("second half");
    let mut answer = String::new();
    put.read_to_string(&mut answer).await.expect("PUT answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    share(&mut alice, "alice", &mut bob, "bob", &media).await;
    let (_, r) = download_url(&mut bob, "bob", &media).await;
    assert_meta(&r, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_survives_a_restart() {
    let mut f = Fixture::start(Kind::Fs, "", "");
    let photo = content(66, 1200);
    let meta = json!({
        "name": "kept.png",
        "width": 800,
        "height": 600,
        "preview": png_preview(4006),
    });
    let plain = content(67, 1300);
    let (with_meta, without) = {
        let mut alice = online(&f.server, "alice", "alice").await;
        let mut bob = online(&f.server, "bob", "bob").await;
        let with_meta = upload_verified_with(&f, &mut alice, "alice", &photo, &meta).await;
        share(&mut alice, "alice", &mut bob, "bob", &with_meta).await;
        let without = upload_verified(&f, &mut alice, "alice", "image/png", &plain).await;
        share(&mut alice, "alice", &mut bob, "bob", &without).await;
        alice.disconnect().await;
        bob.disconnect().await;
        (with_meta, without)
    };
    f.server.stop();
    f.server.restart();
    let mut bob = online(&f.server, "bob", "bob").await;
    let (url, r) = download_url(&mut bob, "bob", &with_meta).await;
    assert_meta(&r, &meta);
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body == photo, "other bytes after the restart");
    let (_, r) = download_url(&mut bob, "bob", &without).await;
    assert_meta(&r, &json!({}));
}
