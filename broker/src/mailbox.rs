//! A bounded queue with one reader that allocates nothing until something is queued and gives
//! its memory back once drained: an idle session's delivery queue costs a few words, not a
//! preallocated block of slots. Pushing never waits; a full queue refuses the item.
//!
//! "Full" is counted twice: in items and in bytes. Each item comes with its weight (what it
//! keeps in memory), and the byte budget is shared with bytes the reader holds elsewhere (a
//! session's messages in flight), so one budget bounds both.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// A bounded queue read by one task.
pub struct Mailbox<T> {
    queue: Mutex<Queue<T>>,
    ready: Notify,
    capacity: usize,
    max_bytes: usize,
}

/// The items with their weights, and the sum of those weights.
struct Queue<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
}

impl<T> Mailbox<T> {
    /// An empty mailbox holding at most `capacity` items weighing at most `max_bytes` together
    /// (with what [`Mailbox::try_push`] is told is held elsewhere).
    pub fn new(capacity: usize, max_bytes: usize) -> Mailbox<T> {
        Mailbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
            }),
            ready: Notify::new(),
            capacity,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // The queue is consistent between any two operations, so a panic elsewhere while the
        // lock was held leaves nothing half-done.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` of `weight` bytes, or hands it back when the mailbox is full: it holds
    /// `capacity` items, or its bytes plus `elsewhere` would pass `max_bytes`. An item heavier
    /// than the whole budget is taken only when nothing is held at all, so it can still pass
    /// alone and the budget is never exceeded by more than that one item.
    pub fn try_push(&self, item: T, weight: usize, elsewhere: usize) -> Result<(), T> {
        {
            let mut queue = self.lock();
            let held = queue.bytes.saturating_add(elsewhere);
            if queue.items.len() >= self.capacity
                || (held > 0 && held.saturating_add(weight) > self.max_bytes)
            {
                return Err(item);
            }
            queue.bytes += weight;
            queue.items.push_back((item, weight));
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest item, if any; the queue's memory is released when this empties it.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = self.lock();
        let (item, weight) = queue.items.pop_front()?;
        queue.bytes -= weight;
        if queue.items.is_empty() && queue.items.capacity() > 0 {
            queue.items = VecDeque::new();
        }
        Some(item)
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

    /// The weight of the items waiting, in bytes.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Items waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn refuses_past_capacity_and_keeps_order() {
        let mailbox = Mailbox::new(3, usize::MAX);
        for i in 0..3 {
            assert!(mailbox.try_push(i, 1, 0).is_ok());
        }
        assert_eq!(mailbox.try_push(3, 1, 0), Err(3));
        assert_eq!(mailbox.waiting(), 3);
        assert_eq!(mailbox.try_pop(), Some(0));
        assert!(mailbox.try_push(4, 1, 0).is_ok());
        let rest: Vec<_> = std::iter::from_fn(|| mailbox.try_pop()).collect();
        assert_eq!(rest, vec![1, 2, 4]);
    }

    #[test]
    fn allocates_nothing_while_empty() {
        let mailbox = Mailbox::new(256, usize::MAX);
        assert_eq!(mailbox.lock().items.capacity(), 0);
        for i in 0..100 {
            assert!(mailbox.try_push(i, 10, 0).is_ok());
        }
        assert_eq!(mailbox.bytes(), 1000);
        while mailbox.try_pop().is_some() {}
        assert_eq!(mailbox.lock().items.capacity(), 0);
        assert_eq!(mailbox.bytes(), 0);
    }

    #[test]
    fn refuses_past_its_bytes_counting_what_is_held_elsewhere() {
        let mailbox = Mailbox::new(256, 100);
        assert!(mailbox.try_push("a", 60, 0).is_ok());
        assert_eq!(mailbox.try_push("b", 41, 0), Err("b"));
        assert!(mailbox.try_push("b", 40, 0).is_ok());
        assert_eq!(mailbox.bytes(), 100);
        assert_eq!(mailbox.try_pop(), Some("a"));
        // 40 here and 50 held elsewhere (in flight): 11 more would pass the budget.
        assert_eq!(mailbox.try_push("c", 11, 50), Err("c"));
        assert!(mailbox.try_push("c", 10, 50).is_ok());
        while mailbox.try_pop().is_some() {}
        // Heavier than the whole budget: only when nothing at all is held.
        assert_eq!(mailbox.try_push("big", 500, 1), Err("big"));
        assert!(mailbox.try_push("big", 500, 0).is_ok());
        assert_eq!(mailbox.try_push("d", 1, 0), Err("d"));
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_and_survives_cancellation() {
        let mailbox = Arc::new(Mailbox::new(8, usize::MAX));
        // A cancelled wait takes nothing.
        let waited = tokio::time::timeout(Duration::from_millis(20), mailbox.pop()).await;
        assert!(waited.is_err());
        let pusher = mailbox.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pusher.try_push("hello", 5, 0).map_err(|_| "full")
        });
        assert_eq!(mailbox.pop().await, "hello");
        assert_eq!(task.await.ok(), Some(Ok(())));
        assert_eq!(mailbox.waiting(), 0);
    }
}
