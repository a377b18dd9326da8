//! Paces the big disk operations of fjall's background work — writing a table, and freeing a
//! table or journal file it deleted — so that the journal's fsync, on which every
//! acknowledgement waits, never queues behind tens of megabytes.
//!
//! Why: on the benchmark machine a journal fsync normally takes 0.3 ms, but 10–100 ms when it
//! comes right after one of these (`docs/benchmarks.md`, "table writes and deletions paced"):
//! - **Writes.** fjall writes a table (a flushed memtable, or a compaction's output) through
//!   the page cache and fsyncs it once, at its end. Until then the kernel holds the table's
//!   14–65 MiB as dirty pages, and that fsync hands all of them to the disk at once. Starting
//!   writeback of each chunk as soon as it is written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`,
//!   which does not wait) keeps about one chunk of table data ahead of any journal fsync:
//!   fjall writes tables at 70–270 MiB/s, slower than the disk takes them.
//! - **Deletions.** Unlinking a 14–65 MiB file frees all its blocks at once, and on a file
//!   system mounted with `discard` (as the benchmark machine's is) that is a discard request
//!   of the whole file: 50–100 ms of `unlink` in a fjall worker, and a journal fsync behind it.
//!   This module keeps its own descriptor to every table and journal file, so fjall's unlink
//!   only removes the name; it then frees the file by truncating it a chunk at a time, a few
//!   milliseconds apart, and closes it when it is empty.
//!
//! fjall has no hook for either, so a thread of chatd's watches fjall's directories with
//! inotify. It never writes file data: it only starts writeback, and truncates files that
//! no longer have a name (checked with `fstat` before every step: a file fjall still uses
//! always has one). If anything here fails, fjall simply does what it does without it. Linux
//! only; elsewhere nothing is started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The most files the pacer keeps a descriptor to at once (chatd's reserve of descriptors
/// counts them). Past it the oldest is let go of, and fjall's deletion of that file frees
/// it at once, as without the pacer.
pub const MAX_HELD_FILES: usize = 256;

/// What kind of files a watched directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Tables (`keyspaces/{id}/tables/{table id}`): writes are paced, deletions too.
    Tables,
    /// fjall's directory, with its journals (`{id}.jnl`): deletions are paced.
    Journals,
}

/// Counters of what the pacer did, for tests and curiosity.
#[derive(Debug, Default)]
pub(crate) struct PacerCounts {
    /// Bytes of table files whose writeback was started while they were being written.
    pub(crate) started: AtomicU64,
    /// Bytes of deleted files freed a chunk at a time.
    pub(crate) freed: AtomicU64,
    /// Files a descriptor is held to right now.
    pub(crate) held: AtomicU64,
}

/// The running watcher thread; it stops when this is dropped (and lets go of every file:
/// a deleted file not yet freed is then freed at once).
pub(crate) struct TablePacer {
    counts: Arc<PacerCounts>,
    /// Tells the thread to stop.
    #[cfg(target_os = "linux")]
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TablePacer {
    /// Watches `dirs`, handing writes to and deletions from the disk `chunk` bytes at a time.
    /// Directories that do not exist are skipped.
    pub(crate) fn start(dirs: Vec<(PathBuf, Kind)>, chunk: u64) -> TablePacer {
        let counts = Arc::new(PacerCounts::default());
        #[cfg(target_os = "linux")]
        {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            match linux::Watcher::new(dirs, chunk.max(4096), counts.clone(), stop.clone()) {
                Ok(watcher) => {
                    let spawned = std::thread::Builder::new()
                        .name("chatd-table-pacer".into())
                        .spawn(move || watcher.run());
                    if let Err(e) = spawned {
                        tracing::warn!("no table pacer thread ({e}): fjall's files are written and freed at once");
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot watch fjall's directories ({e}): its files are written and freed at once");
                }
            }
            TablePacer { counts, stop }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (dirs, chunk);
            TablePacer { counts }
        }
    }

    /// What the pacer has done so far.
    pub(crate) fn counts(&self) -> &PacerCounts {
        &self.counts
    }
}

impl Drop for TablePacer {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The directories of fjall's database `db` that the pacer watches: `db` itself (journals)
/// and each keyspace's `tables` directory (`{db}/keyspaces/{id}/tables`), as fjall 3 lays
/// them out. Keyspaces created later are not watched (chatd creates all of its own at open).
pub(crate) fn fjall_dirs(db: &std::path::Path) -> Vec<(PathBuf, Kind)> {
    let mut dirs = vec![(db.to_path_buf(), Kind::Journals)];
    if let Ok(entries) = std::fs::read_dir(db.join("keyspaces")) {
        dirs.extend(
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path().join("tables"))
                .filter(|dir| dir.is_dir())
                .map(|dir| (dir, Kind::Tables)),
        );
    }
    dirs
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{HashMap, VecDeque};
    use std::ffi::{CString, OsStr};
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Kind, PacerCounts, MAX_HELD_FILES};

    /// How long the thread waits for events, when it has nothing to free, before it looks at
    /// its stop flag again.
    const IDLE_POLL_MS: i32 = 200;
    /// The pause between two chunks freed: at 1 MiB chunks, at most ~330 MiB/s are freed,
    /// and each discard request is small enough for a journal fsync to pass between them.
    const FREE_PAUSE: Duration = Duration::from_millis(3);

    /// A file the thread holds a descriptor to.
    struct Held {
        file: File,
        /// Bytes whose writeback was started (tables being written).
        started: u64,
        /// When it was taken: the oldest goes first past [`MAX_HELD_FILES`].
        taken: u64,
    }

    /// A deleted file being freed a chunk at a time.
    struct Dying {
        file: File,
        /// Its length after the last truncation.
        len: u64,
    }

    /// The inotify descriptor and what the thread knows about the watched directories.
    pub(super) struct Watcher {
        inotify: OwnedFd,
        /// Watch descriptor → the directory it watches, and what kind of files it holds.
        dirs: HashMap<i32, (PathBuf, Kind)>,
        /// Writes are started and files freed in multiples of this many bytes.
        chunk: u64,
        /// `(watch descriptor, file name)` → the file.
        held: HashMap<(i32, Vec<u8>), Held>,
        /// Deleted files, freed in this order.
        dying: VecDeque<Dying>,
        /// Counts the files taken, to order them.
        taken: u64,
        counts: Arc<PacerCounts>,
        stop: Arc<AtomicBool>,
    }

    impl Watcher {
        /// Watches `dirs` (those that exist) and takes the files already in them.
        pub(super) fn new(
            dirs: Vec<(PathBuf, Kind)>,
            chunk: u64,
            counts: Arc<PacerCounts>,
            stop: Arc<AtomicBool>,
        ) -> io::Result<Watcher> {
            // SAFETY: inotify_init1 takes no pointers; a non-negative result is a new
            // descriptor that nothing else owns.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just created and is owned here alone.
            let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut watcher = Watcher {
                inotify,
                dirs: HashMap::new(),
                chunk,
                held: HashMap::new(),
                dying: VecDeque::new(),
                taken: 0,
                counts,
                stop,
            };
            for (dir, kind) in dirs {
                watcher.watch(dir, kind);
            }
            // After the watches, so that no file created meanwhile is missed.
            watcher.take_existing();
            Ok(watcher)
        }

        /// Adds an inotify watch on `dir`.
        fn watch(&mut self, dir: PathBuf, kind: Kind) {
            let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) else {
                return;
            };
            // Writes matter only in table directories: the journal is written at every
            // commit, and waking up for each of those would be wasted.
            let writes = if kind == Kind::Tables {
                libc::IN_MODIFY
            } else {
                0
            };
            let mask =
                libc::IN_CREATE | writes | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_ONLYDIR;
            // SAFETY: `c_dir` is a NUL-terminated path that outlives the call.
            let wd =
                unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), c_dir.as_ptr(), mask) };
            if wd < 0 {
                tracing::debug!(
                    "not pacing {}: {}",
                    dir.display(),
                    io::Error::last_os_error()
                );
                return;
            }
            self.dirs.insert(wd, (dir, kind));
        }

        /// Takes every file of the watched directories that is not held yet.
        fn take_existing(&mut self) {
            let dirs: Vec<(i32, PathBuf)> = self
                .dirs
                .iter()
                .map(|(wd, (dir, _))| (*wd, dir.clone()))
                .collect();
            for (wd, dir) in dirs {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.filter_map(|e| e.ok()) {
                    let name = entry.file_name();
                    if !self.held.contains_key(&(wd, name.as_bytes().to_vec())) {
                        self.take(wd, name.as_bytes());
                    }
                }
            }
        }

        /// Handles events until told to stop.
        pub(super) fn run(mut self) {
            // Room for many events (each is 16 bytes and a name of a few bytes).
            let mut buf = vec![0u8; 64 * 1024];
            let mut next_free = Instant::now();
            while !self.stop.load(Ordering::Relaxed) {
                // Rounded up, and at least 1 ms: a timeout of 0 would spin until `next_free`.
                let timeout = if self.dying.is_empty() {
                    IDLE_POLL_MS
                } else {
                    let wait = next_free.saturating_duration_since(Instant::now());
                    (wait.as_micros().div_ceil(1000) as i32).clamp(1, IDLE_POLL_MS)
                };
                let mut pollfd = libc::pollfd {
                    fd: self.inotify.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the length given.
                let ready = unsafe { libc::poll(&mut pollfd, 1, timeout) };
                if ready > 0 {
                    // SAFETY: `buf` is writable for its whole length.
                    let n = unsafe {
                        libc::read(self.inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    };
                    if n > 0 {
                        self.handle(&buf[..n as usize]);
                    }
                }
                if !self.dying.is_empty() && Instant::now() >= next_free {
                    self.free_one_chunk();
                    next_free = Instant::now() + FREE_PAUSE;
                }
            }
        }

        /// Handles every event in `events` (what one read of the inotify descriptor gave).
        fn handle(&mut self, mut events: &[u8]) {
            const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
            while events.len() >= HEADER {
                // SAFETY: at least HEADER bytes remain; the kernel writes whole events, and
                // read_unaligned copes with the buffer's alignment.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
                let end = HEADER + event.len as usize;
                if end > events.len() {
                    return;
                }
                // The name is NUL-padded to an alignment boundary.
                let name = &events[HEADER..end];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                self.event(event.wd, event.mask, name);
                events = &events[end..];
            }
        }

        /// One event: `mask` happened to the file `name` in the directory watched by `wd`.
        fn event(&mut self, wd: i32, mask: u32, name: &[u8]) {
            if mask & libc::IN_Q_OVERFLOW != 0 {
                self.recover_from_overflow();
                return;
            }
            if name.is_empty() || mask & libc::IN_ISDIR != 0 {
                return;
            }
            let key = (wd, name.to_vec());
            if mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
                if let Some(held) = self.held.remove(&key) {
                    self.counts.held.fetch_sub(1, Ordering::Relaxed);
                    self.let_go(held.file);
                }
                return;
            }
            if mask & (libc::IN_CREATE | libc::IN_MODIFY) != 0 && !self.held.contains_key(&key) {
                self.take(wd, name);
            }
            if mask & libc::IN_MODIFY != 0 {
                self.start_writeback(&key);
            }
        }

        /// Events were lost: deletions may have been missed (files held whose name is gone
        /// are freed now) and so may creations (files not held are taken).
        fn recover_from_overflow(&mut self) {
            let gone: Vec<(i32, Vec<u8>)> = self
                .held
                .iter()
                .filter(|(_, held)| !has_name(&held.file))
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                if let Some(held) = self.held.remove(&key) {
                    self.counts.held.fetch_sub(1, Ordering::Relaxed);
                    self.let_go(held.file);
                }
            }
            self.take_existing();
        }

        /// Opens `name` in the directory watched by `wd` and holds it, if it is a file the
        /// pacer looks after.
        fn take(&mut self, wd: i32, name: &[u8]) {
            let Some((dir, kind)) = self.dirs.get(&wd) else {
                return;
            };
            if *kind == Kind::Journals && !name.ends_with(b".jnl") {
                return;
            }
            let path = dir.join(OsStr::from_bytes(name));
            // Read and write: truncating needs a writable descriptor. Nothing is written.
            let Ok(file) = open_rw(&path) else {
                return;
            };
            if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
                return;
            }
            if self.held.len() >= MAX_HELD_FILES {
                self.let_go_of_oldest();
            }
            self.taken += 1;
            self.held.insert(
                (wd, name.to_vec()),
                Held {
                    file,
                    started: 0,
                    taken: self.taken,
                },
            );
            self.counts.held.fetch_add(1, Ordering::Relaxed);
        }

        /// Closes the file held longest (its deletion, later, frees it at once).
        fn let_go_of_oldest(&mut self) {
            let oldest = self
                .held
                .iter()
                .min_by_key(|(_, held)| held.taken)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                if let Some(held) = self.held.remove(&key) {
                    self.counts.held.fetch_sub(1, Ordering::Relaxed);
                    self.let_go(held.file);
                }
            }
        }

        /// A file no longer held: freed gradually if its name is gone, else just closed.
        fn let_go(&mut self, file: File) {
            if has_name(&file) {
                return;
            }
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                return;
            }
            self.dying.push_back(Dying { file, len });
        }

        /// Starts writeback of the whole chunks of a table written since the last time.
        fn start_writeback(&mut self, key: &(i32, Vec<u8>)) {
            if self.dirs.get(&key.0).map(|(_, kind)| *kind) != Some(Kind::Tables) {
                return;
            }
            let chunk = self.chunk;
            let Some(held) = self.held.get_mut(key) else {
                return;
            };
            let Ok(meta) = held.file.metadata() else {
                return;
            };
            let whole = meta.len() / chunk * chunk;
            if whole <= held.started {
                return;
            }
            let len = whole - held.started;
            // SAFETY: a valid descriptor and a byte range; SYNC_FILE_RANGE_WRITE only queues
            // the range's dirty pages for writing and returns.
            let rc = unsafe {
                libc::sync_file_range(
                    held.file.as_raw_fd(),
                    held.started as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if rc == 0 {
                held.started = whole;
                self.counts.started.fetch_add(len, Ordering::Relaxed);
            }
        }

        /// Truncates the first dying file by one chunk; closes it once it is empty.
        fn free_one_chunk(&mut self) {
            let Some(dying) = self.dying.front_mut() else {
                return;
            };
            // Never shorten a file that has a name: only fjall's own deletions are freed.
            if has_name(&dying.file) {
                self.dying.pop_front();
                return;
            }
            let next = dying.len.saturating_sub(self.chunk);
            match dying.file.set_len(next) {
                Ok(()) => {
                    self.counts
                        .freed
                        .fetch_add(dying.len - next, Ordering::Relaxed);
                    dying.len = next;
                    if next == 0 {
                        self.dying.pop_front();
                    }
                }
                // Closing it frees the rest at once.
                Err(_) => {
                    self.dying.pop_front();
                }
            }
        }
    }

    /// Opens `path` for reading and writing, without creating it.
    fn open_rw(path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    }

    /// True unless the file has no name left (or cannot be examined, which is taken as
    /// having one: nothing is truncated on doubt).
    fn has_name(file: &File) -> bool {
        file.metadata().map(|m| m.nlink() > 0).unwrap_or(true)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    const MIB: u64 = 1 << 20;

    /// Waits until `counter` reaches at least `value`, or a minute has passed; returns it.
    fn wait_for(counter: &AtomicU64, value: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while read(counter) < value && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        read(counter)
    }

    /// Waits until `pacer` holds no file, or a minute has passed.
    fn wait_until_none_held(pacer: &TablePacer) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while read(&pacer.counts().held) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `mib` MiB into `path` in 64 KiB pieces; returns the open file.
    fn write_mib(path: &std::path::Path, mib: u64) -> std::io::Result<std::fs::File> {
        let mut file = std::fs::File::create(path)?;
        let piece = vec![0x5a; 64 * 1024];
        for _ in 0..mib * 16 {
            file.write_all(&piece)?;
        }
        Ok(file)
    }

    /// A table written in 64 KiB pieces has its writeback started a whole chunk at a time
    /// while it is still open; the part past the last whole chunk is left to the writer's
    /// own fsync.
    #[test]
    fn whole_chunks_of_a_table_being_written_are_started() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let pacer = TablePacer::start(vec![(dir.path().to_path_buf(), Kind::Tables)], MIB);
        let mut file = write_mib(&dir.path().join("7"), 3)?;
        file.write_all(&vec![1; 5 * 64 * 1024])?;
        assert_eq!(wait_for(&pacer.counts().started, 3 * MIB), 3 * MIB);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(read(&pacer.counts().started), 3 * MIB);
        file.sync_all()?;
        drop(file);
        // A second table is followed from its start.
        let _second = write_mib(&dir.path().join("8"), 1)?;
        assert_eq!(wait_for(&pacer.counts().started, 4 * MIB), 4 * MIB);
        Ok(())
    }

    /// A deleted table — one written while watched, and one that was there before — is
    /// freed a chunk at a time after the delete, and the pacer lets go of it.
    #[test]
    fn deleted_tables_are_freed_a_chunk_at_a_time() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        write_mib(&dir.path().join("1"), 2)?.sync_all()?;
        let pacer = TablePacer::start(vec![(dir.path().to_path_buf(), Kind::Tables)], MIB);
        write_mib(&dir.path().join("2"), 3)?.sync_all()?;
        assert_eq!(wait_for(&pacer.counts().held, 2), 2);
        std::fs::remove_file(dir.path().join("1"))?;
        std::fs::remove_file(dir.path().join("2"))?;
        assert_eq!(wait_for(&pacer.counts().freed, 5 * MIB), 5 * MIB);
        wait_until_none_held(&pacer);
        assert_eq!(read(&pacer.counts().held), 0);
        Ok(())
    }

    /// A file that moves away under a held name keeps every byte: only files with no name
    /// left are ever truncated.
    #[test]
    fn a_renamed_file_is_not_truncated() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let elsewhere = tempfile::tempdir()?;
        let pacer = TablePacer::start(vec![(dir.path().to_path_buf(), Kind::Tables)], MIB);
        write_mib(&dir.path().join("3"), 2)?.sync_all()?;
        assert_eq!(wait_for(&pacer.counts().held, 1), 1);
        std::fs::rename(dir.path().join("3"), elsewhere.path().join("3"))?;
        wait_until_none_held(&pacer);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            std::fs::metadata(elsewhere.path().join("3"))?.len(),
            2 * MIB
        );
        assert_eq!(read(&pacer.counts().freed), 0);
        Ok(())
    }

    /// In fjall's own directory only journals are held; other files are left alone.
    #[test]
    fn only_journals_are_held_in_the_database_directory() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let pacer = TablePacer::start(vec![(dir.path().to_path_buf(), Kind::Journals)], MIB);
        write_mib(&dir.path().join("version"), 1)?;
        write_mib(&dir.path().join("4.jnl"), 2)?.sync_all()?;
        assert_eq!(wait_for(&pacer.counts().held, 1), 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(read(&pacer.counts().held), 1);
        // Journals are not paced while written (the committer fsyncs them anyway).
        assert_eq!(read(&pacer.counts().started), 0);
        std::fs::remove_file(dir.path().join("4.jnl"))?;
        assert_eq!(wait_for(&pacer.counts().freed, 2 * MIB), 2 * MIB);
        Ok(())
    }

    /// Files in directories that are not watched are left alone.
    #[test]
    fn other_directories_are_not_touched() -> std::io::Result<()> {
        let watched = tempfile::tempdir()?;
        let other = tempfile::tempdir()?;
        let pacer = TablePacer::start(vec![(watched.path().to_path_buf(), Kind::Tables)], MIB);
        write_mib(&other.path().join("1"), 2)?;
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(read(&pacer.counts().started), 0);
        assert_eq!(read(&pacer.counts().held), 0);
        Ok(())
    }
}
