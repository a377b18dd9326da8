//! What travels on the bus between nodes: one JSON object per Redis message, built from what
//! waits in a node's outbound queue.

use chatd_core::outbox::{Channel, Outgoing};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Items in one message at most.
pub const MAX_BATCH: usize = 4096;
/// Bytes of items in one message at most (user ids are short).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What a node has to tell the others.
pub enum Outbound {
    /// A delivery for a user's devices, on every node (this one once published).
    Item(Outgoing),
    /// A delivery for a user's devices on the other nodes only.
    Elsewhere(Outgoing),
    /// A user's first device on this node connected.
    On(String),
    /// A user's last device on this node went away at this time (ms since the epoch).
    Off(String, u64),
    /// Say who is online on you: every node (`None`: this node joined or came back), or one
    /// that this node had not heard from.
    Sync(Option<u16>),
    /// Answers wait for this mark (`held_answers`): nothing travels for it.
    Mark(u64),
}

/// A delivery as it travels.
#[derive(Serialize, Deserialize)]
pub struct WireItem {
    /// The user whose devices get it.
    pub u: String,
    /// The channel's name (`ack`, `inbox`, `typing`…).
    pub c: String,
    /// The payload (JSON text, as published).
    pub p: String,
    /// A client id that must not get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    /// Its id in the user's queue, when it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl WireItem {
    /// The delivery it carries; `None` for a channel this build does not know.
    pub fn into_outgoing(self) -> Option<Outgoing> {
        Some(Outgoing {
            channel: Channel::from_name(&self.c)?,
            user: self.u,
            payload: self.p.into(),
            queue_id: self.q,
            skip_client: self.s,
        })
    }
}

/// A user gone offline on the sending node.
#[derive(Serialize, Deserialize)]
pub struct WireOff {
    /// The user.
    pub u: String,
    /// Their last seen, ms since the epoch.
    pub t: u64,
}

/// One message on the channel. Every message, even an empty one, says the sending node is
/// alive (`cluster::peers`).
#[derive(Serialize, Deserialize, Default)]
pub struct WireMessage {
    /// The node that sent it.
    pub n: u16,
    /// The sending process's run (random at start): a new run of a node means its previous
    /// run's users are gone.
    pub r: u64,
    /// The sending run's number for this message, counting from 1 (0: none): the sender hands
    /// its own deliveries to its sessions when it hears it (`local_echo.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub k: u64,
    /// Deliveries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub i: Vec<WireItem>,
    /// Users whose first device on the sending node connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// Users whose last device on the sending node went away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub off: Vec<WireOff>,
    /// Every node should say who is online on it (`on`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync: bool,
    /// These nodes should say who is online on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask: Vec<u16>,
    /// Every node should make every session read its queue (deliveries were lost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

fn is_zero(k: &u64) -> bool {
    *k == 0
}

/// What the publisher takes from its queue at once.
pub struct Batch {
    /// What goes to the other nodes.
    pub message: WireMessage,
    /// The last mark taken: passed once the message is published (or given up on).
    pub mark: Option<u64>,
    /// The deliveries, for this node's own sessions.
    pub local: Vec<Outgoing>,
}

impl WireMessage {
    /// Whether it tells nothing but that its node is alive.
    pub fn is_empty(&self) -> bool {
        self.i.is_empty()
            && self.on.is_empty()
            && self.off.is_empty()
            && !self.sync
            && self.ask.is_empty()
            && !self.all
    }
}

/// Takes what waits into one message: `first`, then whatever else is ready, in order (a
/// user's `on` and `off` keep their order, which is all presence needs).
pub fn batch(node: u16, run: u64, first: Outbound, rx: &mut mpsc::Receiver<Outbound>) -> Batch {
    let mut message = WireMessage {
        n: node,
        r: run,
        ..WireMessage::default()
    };
    let mut bytes = 0;
    let mut count = 0;
    let mut mark = None;
    let mut local = Vec::new();
    let mut next = Some(first);
    while let Some(outbound) = next.take() {
        count += 1;
        match outbound {
            Outbound::Item(item) => {
                bytes += add_item(&mut message, &item);
                local.push(item);
            }
            Outbound::Elsewhere(item) => bytes += add_item(&mut message, &item),
            Outbound::On(user) => {
                // An `off` earlier in this batch is overtaken: the user is back.
                message.off.retain(|off| off.u != user);
                bytes += user.len();
                message.on.push(user);
            }
            Outbound::Off(user, t) => {
                message.on.retain(|on| *on != user);
                bytes += user.len();
                message.off.push(WireOff { u: user, t });
            }
            Outbound::Sync(None) => message.sync = true,
            Outbound::Sync(Some(node)) => {
                if !message.ask.contains(&node) {
                    message.ask.push(node);
                }
            }
            Outbound::Mark(m) => mark = Some(m),
        }
        if count < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            next = rx.try_recv().ok();
        }
    }
    Batch {
        message,
        mark,
        local,
    }
}

/// Adds `item` to `message`; returns about how many bytes it takes.
fn add_item(message: &mut WireMessage, item: &Outgoing) -> usize {
    // Payloads are JSON the server built; one that is not text cannot travel.
    let Ok(payload) = std::str::from_utf8(&item.payload) else {
        return 0;
    };
    message.i.push(WireItem {
        c: item.channel.name().to_string(),
        p: payload.to_string(),
        s: item.skip_client.clone(),
        q: item.queue_id.clone(),
        u: item.user.clone(),
    });
    payload.len() + item.user.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_of_a_users_changes_in_a_batch_wins() {
        let (tx, mut rx) = mpsc::channel(8);
        for o in [
            Outbound::Off("bob".into(), 5),
            Outbound::On("bob".into()),
            Outbound::On("carol".into()),
            Outbound::Off("carol".into(), 7),
        ] {
            assert!(tx.try_send(o).is_ok());
        }
        let first = rx.try_recv().ok().map_or(Outbound::Sync(None), |o| o);
        let Batch {
            message: m, mark, ..
        } = batch(3, 9, first, &mut rx);
        assert_eq!(mark, None);
        assert_eq!((m.n, m.r), (3, 9));
        assert_eq!(m.on, vec!["bob".to_string()]);
        assert_eq!(m.off.len(), 1);
        assert_eq!((m.off[0].u.as_str(), m.off[0].t), ("carol", 7));
    }
}
