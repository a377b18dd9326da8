//! A process killed with SIGKILL after a flush: every flushed batch is on disk, whole.
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

use super::{put, reopen, scratch, Opener};
use crate::StoreError;

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

/// The child: applies batches (two new keys and an overwrite of `c/last`), flushes each one
/// and prints `flushed {i}` after the flush returned. Does nothing unless run by
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
        let value = i.to_string().into_bytes();
        store.apply(vec![
            put(&a, &value),
            put(b"c/last", &value),
            put(&b, &value),
        ])?;
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
    assert_eq!(
        last,
        survived.keys().next_back().copied(),
        "`c/last` must come from the newest surviving batch (else a batch survived in part)"
    );
    Ok(())
}
