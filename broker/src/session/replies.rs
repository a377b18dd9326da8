//! The answers to a client's publishes, in the order the publishes arrived. Allocates nothing
//! while no publish is being answered, which is most of an idle session's life.

use std::future::Future;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;

/// Futures completed in the order they were pushed.
pub struct Replies<F: Future> {
    queue: Option<FuturesOrdered<F>>,
}

impl<F: Future> Replies<F> {
    /// None pending.
    pub fn new() -> Replies<F> {
        Replies { queue: None }
    }

    /// Adds a future behind the others.
    pub fn push_back(&mut self, future: F) {
        self.queue
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(future);
    }

    /// How many are pending.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, FuturesOrdered::len)
    }

    /// True when none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest one's output once it is ready; `None` when none is pending. Cancel-safe.
    pub async fn next(&mut self) -> Option<F::Output> {
        let output = self.queue.as_mut()?.next().await;
        if self.is_empty() {
            self.queue = None;
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_order_and_lets_go_when_empty() {
        let mut replies = Replies::new();
        assert!(replies.is_empty());
        assert_eq!(replies.next().await, None);
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        replies.push_back(Box::pin(async move { rx.await.unwrap_or(0) })
            as std::pin::Pin<Box<dyn Future<Output = u32> + Send>>);
        replies.push_back(Box::pin(async { 2 }));
        assert_eq!(replies.len(), 2);
        let _ = tx.send(1);
        assert_eq!(replies.next().await, Some(1));
        assert_eq!(replies.next().await, Some(2));
        assert!(replies.queue.is_none());
    }
}
