//! A process killed with SIGKILL after a flush: every flushed batch is on disk, whole, also when
//! it spans several record kinds (which an engine may keep apart, as fjall's keyspaces) and
//! removes a key with [`Op::DeleteOnce`](crate::Op::DeleteOnce).
//!
//! The check runs the test binary again as a child that only runs the `crash_child` test
//! ([`conformance_tests!`](crate::conformance_tests) generates both), which writes batches
//! and reports each one it flushed; the parent kills it mid-stream and opens the store. A kill
//! loses no page cache, so this checks the engine's own recovery (torn logs, half-applied
//! batches), not the disk's.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{keys, put, reopen, scratch, Opener};
use crate::{Op, StoreError};

/// Set (to the store's directory) only in the child process.
const CHILD_DIR: &str = "CHATD_KV_CONFORMANCE_CRASH_DIR";

/// How many flushed batches the parent waits for before it kills the child.
const FLUSHED_BEFORE_KILL: u64 = 200;

/// The child stops by itself after this long, in case its parent is gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The libtest name of the test `test` in the module `module_path` (what `module_path!()`
/// gives there): the path without the crate's name.
pub fn test_path(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{test}"),
        None => test.to_string(),
    }
}

/// The keys of batch `i` of the child, besides `c/last`.
fn batch_keys(i: u64) -> [Vec<u8>; 2] {
    [
        format!("c/{i:08}/a").into_bytes(),
        format!("c/{i:08}/b").into_bytes(),
    ]
}

/// The keys of other record kinds that batch `i` of the child writes: a message, kept, and a
/// queue entry, which batch `i + 1` removes with [`Op::DeleteOnce`].
fn kind_keys(i: u64) -> [Vec<u8>; 2] {
    [
        format!("m/c{i:08}").into_bytes(),
        format!("q/c/{i:08}").into_bytes(),
    ]
}

/// The child: applies batches (two new keys, an overwrite of `c/last`, a message and a queue
/// entry, and the removal of the previous batch's queue entry), flushes each one and prints
/// `flushed {i}` after the flush returned. Does nothing unless run by
/// [`flushed_batches_survive_sigkill`].
pub fn crash_child(open: Opener) -> Result<(), StoreError> {
    let Some(path) = std::env::var_os(CHILD_DIR) else {
        return Ok(());
    };
    let store = open(Path::new(&path))?;
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut out = std::io::stdout().lock();
    let mut i = 0u64;
    while Instant::now() < deadline {
        let [a, b] = batch_keys(i);
        let [message, queued] = kind_keys(i);
        let value = i.to_string().into_bytes();
        let mut batch = vec![
            put(&a, &value),
            put(&message, &value),
            put(b"c/last", &value),
            put(&queued, &value),
            put(&b, &value),
        ];
        if let Some(previous) = i.checked_sub(1) {
            let [_, dequeued] = kind_keys(previous);
            batch.push(Op::DeleteOnce(dequeued));
        }
        store.apply(batch)?;
        store.flush()?;
        // A closed pipe (the parent is gone) ends the child.
        writeln!(out, "flushed {i}")?;
        out.flush()?;
        i += 1;
    }
    Ok(())
}

/// Runs `child_test` (the libtest path of the `crash_child` test for this engine) in a child
/// process, kills it with SIGKILL after it reported 200 flushed batches, then checks that every
/// reported batch is there and that no batch is there in part.
pub fn flushed_batches_survive_sigkill(open: Opener, child_test: &str) -> Result<(), StoreError> {
    let dir = scratch()?;
    let path = dir.path().join("store");
    let mut child = Command::new(std::env::current_exe()?)
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| StoreError::Other("the child has no stdout".into()))?;
    let mut flushed: Option<u64> = None;
    let mut other_output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix("flushed ").map(str::parse::<u64>) {
            Some(Ok(i)) => {
                flushed = Some(i);
                if i + 1 >= FLUSHED_BEFORE_KILL {
                    break;
                }
            }
            _ => {
                other_output.push_str(&line);
                other_output.push('\n');
            }
        }
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no last flush.
    child.kill()?;
    child.wait()?;
    let reported = match flushed {
        Some(i) if i + 1 >= FLUSHED_BEFORE_KILL => i,
        _ => {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                err.read_to_string(&mut stderr)?;
            }
            panic!(
                "the child `{child_test}` stopped after {flushed:?} flushed batches\n\
                 stdout:\n{other_output}\nstderr:\n{stderr}"
            );
        }
    };

    let store = reopen(open, &path)?;
    // Batch number → its keys that survived.
    let mut survived: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, value) in store.scan(b"c/0", b"c/:", false, usize::MAX)? {
        let text = String::from_utf8_lossy(&key).into_owned();
        let i: u64 = text
            .get(2..10)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("a key the child never wrote: {text}"));
        assert_eq!(value, i.to_string().into_bytes(), "the value of {text}");
        survived.entry(i).or_default().push(key);
    }
    for (i, keys) in &survived {
        assert_eq!(keys, &batch_keys(*i), "batch {i} survived the kill in part");
    }
    for i in 0..=reported {
        assert!(
            survived.contains_key(&i),
            "batch {i} was flushed before the kill (up to {reported} were), but is gone"
        );
    }
    let last = store
        .get(b"c/last")?
        .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok());
    let newest = survived.keys().next_back().copied();
    assert_eq!(
        last, newest,
        "`c/last` must come from the newest surviving batch (else a batch survived in part)"
    );
    // The other kinds' keys of every surviving batch, and only theirs: a message each, and
    // the newest batch's queue entry alone (each later batch removed the one before).
    let messages: Vec<Vec<u8>> = survived.keys().map(|i| kind_keys(*i)[0].clone()).collect();
    assert_eq!(
        keys(&store.scan(b"m/c", b"m/d", false, usize::MAX)?),
        messages,
        "the messages of the surviving batches"
    );
    let queued: Vec<Vec<u8>> = newest
        .map(|i| kind_keys(i)[1].clone())
        .into_iter()
        .collect();
    assert_eq!(
        keys(&store.scan(b"q/c/", b"q/c0", false, usize::MAX)?),
        queued,
        "only the newest batch's queue entry"
    );
    for i in survived.keys() {
        let [message, _] = kind_keys(*i);
        assert_eq!(store.get(&message)?, Some(i.to_string().into_bytes()));
    }
    Ok(())
}
