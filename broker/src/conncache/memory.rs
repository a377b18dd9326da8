//! The in-process connection cache: this node's connections in a map behind a mutex.

use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{now_ms, CacheError, CacheHealth, ConnectionCache, DeviceEntry, LiveTable};

/// Connections of this node only, in memory.
pub struct MemoryCache {
    node: u16,
    table: Mutex<LiveTable>,
}

impl MemoryCache {
    /// An empty cache for node `node`.
    pub fn new(node: u16) -> MemoryCache {
        MemoryCache {
            node,
            table: Mutex::new(LiveTable::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LiveTable) -> T) -> T {
        // A panic while holding the lock leaves a table that is still consistent enough.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut table)
    }
}

impl ConnectionCache for MemoryCache {
    fn connected(&self, user: &str, client_id: &str) {
        let now = now_ms();
        self.with(|t| t.connected(user, client_id, now));
    }

    fn disconnected(&self, user: &str, client_id: &str) {
        self.with(|t| t.disconnected(user, client_id));
    }

    fn activity(&self, user: &str, client_id: &str) {
        let now = now_ms();
        self.with(|t| t.activity(user, client_id, now));
    }

    fn devices<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<DeviceEntry>, CacheError>> {
        let devices = self.with(|t| t.devices(user, self.node));
        Box::pin(async move { Ok(devices) })
    }

    fn health(&self) -> CacheHealth {
        CacheHealth {
            backend: "memory",
            ok: true,
            detail: String::new(),
        }
    }
}
