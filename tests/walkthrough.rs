//! The README's "Try it by hand" walkthrough, run with the real `mosquitto_pub` and
//! `mosquitto_sub` (Debian package mosquitto-clients), over MQTT 3.1.1 and 5.0.
//!
//! The commands are the ones in the README's "Try it by hand" section, with the port of the test server
//! instead of 1883. The only addition is `-d` on the subscribers whose messages are not queued
//! (acks, rpc replies): its "received SUBACK" line tells the test when to publish. The media
//! part runs `stat`, `sha256sum`, `curl` and `cmp` as the README does, with the upload and
//! download URLs taken from the replies.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A `mosquitto_sub` running in the background; its stdout lines are collected as they come.
struct Sub {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sub {
    fn spawn(args: &[String]) -> Sub {
        // Line-buffered stdout: on a pipe, mosquitto_sub would hold its lines until it exits.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("mosquitto_sub")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run mosquitto_sub ({e}): apt-get install mosquitto-clients")
            });
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(l) => lines.lock().unwrap().push(l),
                        Err(_) => break,
                    }
                }
            });
        }
        Sub {
            name: format!("mosquitto_sub {}", args.join(" ")),
            child,
            lines,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a line satisfying `pred` and returns it.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The process is gone; give the reader threads a moment to deliver its last lines.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                    return l.clone();
                }
                panic!(
                    "{} exited ({status}) without {what}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} printed no {what} within {WAIT:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_subscribed(&mut self) {
        self.wait_line("SUBACK", |l| l.contains("received SUBACK"));
    }

    /// Waits for the process to exit by itself (`-C`); panics unless it succeeds.
    fn wait_exit(&mut self) {
        let deadline = Instant::now() + WAIT + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "{} exited with {status}; output:\n{}",
                    self.name,
                    self.output()
                );
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not exit; output:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(s: &str) -> Vec<String> {
    // Splits on spaces, keeping '…' quoted parts together (the quotes are removed).
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn mosquitto_pub(cmd: &str) -> Output {
    let out = Command::new("mosquitto_pub")
        .args(args(cmd))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mosquitto_pub ({e}): apt-get install mosquitto-clients")
        });
    assert!(
        out.status.success(),
        "mosquitto_pub {cmd} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `program args` in `dir`; panics unless it succeeds; its stdout.
fn run(dir: &std::path::Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e})"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_ok(s: &Server, cmd: &[&str], expect_stdout: &str) {
    let out = s.cli(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chatd {cmd:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(expect_stdout),
        "chatd {cmd:?} printed {stdout:?}, expected {expect_stdout:?}"
    );
}

/// The JSON after `topic ` in a `-v` line.
fn payload_of(line: &str, topic: &str) -> Value {
    let json = line
        .strip_prefix(&format!("{topic} "))
        .unwrap_or_else(|| panic!("{line:?} is not a message on {topic}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json:?}: {e}"))
}

fn run_walkthrough(version: &str) {
    let s = Server::start();
    let port = s.mqtt.port();
    let v = format!("-V {version} -h 127.0.0.1 -p {port}");

    // Accounts through the CLI while the server runs (admin API underneath).
    cli_ok(
        &s,
        &["user", "add", "alice", "--password", "alice-pw"],
        "added alice",
    );
    cli_ok(
        &s,
        &["user", "add", "bob", "--password", "bob-pw"],
        "added bob",
    );
    let out = s.cli(&["user", "list"]);
    assert!(out.status.success(), "user list: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "alice\nbob");

    // Alice watches her acks (-d only to see the SUBACK), bob listens to his inbox.
    let mut acks = Sub::spawn(&args(&format!(
        "{v} -i alice:laptop -u alice -P alice-pw -q 1 -t user/alice/ack -C 1 -W 30 -v -d"
    )));
    acks.wait_subscribed();
    let mut inbox = Sub::spawn(&args(&format!(
        "{v} -i bob -u bob -P bob-pw -q 1 -t user/bob/inbox -C 1 -W 30"
    )));
    // No need to wait for bob's SUBACK: a message that arrives first waits in his queue.
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/send -m '{{\"cid\":\"c1\",\"to\":\"bob\",\"type\":\"text\",\"text\":\"hi\"}}'"
    ));

    let line = inbox.wait_line("message", |l| l.starts_with('{'));
    inbox.wait_exit();
    let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(msg["from"], "alice", "{msg}");
    assert_eq!(msg["to"], "bob", "{msg}");
    assert_eq!(msg["type"], "text", "{msg}");
    assert_eq!(msg["text"], "hi", "{msg}");
    assert!(msg["id"].is_string() && msg["ts"].is_i64(), "{msg}");

    let line = acks.wait_line("ack", |l| l.starts_with("user/alice/ack "));
    acks.wait_exit();
    let ack = payload_of(&line, "user/alice/ack");
    assert_eq!(ack["cid"], "c1", "{ack}");
    assert_eq!(ack["status"], "sent", "{ack}");
    assert_eq!(ack["id"], msg["id"], "ack {ack} vs message {msg}");

    // Bob is offline now: the next message waits for him.
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/send -m '{{\"cid\":\"c2\",\"to\":\"bob\",\"type\":\"text\",\"text\":\"still there?\"}}'"
    ));
    let mut inbox = Sub::spawn(&args(&format!(
        "{v} -i bob -u bob -P bob-pw -q 1 -t user/bob/inbox -C 1 -W 30 -v"
    )));
    let line = inbox.wait_line("queued message", |l| l.starts_with("user/bob/inbox "));
    inbox.wait_exit();
    let queued = payload_of(&line, "user/bob/inbox");
    assert_eq!(queued["text"], "still there?", "{queued}");
    assert!(
        queued["id"].as_str() > msg["id"].as_str(),
        "{queued} vs {msg}"
    );

    // Bob's phone keeps a persistent session: subscribed once (-E leaves after the SUBACK),
    // it gets what alice sent while it was away as soon as it connects again.
    let out = Command::new("mosquitto_sub")
        .args(args(&format!(
            "{v} -i bob:phone -c -u bob -P bob-pw -q 1 -t user/bob/inbox -E"
        )))
        .output()
        .expect("mosquitto_sub");
    assert!(out.status.success(), "mosquitto_sub -c -E: {out:?}");
    assert_eq!(
        s.metric("chatd_kept_sessions"),
        Some(1.0),
        "bob:phone's session"
    );
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/send -m '{{\"cid\":\"c3\",\"to\":\"bob\",\"type\":\"text\",\"text\":\"on your phone?\"}}'"
    ));
    let mut phone = Sub::spawn(&args(&format!(
        "{v} -i bob:phone -c -u bob -P bob-pw -q 1 -t user/bob/inbox -C 1 -W 30 -v"
    )));
    let line = phone.wait_line("message for the phone", |l| {
        l.starts_with("user/bob/inbox ")
    });
    phone.wait_exit();
    let away = payload_of(&line, "user/bob/inbox");
    assert_eq!(away["text"], "on your phone?", "{away}");

    // Alice reads the conversation back.
    let mut rpc = Sub::spawn(&args(&format!(
        "{v} -i alice:rpc -u alice -P alice-pw -q 1 -t user/alice/rpc -C 1 -W 30 -v -d"
    )));
    rpc.wait_subscribed();
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/rpc -m '{{\"rid\":\"r-1\",\"op\":\"history\",\"with\":\"bob\",\"limit\":20}}'"
    ));
    let line = rpc.wait_line("rpc reply", |l| l.starts_with("user/alice/rpc "));
    rpc.wait_exit();
    let reply = payload_of(&line, "user/alice/rpc");
    assert_eq!(reply["rid"], "r-1", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    let texts: Vec<&str> = reply["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec!["hi", "still there?", "on your phone?"],
        "{reply}"
    );

    // Alice shares a photo: upload URL over MQTT, the bytes with curl, then the message; bob
    // gets a download URL and fetches the same bytes. (The README builds the JSON in the shell
    // from $SIZE and $SHA; here the values are put in directly.)
    let dir = s.dir.path();
    std::fs::write(dir.join("photo.jpg"), "not really a jpeg").expect("write photo.jpg");
    let size = run(dir, "stat", &["-c", "%s", "photo.jpg"])
        .trim()
        .to_string();
    let sha = run(dir, "sha256sum", &["photo.jpg"])
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string();
    let mut rpc = Sub::spawn(&args(&format!(
        "{v} -i alice:rpc -u alice -P alice-pw -q 1 -t user/alice/rpc -C 1 -W 30 -v -d"
    )));
    rpc.wait_subscribed();
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/rpc -m '{{\"rid\":\"r-2\",\"op\":\"media.upload\",\"mime\":\"image/jpeg\",\"size\":{size},\"sha256\":\"{sha}\"}}'"
    ));
    let line = rpc.wait_line("rpc reply", |l| l.starts_with("user/alice/rpc "));
    rpc.wait_exit();
    let reply = payload_of(&line, "user/alice/rpc");
    assert_eq!(reply["rid"], "r-2", "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["exists"], false, "{reply}");
    let media = reply["result"]["media"]
        .as_str()
        .expect("media id")
        .to_string();
    let upload_url = reply["result"]["upload_url"].as_str().expect("upload_url");
    assert!(
        upload_url.starts_with(&format!("http://{}/media/{media}?expires=", s.http)),
        "{reply}"
    );
    let done: Value =
        serde_json::from_str(&run(dir, "curl", &["-sS", "-T", "photo.jpg", upload_url]))
            .expect("curl upload prints JSON");
    assert_eq!(done["media"], media.as_str(), "{done}");
    assert_eq!(done["size"].to_string(), size, "{done}");
    mosquitto_pub(&format!(
        "{v} -i alice -u alice -P alice-pw -q 1 -t chat/alice/send -m '{{\"cid\":\"c4\",\"to\":\"bob\",\"type\":\"image\",\"media\":\"{media}\",\"text\":\"look\"}}'"
    ));
    let mut rpc = Sub::spawn(&args(&format!(
        "{v} -i bob:rpc -u bob -P bob-pw -q 1 -t user/bob/rpc -C 1 -W 30 -v -d"
    )));
    rpc.wait_subscribed();
    mosquitto_pub(&format!(
        "{v} -i bob -u bob -P bob-pw -q 1 -t chat/bob/rpc -m '{{\"rid\":\"r-3\",\"op\":\"media.download\",\"media\":\"{media}\"}}'"
    ));
    let line = rpc.wait_line("rpc reply", |l| l.starts_with("user/bob/rpc "));
    rpc.wait_exit();
    let reply = payload_of(&line, "user/bob/rpc");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["mime"], "image/jpeg", "{reply}");
    let url = reply["result"]["url"].as_str().expect("url");
    run(dir, "curl", &["-sS", "-o", "photo-copy.jpg", url]);
    run(dir, "cmp", &["photo.jpg", "photo-copy.jpg"]);

    // What the README says is refused: another user's inbox, and everything.
    let out = Command::new("mosquitto_sub")
        .args(args(&format!(
            "{v} -i alice:snoop -u alice -P alice-pw -q 1 -t user/bob/# -C 1 -W 5"
        )))
        .output()
        .expect("mosquitto_sub");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("denied") && out.stdout.is_empty(),
        "subscribing to user/bob/# as alice was not denied: {out:?}"
    );
}

#[test]
fn walkthrough_mqtt311() {
    run_walkthrough("mqttv311");
}

#[test]
fn walkthrough_mqtt5() {
    run_walkthrough("mqttv5");
}
