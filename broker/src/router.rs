//! The embedded rumqttd router: topic matching, fan-out and retained messages for the topics that
//! are read by many users (`presence/{user}`).
//!
//! chatd terminates client connections itself and hands rumqttd only what rumqttd does well.
//! Per-user topics stay out of it: its router scans every filter when a topic first appears, which
//! is quadratic with a topic per user (see `docs/architecture.md`). Segments are kept small because
//! the router holds them in memory per filter and the store is the only source of truth.

use std::sync::atomic::{AtomicU64, Ordering};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, RouterConfig};

/// The router refused or could not create a link.
#[derive(Debug, thiserror::Error)]
#[error("router link failed: {0}")]
pub struct RouterError(String);

/// A handle to the router thread.
pub struct Router {
    broker: Broker,
    next_link: AtomicU64,
}

impl Router {
    /// Starts the router thread, sized for `max_connections` links.
    pub fn start(max_connections: usize) -> Router {
        let config = Config {
            id: 0,
            router: RouterConfig {
                // Links are created lazily, only by sessions that read router topics.
                max_connections: max_connections.min(1 << 20),
                max_outgoing_packet_count: 200,
                max_segment_size: 64 * 1024,
                max_segment_count: 4,
                ..RouterConfig::default()
            },
            ..Config::default()
        };
        Router {
            broker: Broker::new(config),
            next_link: AtomicU64::new(0),
        }
    }

    /// A new local link for a session. Router client ids are made unique per link (`~` never
    /// appears in a chatd client id, and rumqttd refuses `+ $ # /`) so that a
    /// takeover (two links for one MQTT client id for a moment) never confuses the router.
    pub fn link(&self, client_id: &str) -> Result<(LinkTx, LinkRx), RouterError> {
        let n = self.next_link.fetch_add(1, Ordering::Relaxed);
        self.broker
            .link(&format!("{client_id}~{n}"))
            .map_err(|e| RouterError(e.to_string()))
    }
}
