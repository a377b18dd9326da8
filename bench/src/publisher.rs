//! The sending side of one client: paced QoS 1 publishes within an in-flight window.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{watch, Semaphore};

use crate::clock::now_ns;
use crate::control::{stopped, Progress};
use crate::pace::Pacer;

/// Publishes `messages` messages to one topic. Before each publish it waits for its [`Pacer`]
/// and takes a permit from `window`; whoever sees the message confirmed (ack or PUBACK) must give
/// the permit back with `window.add_permits(1)`. Closing `window` stops the publisher.
pub struct Publisher {
    /// Client to publish with.
    pub client: AsyncClient,
    /// Topic of every message.
    pub topic: String,
    /// Un-confirmed messages allowed (a semaphore with the in-flight limit as permits).
    pub window: Arc<Semaphore>,
    /// Rate limit.
    pub pacer: Pacer,
    /// Messages to send.
    pub messages: u64,
}

impl Publisher {
    /// Runs until all messages are handed to the client, the window is closed, the client is
    /// gone or `stop` is raised. `body(seq, now_ns)` builds the payload of message `seq`.
    /// Returns the number of messages handed to the client.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        progress: Arc<Progress>,
        mut body: impl FnMut(u64, u64) -> Vec<u8>,
    ) -> u64 {
        let mut sent = 0;
        {
            let stop_fut = stopped(&mut stop);
            tokio::pin!(stop_fut);
            for seq in 0..self.messages {
                tokio::select! {
                    biased;
                    _ = &mut stop_fut => break,
                    _ = self.pacer.wait() => {}
                }
                let permit = tokio::select! {
                    biased;
                    _ = &mut stop_fut => break,
                    permit = self.window.acquire() => permit,
                };
                match permit {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                let payload = body(seq, now_ns());
                if self
                    .client
                    .publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
                Progress::bump(&progress.published);
            }
        }
        progress.senders_done.fetch_add(1, Ordering::Relaxed);
        sent
    }
}
