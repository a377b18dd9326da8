//! A bounded queue with one reader that allocates nothing until something is queued and gives
//! its memory back once drained: an idle session's delivery queue costs a few words, not a
//! preallocated block of slots. Pushing never waits; a full queue refuses the item.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// A bounded queue read by one task.
pub struct Mailbox<T> {
    queue: Mutex<VecDeque<T>>,
    ready: Notify,
    capacity: usize,
}

impl<T> Mailbox<T> {
    /// An empty mailbox holding at most `capacity` items.
    pub fn new(capacity: usize) -> Mailbox<T> {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // The queue is consistent between any two operations, so a panic elsewhere while the
        // lock was held leaves nothing half-done.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`, or hands it back when the mailbox is full.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        {
            let mut queue = self.lock();
            if queue.len() >= self.capacity {
                return Err(item);
            }
            queue.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item, if any; the queue's memory is released when this empties it.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = self.lock();
        let item = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            *queue = VecDeque::new();
        }
        item
    }

    /// Waits for the oldest item. Cancel-safe: an item is only taken when this returns it.
    pub async fn pop(&self) -> T {
        loop {
            if let Some(item) = self.try_pop() {
                return item;
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check above
            // and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// Items waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn refuses_past_capacity_and_keeps_order() {
        let mailbox = Mailbox::new(3);
        for i in 0..3 {
            assert!(mailbox.try_push(i).is_ok());
        }
        assert_eq!(mailbox.try_push(3), Err(3));
        assert_eq!(mailbox.waiting(), 3);
        assert_eq!(mailbox.try_pop(), Some(0));
        assert!(mailbox.try_push(4).is_ok());
        let rest: Vec<_> = std::iter::from_fn(|| mailbox.try_pop()).collect();
        assert_eq!(rest, vec![1, 2, 4]);
    }

    #[test]
    fn allocates_nothing_while_empty() {
        let mailbox = Mailbox::new(256);
        assert_eq!(mailbox.lock().capacity(), 0);
        for i in 0..100 {
            assert!(mailbox.try_push(i).is_ok());
        }
        while mailbox.try_pop().is_some() {}
        assert_eq!(mailbox.lock().capacity(), 0);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_and_survives_cancellation() {
        let mailbox = Arc::new(Mailbox::new(8));
        // A cancelled wait takes nothing.
        let waited = tokio::time::timeout(Duration::from_millis(20), mailbox.pop()).await;
        assert!(waited.is_err());
        let pusher = mailbox.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pusher.try_push("hello").map_err(|_| "full")
        });
        assert_eq!(mailbox.pop().await, "hello");
        assert_eq!(task.await.ok(), Some(Ok(())));
        assert_eq!(mailbox.waiting(), 0);
    }
}
