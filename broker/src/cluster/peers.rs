//! Which other nodes are alive: a node that has not been heard from (every message on the bus
//! counts) for `redis.ttl_secs` is taken for dead, and so is a node heard from with a new run
//! (it restarted): either way, none of its users' devices are on it any more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What hearing from a node means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Heard before, same run.
    Known,
    /// Not heard from before (or not since it was taken for dead): ask who is online on it.
    New,
    /// A new run of a node heard before: its previous run's users are gone; ask again.
    Restarted,
}

/// The last word from each other node.
pub struct Peers {
    ttl: Duration,
    heard: Mutex<HashMap<u16, (u64, Instant)>>,
}

impl Peers {
    /// Nodes are dead after `ttl` of silence.
    pub fn new(ttl: Duration) -> Peers {
        Peers {
            ttl,
            heard: Mutex::new(HashMap::new()),
        }
    }

    /// Node `node` spoke now, in run `run`.
    pub fn heard(&self, node: u16, run: u64) -> Heard {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        match heard.insert(node, (run, Instant::now())) {
            None => Heard::New,
            Some((before, _)) if before != run => Heard::Restarted,
            Some(_) => Heard::Known,
        }
    }

    /// The nodes silent for longer than the TTL, forgotten as they are returned.
    pub fn silent(&self) -> Vec<u16> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let gone: Vec<u16> = heard
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > self.ttl)
            .map(|(node, _)| *node)
            .collect();
        for node in &gone {
            heard.remove(node);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_and_silence_both_end_a_node() {
        let peers = Peers::new(Duration::from_millis(50));
        assert_eq!(peers.heard(2, 7), Heard::New);
        assert_eq!(peers.heard(2, 7), Heard::Known);
        assert_eq!(peers.heard(2, 8), Heard::Restarted);
        assert!(peers.silent().is_empty());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(peers.silent(), vec![2]);
        assert!(peers.silent().is_empty());
        assert_eq!(
            peers.heard(2, 8),
            Heard::New,
            "heard again after being taken for dead"
        );
    }
}
