//! Failing storage fails safe: while the store's writes or flushes fail, nothing is
//! acknowledged as sent (every send gets an `unavailable` error ack, receipts and group
//! changes too), `/healthz` answers 503 and `/metrics` says so, one line is logged per
//! outage; once the disk works again the node recovers by itself, without a restart, and
//! nothing that was acknowledged is lost.
//!
//! Two ways to make the storage fail: the fault-injection test hook (`CHATD_TEST_FAULTS`, a
//! control file read by a wrapper around the engine, `chatd_kv::FaultyStore`), and a real
//! full disk (the data directory on a small tmpfs, filled up by a file).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::{json, Value};
use support::*;

/// Per-user write rates far above what these tests send.
const NO_USER_RATES: &str = "[limits]\nsends_per_sec = 100000\nsends_burst = 1000000\nrequests_per_sec = 100000\nrequests_burst = 1000000\n";

/// How long a recovery may take once the disk works again (probes run every second).
const RECOVERY: Duration = Duration::from_secs(15);

/// `/healthz`: status and JSON body.
fn healthz(s: &Server) -> (u16, Value) {
    let (status, body) = http_get(s.http, "/healthz");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz {body}: {e}"));
    (status, v)
}

/// Waits until `/healthz` answers `status`; panics with the log after [`RECOVERY`].
fn wait_health(s: &Server, status: u16) -> Value {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let (got, body) = healthz(s);
        if got == status {
            return body;
        }
        if Instant::now() > deadline {
            panic!(
                "/healthz is still {got} {body}, expected {status}; log:\n{}",
                s.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What alice was told about each cid: the final answer, and every message id a success ack
/// named.
#[derive(Default)]
struct Acks {
    /// cid → message id of its success ack.
    sent: BTreeMap<String, String>,
}

impl Acks {
    /// Records `ack` (for `cid`): a success must name a message id, and a repeated cid must
    /// keep its first id.
    fn record(&mut self, cid: &str, ack: &Value) {
        assert_eq!(ack["status"], "sent", "{cid}: {ack}");
        let id = ack["id"]
            .as_str()
            .expect("a success ack has an id")
            .to_string();
        if let Some(first) = self.sent.insert(cid.to_string(), id.clone()) {
            assert_eq!(first, id, "{cid} was acknowledged with two ids");
        }
    }

    fn ids(&self) -> BTreeSet<String> {
        self.sent.values().cloned().collect()
    }
}

/// Asserts that `ack` refuses `cid` because the storage is failing (never a success).
fn assert_unavailable(cid: &str, ack: &Value) {
    assert!(ack.get("status").is_none(), "{cid} acknowledged: {ack}");
    assert_eq!(ack["cid"], cid, "{ack}");
    assert_eq!(ack["error"]["code"], "unavailable", "{cid}: {ack}");
}

/// Every 1:1 message bob's inbox gets within `quiet` of the previous one, acknowledged
/// (PUBACK by the client library): their ids. Group events (the test creates a group) are
/// left out.
async fn drain_inbox(bob: &mut Client, quiet: Duration) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    while let Ok(p) = bob.next_publish_within("user/bob/inbox", quiet).await {
        let v: Value = serde_json::from_slice(&p.payload).expect("inbox JSON");
        if v.get("group").is_none() {
            ids.insert(v["id"].as_str().expect("id").to_string());
        }
    }
    ids
}

/// The ids of the alice–bob conversation's history, read by alice.
async fn history_ids(alice: &mut Client) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = json!({"op": "history", "with": "bob", "limit": 100});
        if let Some(b) = &before {
            req["before"] = json!(b);
        }
        let page = rpc_ok(alice, "alice", req).await;
        let messages = page["messages"].as_array().expect("messages").clone();
        for m in &messages {
            ids.insert(m["id"].as_str().expect("id").to_string());
        }
        if page["more"] != true || messages.is_empty() {
            return ids;
        }
        before = messages[0]["id"].as_str().map(str::to_string);
    }
}

/// Connects alice (acks, rpc replies) and bob (inbox, his acks) to `s`.
async fn connect_pair(s: &Server) -> (Client, Client) {
    let alice = connect(s.mqtt, "alice", "alice", "alice-pw").await;
    alice.subscribe("user/alice/ack", QoS::AtLeastOnce).await;
    alice.subscribe("user/alice/rpc", QoS::AtLeastOnce).await;
    alice
        .subscribe("user/alice/receipt", QoS::AtLeastOnce)
        .await;
    let bob = connect(s.mqtt, "bob", "bob", "bob-pw").await;
    bob.subscribe("user/bob/inbox", QoS::AtLeastOnce).await;
    bob.subscribe("user/bob/ack", QoS::AtLeastOnce).await;
    (alice, bob)
}

/// Lines of the server's log that announce an outage.
fn outage_lines(s: &Server) -> usize {
    s.log().matches("storage failing (").count()
}

/// The checks of the end: after a restart, bob's queue delivers what he had not got yet, and
/// what bob got overall and the conversation's history are exactly the acknowledged messages.
async fn check_after_restart(
    s: &mut Server,
    acks: &Acks,
    mut delivered: BTreeSet<String>,
    alice: Client,
    bob: Client,
) {
    alice.disconnect().await;
    bob.disconnect().await;
    s.stop();
    s.restart();
    let (mut alice, mut bob) = connect_pair(s).await;
    delivered.extend(drain_inbox(&mut bob, Duration::from_secs(2)).await);
    assert_eq!(
        delivered,
        acks.ids(),
        "bob must get every acknowledged message and nothing else"
    );
    assert_eq!(
        history_ids(&mut alice).await,
        acks.ids(),
        "history holds exactly the acknowledged messages"
    );
}

/// With the test hook: writes fail (nothing reaches the engine), then only flushes fail (the
/// engine got a batch that was never flushed); each time every send, receipt and group change
/// is refused `unavailable`, `/healthz` is 503, and the node recovers once the faults stop.
/// Every cid refused is then sent again: its answer is a success ack — the first one's, with
/// its id, when the refused batch reached the disk after all — and bob gets exactly the
/// acknowledged messages.
#[tokio::test]
async fn injected_faults_stop_acks_and_the_node_recovers() {
    let mut s = Server::try_start_custom_env(
        |dir| format!("{}\n{NO_USER_RATES}", base_config(dir, "")),
        |dir| vec![("CHATD_TEST_FAULTS".to_string(), dir.join("faults"))],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let control = s.dir.path().join("faults");
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let (mut alice, mut bob) = connect_pair(&s).await;
    let mut acks = Acks::default();
    let mut refused = Vec::new();

    for cid in ["c1", "c2", "c3"] {
        let ack = alice.send("alice", "bob", cid, cid).await;
        acks.record(cid, &ack);
    }
    let mut delivered = BTreeSet::new();
    for _ in 0..3 {
        let m = bob.next_on("user/bob/inbox").await;
        delivered.insert(m["id"].as_str().expect("id").to_string());
    }
    let (status, body) = healthz(&s);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["storage"]["ok"], true, "{body}");
    assert_eq!(s.metric("chatd_storage_healthy"), Some(1.0));
    assert_eq!(s.metric("chatd_storage_failures_total"), Some(0.0));
    let first = acks.sent["c1"].clone();

    for (round, fault) in ["eio", "flush enospc"].into_iter().enumerate() {
        std::fs::write(&control, fault).expect("turn faults on");
        for i in 0..5 {
            let cid = format!("f{round}-{i}");
            let ack = alice.send("alice", "bob", &cid, &cid).await;
            assert_unavailable(&cid, &ack);
            refused.push(cid);
        }
        let body = wait_health(&s, 503);
        assert_eq!(body["status"], "failing", "{body}");
        assert_eq!(body["storage"]["ok"], false, "{body}");
        assert!(
            body["storage"]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        assert_eq!(s.metric("chatd_storage_healthy"), Some(0.0));
        assert_eq!(
            s.metric("chatd_storage_failures_total"),
            Some(round as f64 + 1.0)
        );
        // Receipts and group changes go through the same writer: refused, not hung.
        bob.publish_json(
            "chat/bob/receipt",
            &json!({"ids": [first], "status": "read"}),
        )
        .await;
        let refusal = bob.next_on("user/bob/ack").await;
        assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
        assert_eq!(refusal["receipt"], json!([first]), "{refusal}");
        let reply = alice
            .rpc(
                "alice",
                json!({"rid": format!("g{round}"), "op": "group.create", "name": "g", "members": ["bob"]}),
            )
            .await;
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
        // Still failing a second later (the probes fail too), and still nothing acknowledged.
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(healthz(&s).0, 503);
        let cid = format!("late{round}");
        let ack = alice.send("alice", "bob", &cid, &cid).await;
        assert_unavailable(&cid, &ack);
        refused.push(cid);
        assert_eq!(
            outage_lines(&s),
            round + 1,
            "one log line per outage, not per message"
        );

        std::fs::write(&control, "").expect("turn faults off");
        let body = wait_health(&s, 200);
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(s.metric("chatd_storage_healthy"), Some(1.0));
        assert_eq!(
            s.metric("chatd_storage_recoveries_total"),
            Some(round as f64 + 1.0)
        );
        // Sends work again, without a restart, and are delivered live.
        let cid = format!("after{round}");
        let ack = alice.send("alice", "bob", &cid, &cid).await;
        acks.record(&cid, &ack);
        let m = bob.next_on("user/bob/inbox").await;
        assert_eq!(m["id"].as_str(), Some(acks.sent[&cid].as_str()), "{m}");
        delivered.insert(acks.sent[&cid].clone());
    }
    // Receipts and group changes work again too.
    bob.publish_json(
        "chat/bob/receipt",
        &json!({"ids": [first], "status": "read"}),
    )
    .await;
    let receipt = alice.next_on("user/alice/receipt").await;
    assert_eq!(receipt["id"].as_str(), Some(first.as_str()), "{receipt}");
    rpc_ok(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "g", "members": ["bob"]}),
    )
    .await;

    // What a client does with an `unavailable` ack: send the same cid again. Each gets a
    // success ack now: a new message, or the first ack when the refused batch was stored.
    for cid in &refused {
        let ack = alice.send("alice", "bob", cid, cid).await;
        acks.record(cid, &ack);
    }
    // Messages stored by these retries arrive live; one stored by a batch whose flush failed
    // (and that reached the disk after all) waits in bob's queue for his next connection.
    delivered.extend(drain_inbox(&mut bob, Duration::from_secs(1)).await);
    assert!(delivered.is_subset(&acks.ids()), "{delivered:?}");

    check_after_restart(&mut s, &acks, delivered, alice, bob).await;
}

/// A tmpfs mounted on a directory for the length of a test; unmounted (and the directory
/// removed) when dropped, after the server that used it (declare it first).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `24m`) on `dir` (created); `Err` says why not.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
        // A server's temporary directory stopped removing itself at the mount point: what is
        // left of it goes here.
        if let Some(parent) = self.0.parent() {
            let named = parent.file_name().and_then(|n| n.to_str());
            if named.is_some_and(|n| n.starts_with("chatd-test-")) {
                let _ = std::fs::remove_dir_all(parent);
            }
        }
    }
}

/// Whether this machine lets the tests mount a tmpfs (root, or CAP_SYS_ADMIN); `Err` says why
/// not. CI containers usually do not.
fn can_mount() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    Tmpfs::mount(&dir.path().join("probe"), "1m").map(drop)
}

/// Writes a file into `dir` until the disk is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    path
}

/// `len` letters that do not compress, different for each `seed`.
fn noise(seed: &str, len: usize) -> String {
    let mut x = seed.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// ENOSPC on Linux (the only platform with tmpfs).
fn libc_enospc() -> i32 {
    28
}

/// A real full disk, on `engine`: the data directory is a small tmpfs; once a file takes all
/// its space the store's writes fail with ENOSPC, every send is refused `unavailable` and
/// `/healthz` is 503; once the file is deleted the node recovers by itself and everything
/// acknowledged is there after a restart.
async fn full_disk(engine: &str) {
    if let Err(why) = can_mount() {
        println!(
            "SKIPPED full_disk({engine}): this test needs to mount a tmpfs (root or \
             CAP_SYS_ADMIN) and cannot here: {why}"
        );
        return;
    }
    let mut mounted = None;
    let mut s = Server::try_start_custom(|dir| {
        mounted = Some(Tmpfs::mount(&dir.join("data"), "24m").expect("mount the data tmpfs"));
        // base_config ends in its [storage] table.
        format!(
            "{}engine = \"{engine}\"\n\n{NO_USER_RATES}",
            base_config(dir, "")
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let _mounted = mounted;
    s.add_user("alice", "alice-pw");
    s.add_user("bob", "bob-pw");
    let (mut alice, mut bob) = connect_pair(&s).await;
    let mut acks = Acks::default();
    let mut delivered = BTreeSet::new();
    // Texts larger than a page and incompressible (fjall compresses large journal values),
    // so that no send fits in the slack of a page the store had started before the disk
    // filled up.
    let text = |cid: &str| format!("{cid} {}", noise(cid, 12 * 1024));

    for i in 0..5 {
        let cid = format!("c{i}");
        let ack = alice.send("alice", "bob", &cid, &text(&cid)).await;
        acks.record(&cid, &ack);
        let m = bob.next_on("user/bob/inbox").await;
        delivered.insert(m["id"].as_str().expect("id").to_string());
    }
    assert_eq!(healthz(&s).0, 200);

    let filler = fill(&s.data_dir());
    let mut refused = Vec::new();
    for i in 0..5 {
        let cid = format!("full{i}");
        let ack = alice.send("alice", "bob", &cid, &text(&cid)).await;
        assert_unavailable(&cid, &ack);
        refused.push(cid);
    }
    let body = wait_health(&s, 503);
    assert_eq!(body["storage"]["ok"], false, "{body}");
    let detail = body["storage"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("No space left on device") || detail.contains("os error 28"),
        "the reason names the full disk: {body}"
    );
    assert_eq!(s.metric("chatd_storage_healthy"), Some(0.0));
    assert_eq!(s.metric("chatd_storage_failures_total"), Some(1.0));
    // Still full a few probes later: still failing, still nothing acknowledged.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(healthz(&s).0, 503);
    let ack = alice.send("alice", "bob", "late", &text("late")).await;
    assert_unavailable("late", &ack);
    refused.push("late".to_string());
    assert_eq!(outage_lines(&s), 1, "one log line for the outage");

    std::fs::remove_file(&filler).expect("free the space");
    let body = wait_health(&s, 200);
    assert_eq!(body["storage"]["ok"], true, "{body}");
    assert_eq!(s.metric("chatd_storage_recoveries_total"), Some(1.0));
    let ack = alice.send("alice", "bob", "after", &text("after")).await;
    acks.record("after", &ack);
    let m = bob.next_on("user/bob/inbox").await;
    assert_eq!(m["id"].as_str(), Some(acks.sent["after"].as_str()), "{m}");
    delivered.insert(acks.sent["after"].clone());
    for cid in &refused {
        let ack = alice.send("alice", "bob", cid, &text(cid)).await;
        acks.record(cid, &ack);
    }
    delivered.extend(drain_inbox(&mut bob, Duration::from_secs(1)).await);
    assert!(delivered.is_subset(&acks.ids()), "{delivered:?}");

    check_after_restart(&mut s, &acks, delivered, alice, bob).await;
    drop(s);
}

#[tokio::test]
async fn a_full_disk_stops_acks_and_the_node_recovers_on_fjall() {
    full_disk("fjall").await;
}

#[tokio::test]
async fn a_full_disk_stops_acks_and_the_node_recovers_on_sled() {
    full_disk("sled").await;
}
