//! Bounds the sockets one source address may hold open before their CONNECT is answered.
//!
//! Until CONNACK a socket costs a task, a file descriptor and a small buffer, and is not counted
//! by `limits.max_connections`; the CONNECT timeout ends each one, but a single host opening
//! sockets faster than they time out could otherwise use up the process's file descriptors and
//! lock everyone else out. Past `limits.max_handshakes_per_ip` pending sockets from one source
//! (see [`SourceKey`]), new ones are closed at once, before anything is read from them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::source_addr::SourceKey;

/// Pending handshakes per source address.
pub struct HandshakeGate {
    per_source: usize,
    pending: Arc<Mutex<HashMap<SourceKey, usize>>>,
}

/// A socket admitted by the gate: where it comes from, and its place among its source's pending
/// handshakes, given back when this is dropped (once CONNECT is answered or the socket ends).
pub struct Arrival {
    source: SourceKey,
    pending: Option<Arc<Mutex<HashMap<SourceKey, usize>>>>,
}

impl Arrival {
    /// The source address limits count this connection against.
    pub fn source(&self) -> SourceKey {
        self.source
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            let mut map = lock(&pending);
            if let Some(n) = map.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.source);
                }
            }
        }
    }
}

fn lock(m: &Mutex<HashMap<SourceKey, usize>>) -> MutexGuard<'_, HashMap<SourceKey, usize>> {
    // Counts stay consistent whatever panicked while the lock was held.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HandshakeGate {
    /// A gate letting `per_source` handshakes be pending per source address (0: no limit).
    pub fn new(per_source: usize) -> HandshakeGate {
        HandshakeGate {
            per_source,
            pending: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Admits a new socket from `ip`, or `None` when its source already has the maximum of
    /// pending handshakes.
    pub fn arrive(&self, ip: IpAddr) -> Option<Arrival> {
        let source = SourceKey::of(ip);
        if self.per_source == 0 {
            return Some(Arrival {
                source,
                pending: None,
            });
        }
        let mut map = lock(&self.pending);
        let n = map.entry(source).or_insert(0);
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(Arrival {
            source,
            pending: Some(self.pending.clone()),
        })
    }

    /// Sources with pending handshakes (for tests and diagnostics).
    #[cfg(test)]
    fn sources(&self) -> usize {
        lock(&self.pending).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_handshakes_are_bounded_per_source_and_given_back() {
        let gate = HandshakeGate::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = gate.arrive(ip).unwrap();
        let b = gate.arrive(ip).unwrap();
        assert!(gate.arrive(ip).is_none());
        assert!(gate.arrive("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        let c = gate.arrive(ip).unwrap();
        drop((b, c));
        assert_eq!(gate.sources(), 0);
    }

    #[test]
    fn zero_means_no_limit() {
        let gate = HandshakeGate::new(0);
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        let all: Vec<_> = (0..1000).filter_map(|_| gate.arrive(ip)).collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(gate.sources(), 0);
    }
}
