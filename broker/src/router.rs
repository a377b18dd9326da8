//! The embedded rumqttd router: it carries the topics read by many users (`presence/{user}`),
//! which reach their subscribers through one relay link (see `presence_relay.rs`).
//!
//! chatd terminates client connections itself and hands rumqttd only what rumqttd does well.
//! Per-user topics stay out of it: its router scans every filter when a topic first appears, which
//! is quadratic with a topic per user (see `docs/architecture.md`). Segments are kept small because
//! the router holds them in memory per filter and the store is the only source of truth.

use std::sync::atomic::{AtomicU64, Ordering};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, RouterConfig};

/// Links the router is sized for: chatd's own, not one per client.
const ROUTER_LINKS: usize = 16;

/// The router refused or could not create a link.
#[derive(Debug, thiserror::Error)]
#[error("router link failed: {0}")]
pub struct RouterError(String);

impl RouterError {
    /// An error with rumqttd's description of what went wrong.
    pub fn new(message: String) -> RouterError {
        RouterError(message)
    }
}

/// A handle to the router thread.
pub struct Router {
    broker: Broker,
    next_link: AtomicU64,
}

impl Router {
    /// Starts the router thread, sized for chatd's own few links.
    pub fn start() -> Router {
        let config = Config {
            id: 0,
            router: RouterConfig {
                // Two links: presence publishes on one and the relay reads the other.
                max_connections: ROUTER_LINKS,
                max_outgoing_packet_count: 200,
                // One filter carries every change: room for tens of thousands of them in flight.
                max_segment_size: 1024 * 1024,
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

    /// A new local link named after `client_id`, made unique with a counter (rumqttd refuses
    /// `+ $ # /` in ids, and two links of one name would confuse it).
    pub fn link(&self, client_id: &str) -> Result<(LinkTx, LinkRx), RouterError> {
        let n = self.next_link.fetch_add(1, Ordering::Relaxed);
        self.broker
            .link(&format!("{client_id}~{n}"))
            .map_err(|e| RouterError(e.to_string()))
    }
}
