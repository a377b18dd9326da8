//! A real PostgreSQL for the tests: one server per test binary, started on first use in a
//! temporary directory on a free port, with one fresh database per test so tests run in
//! parallel. No mocks: the adapter is tested against the server it will run on.
//!
//! Finding the server: `$CHATD_PG_BIN` (a directory holding `initdb` and `pg_ctl`), else
//! `initdb` on the `PATH`, else the newest `/usr/lib/postgresql/*/bin` (where Debian's
//! `postgresql` package puts it, off the `PATH`). Without one the tests fail saying what to
//! install. PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
//! user the Debian package creates (else `nobody`), through `runuser`, in a directory handed
//! over to that user. A watcher process stops the server (`pg_ctl stop -m immediate`) and
//! deletes the directory once the test binary has exited, however it exited.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A running server.
pub struct Server {
    /// Where it listens.
    pub port: u16,
    /// Where `initdb` and `pg_ctl` are.
    bin: PathBuf,
    /// Who runs it (when the tests run as root).
    user: Option<String>,
    /// Its data directory.
    data: PathBuf,
    /// Its log file.
    log: PathBuf,
    /// Its options (port, socket directory, settings).
    options: String,
}

impl Server {
    /// Runs `pg_ctl` with `args` on this server's data directory; whether it succeeded.
    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.data.to_string_lossy();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        command(self.user.as_deref(), &self.bin, "pg_ctl", &all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Kills the server as a crash would (`-m immediate`: no checkpoint, WAL replay at the
    /// next start).
    pub fn crash(&self) {
        assert!(self.pg_ctl(&["-m", "immediate", "-w", "stop"]), "stop");
    }

    /// Starts the server again on the same port.
    pub fn start_again(&self) {
        let log = self.log.to_string_lossy();
        assert!(
            self.pg_ctl(&["-l", &log, "-o", &self.options, "-w", "start"]),
            "start again: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// A streaming standby of this server (`pg_basebackup -R`), on a port of its own, that
    /// this server then waits for on every commit (`synchronous_standby_names = '*'`): a
    /// commit that returned is on both. Stopped when the binary exits.
    pub fn synchronous_standby(&self) -> Server {
        let (dir, data) = server_dir(self.user.as_deref());
        let data_s = data.to_string_lossy().into_owned();
        let port = self.port.to_string();
        let out = command(
            self.user.as_deref(),
            &self.bin,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "chatd",
                "-D",
                &data_s,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )
        .output()
        .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let standby = run(self.user.clone(), self.bin.clone(), &dir, data);
        let primary = url(self.port, "postgres");
        admin(&primary, "ALTER SYSTEM SET synchronous_standby_names = '*'");
        admin(&primary, "SELECT pg_reload_conf()");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while texts(
            &primary,
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        ) != vec![vec!["1".to_string()]]
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the standby never became synchronous"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        standby
    }

    /// Promotes this standby to a primary and waits until it takes writes.
    pub fn promote(&self) {
        assert!(self.pg_ctl(&["-w", "promote"]), "promote");
    }

    /// A new, empty database on this server; its URL.
    pub fn database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        admin(
            &url(self.port, "postgres"),
            &format!("CREATE DATABASE {name}"),
        );
        url(self.port, &name)
    }
}

/// A server of the test's own, for tests that stop it; stopped when the binary exits.
pub fn own_server() -> Server {
    start()
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The directory of `initdb` and `pg_ctl`; fails saying what to install when there is none.
fn bin_dir() -> PathBuf {
    let dir = find_bin_dir();
    for program in ["initdb", "pg_ctl"] {
        assert!(
            dir.join(program).exists(),
            "{}/{program} not found: {INSTALL}",
            dir.display()
        );
    }
    dir
}

/// What to do when PostgreSQL is missing.
const INSTALL: &str = "these tests start their own PostgreSQL and need `initdb` and `pg_ctl`: \
                       install the Debian package `postgresql` (`sudo apt-get install -y \
                       postgresql`), or set CHATD_PG_BIN to the directory that holds them";

/// Where `initdb` and `pg_ctl` should be.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHATD_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !path.is_empty() {
            // A link on the PATH (to Debian's directory, say): the directory it points into
            // holds the other programs (`pg_basebackup` too).
            let path = std::fs::canonicalize(&path).unwrap_or_else(|_| PathBuf::from(&path));
            if let Some(dir) = path.parent() {
                return dir.to_path_buf();
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!("PostgreSQL is not installed: {INSTALL}"),
    }
}

/// The unprivileged user the server runs as when the tests run as root.
fn server_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let has = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    Some(
        if has("postgres") {
            "postgres"
        } else {
            "nobody"
        }
        .to_string(),
    )
}

/// A numeric id of `user` (`id -u` or `id -g`).
fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// `program` from `bin` with `args`, run as `user` when there is one.
fn command(user: Option<&str>, bin: &Path, program: &str, args: &[&str]) -> Command {
    let exe = bin.join(program);
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(args);
    cmd
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A directory for a server, owned by the user it runs as, and its data directory's path
/// (not created). Kept: the watcher deletes it after the binary exits.
fn server_dir(user: Option<&str>) -> (PathBuf, PathBuf) {
    // As root, under /tmp: the server's user must be able to reach it, which a $TMPDIR
    // inside root's home would not allow.
    let mut builder = tempfile::Builder::new();
    builder.prefix("chatd-pg-");
    let dir = match user {
        Some(_) => builder.tempdir_in("/tmp"),
        None => builder.tempdir(),
    }
    .expect("tempdir")
    .keep();
    if let Some(user) = user {
        chown(&dir, Some(id_of(user, "-u")), Some(id_of(user, "-g"))).expect("chown");
    }
    let data = dir.join("data");
    (dir, data)
}

/// Starts the server.
fn start() -> Server {
    let bin = bin_dir();
    let user = server_user();
    let (dir, data) = server_dir(user.as_deref());
    let data_s = data.to_string_lossy().into_owned();
    let out = command(
        user.as_deref(),
        &bin,
        "initdb",
        &["-D", &data_s, "-U", "chatd", "--auth=trust", "-E", "UTF8"],
    )
    .output()
    .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(user, bin, &dir, data)
}

/// Starts the server of `data` (in `dir`) on a free port, with a watcher that stops it once
/// this process has exited.
fn run(user: Option<String>, bin: PathBuf, dir: &Path, data: PathBuf) -> Server {
    let (data_s, dir_s) = (
        data.to_string_lossy().into_owned(),
        dir.to_string_lossy().into_owned(),
    );
    let log = dir.join("server.log");
    let log_s = log.to_string_lossy().into_owned();
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let options = format!(
            "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync=on \
             -c synchronous_commit=on -c max_connections=300"
        );
        let status = command(
            user.as_deref(),
            &bin,
            "pg_ctl",
            &["-D", &data_s, "-l", &log_s, "-o", &options, "-w", "start"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pg_ctl");
        if status.success() {
            watch(user.as_deref(), &bin, &data, dir);
            return Server {
                port,
                bin,
                user,
                data,
                log,
                options,
            };
        }
        last = std::fs::read_to_string(&log).unwrap_or_default();
    }
    panic!("PostgreSQL did not start; its log:\n{last}");
}

/// Stops the server and deletes `dir` once this process has exited.
// Never waited for on purpose: the watcher must outlive this process.
#[allow(clippy::zombie_processes)]
fn watch(user: Option<&str>, bin: &Path, data: &Path, dir: &Path) {
    let stop = command(user, bin, "pg_ctl", &[]);
    let mut stop_line: Vec<String> = std::iter::once(stop.get_program())
        .chain(stop.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    stop_line.extend([
        "-D".into(),
        format!("'{}'", data.display()),
        "-m".into(),
        "immediate".into(),
        "stop".into(),
    ]);
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = stop_line.join(" "),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server's watcher");
}

/// The URL of `database` on the server.
fn url(port: u16, database: &str) -> String {
    format!("postgres://chatd@127.0.0.1:{port}/{database}")
}

/// Runs `sql` (one or more statements) on the database at `url`.
pub fn admin(url: &str, sql: &str) {
    texts(url, sql);
}

/// The rows of `sql` (one or more statements) on the database at `url`, each as text columns
/// (`NULL` as "").
pub fn texts(url: &str, sql: &str) -> Vec<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        let driver = tokio::spawn(connection);
        let rows = client.simple_query(sql).await.expect("query");
        drop(client);
        let _ = driver.await;
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default().to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    })
}

/// A new, empty database on this binary's server (started on first use); its URL.
pub fn fresh_database() -> String {
    SERVER.get_or_init(start).database()
}

/// A fresh database with the schema; its URL.
pub fn migrated_database() -> String {
    let url = fresh_database();
    chatd_postgres::migrate(&url).expect("migrate");
    url
}
