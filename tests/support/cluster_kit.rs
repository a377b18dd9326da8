//! A test cluster: one PostgreSQL database (the shared test server, or a server of the test's
//! own for tests that stop it) and one Redis, and chatd nodes started on them as processes.
//! Shared by the cluster modules (`tests/cluster.rs`, `tests/cluster_work.rs`,
//! `tests/cluster_faults.rs`).

#![allow(dead_code)]

use std::path::Path;

use rumqttc::QoS;

use super::redis_server::RedisServer;
use super::*;
use crate::pg;

/// The admin token every node of a test cluster shares (accounts are shared too).
pub const ADMIN: &str = "cluster-admin-token-0123456789";

/// A database and a Redis shared by the nodes started from it.
pub struct Cluster {
    /// The Redis of the connection cache and the wake-up bus.
    pub redis: RedisServer,
    /// The database's URL.
    pub database: String,
    /// The shared media directory (`media.fs.shared`).
    pub media: tempfile::TempDir,
    /// The PostgreSQL server, when the test has one of its own.
    pub own: Option<pg::Server>,
    /// Its synchronous standby, when the test has one.
    pub standby: Option<pg::Server>,
    /// Extra `[limits]` lines of every node.
    pub limits: String,
    /// Extra `[cluster]` lines of every node.
    pub cluster: String,
}

impl Cluster {
    /// A cluster on a fresh database of the shared test server.
    pub fn new() -> Cluster {
        // The harness runs PostgreSQL statements on a runtime of its own: off the test's.
        let database = tokio::task::block_in_place(pg::fresh_database);
        Cluster::on(database, None)
    }

    /// A cluster on a PostgreSQL server of its own, which the test may stop and start.
    pub fn with_own_server() -> Cluster {
        let (server, database) = tokio::task::block_in_place(|| {
            let server = pg::own_server();
            let database = server.database();
            (server, database)
        });
        Cluster::on(database, Some(server))
    }

    /// A cluster on a PostgreSQL primary of its own with a synchronous standby; the nodes'
    /// URL names both (`target_session_attrs=read-write`), so that they find whichever is the
    /// primary.
    pub fn with_standby() -> Cluster {
        let (primary, standby, database) = tokio::task::block_in_place(|| {
            let primary = pg::own_server();
            let database = primary.database();
            let standby = primary.synchronous_standby();
            (primary, standby, database)
        });
        let one = format!("127.0.0.1:{}/", primary.port);
        let both = format!("127.0.0.1:{},127.0.0.1:{}/", primary.port, standby.port);
        let database = format!(
            "{}?target_session_attrs=read-write",
            database.replacen(&one, &both, 1)
        );
        let mut cluster = Cluster::on(database, Some(primary));
        cluster.standby = Some(standby);
        cluster
    }

    fn on(database: String, own: Option<pg::Server>) -> Cluster {
        migrate(&database);
        Cluster {
            redis: RedisServer::start(),
            database,
            media: tempfile::tempdir().expect("media dir"),
            own,
            standby: None,
            limits: String::new(),
            cluster: String::new(),
        }
    }

    /// Starts node `id`.
    pub fn node(&self, id: u16) -> Server {
        self.node_with(id, |_| String::new())
    }

    /// Starts node `id` with more configuration: `extra` gets the node's directory and returns
    /// whole tables to append (e.g. `[push]`).
    pub fn node_with(&self, id: u16, extra: impl FnOnce(&Path) -> String) -> Server {
        Server::try_start_custom(|dir| {
            let more = extra(dir);
            format!("{}\n{more}", self.config(dir, id))
        })
        .unwrap_or_else(|e| panic!("node {id} did not start: {e}"))
    }

    /// The configuration of node `id` in `dir`.
    pub fn config(&self, dir: &Path, id: u16) -> String {
        format!(
            "{base}\n[node]\nid = {id}\n[cluster]\nstore = \"postgres\"\n{cluster}\n\
             [postgres]\nurl = {database}\n\
             [redis]\nurl = {redis}\nttl_secs = 5\n[auth]\nadmin_token = \"{ADMIN}\"\n\
             [limits]\nsends_per_sec = 10000\nsends_burst = 10000\nrequests_per_sec = 10000\n\
             requests_burst = 10000\n{limits}\n\
             [media.fs]\nshared = true\npath = {media}\n\
             signing_key = \"cluster-signing-key-0123456789abcdef\"\n",
            base = base_config(dir, ""),
            cluster = self.cluster,
            limits = self.limits,
            database = toml_string(&self.database),
            redis = toml_string(&self.redis.url()),
            media = toml_string(&self.media.path().to_string_lossy()),
        )
    }

    /// The rows of `sql` on the cluster's database, as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let database = self.database.clone();
        let sql = sql.to_string();
        tokio::task::block_in_place(move || pg::texts(&database, &sql))
    }

    /// The one number `sql` returns.
    pub fn count(&self, sql: &str) -> i64 {
        let rows = self.query(sql);
        rows.first()
            .and_then(|r| r.first())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sql}: {rows:?}"))
    }
}

/// Creates the schema with `chatd db migrate`, as an operator would.
pub fn migrate(database: &str) {
    let config = write_db_config(database);
    let out = std::process::Command::new(chatd_bin())
        .arg("--config")
        .arg(config.path())
        .args(["db", "migrate"])
        .env_remove("CHATD_CONFIG")
        .output()
        .expect("run chatd db migrate");
    assert!(
        out.status.success(),
        "chatd db migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A configuration that names only the database (for `chatd db migrate`).
pub fn write_db_config(database: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        file.path(),
        format!("[postgres]\nurl = {}\n", toml_string(database)),
    )
    .expect("write config");
    file
}

/// A device of `user` on `node`, subscribed to its inbox and acks.
pub async fn device(node: &Server, user: &str, device: &str) -> Client {
    let c = connect(
        node.mqtt,
        &format!("{user}:{device}"),
        user,
        &format!("{user}-pw"),
    )
    .await;
    c.subscribe(&format!("user/{user}/inbox"), QoS::AtLeastOnce)
        .await;
    c.subscribe(&format!("user/{user}/ack"), QoS::AtLeastOnce)
        .await;
    c
}

/// The next `n` inbox messages of `c` (user `user`), as (id, text).
pub async fn inbox(c: &mut Client, user: &str, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let m = c.next_on(&format!("user/{user}/inbox")).await;
        got.push((
            m["id"].as_str().unwrap_or_default().to_string(),
            m["text"].as_str().unwrap_or_default().to_string(),
        ));
    }
    got
}

/// The next presence state of `user` that `watcher` receives.
pub async fn presence_of(watcher: &mut Client, user: &str) -> String {
    let v = watcher.next_on(&format!("presence/{user}")).await;
    assert_eq!(v["user"], user, "{v}");
    v["status"].as_str().unwrap_or_default().to_string()
}
