//! Acks held back until the deliveries committed with them are published to the other nodes.
//!
//! A node used to answer a batch's senders as soon as it was committed, while its deliveries
//! still waited in the bus's queue: a client that had its ack and sent its next message on
//! another node could see that node's publish reach a third node first, whose devices then got
//! the two messages the wrong way round (or, once a device of the same user had acknowledged
//! the later one, a rescan of the queue missed it). So the committer hands its answers here
//! (`Deliver::answer`) after its deliveries: a numbered *mark* goes into the bus's queue behind
//! them, and the answers are sent once the publisher has passed the mark, that is once Redis
//! has answered the PUBLISH that carried the deliveries. Redis delivers a channel's messages
//! to each subscriber in the order it took them, and every node hands them to its sessions in
//! that order (its own too: `local_echo.rs`), so every device then gets this batch's
//! deliveries before anything sent after the ack.
//!
//! Redis is never the truth, and never holds up an ack for long: answers go at once while
//! publishing fails (the other nodes read their queues, told by `all`), and after
//! [`ANSWER_WAIT`] at the latest when a publish hangs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chatd_core::outbox::Answers;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long answers wait for their deliveries' publish at most. A healthy Redis on the same
/// network answers in well under a millisecond; past this the publish is taken for hanging.
pub const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// Answers waiting for mark `mark` until `deadline`.
struct Waiting {
    mark: u64,
    deadline: Instant,
    answers: Answers,
}

/// The answers of one node waiting for the publisher.
pub struct HeldAnswers {
    /// The last mark handed to the bus's queue; locked while a mark is queued, so that marks
    /// enter the queue in number order.
    last: Mutex<u64>,
    /// The highest mark the publisher has passed (published, or given up on).
    passed: watch::Sender<u64>,
    /// Publishing works: while it does not, answers are not held.
    healthy: AtomicBool,
    waiting: mpsc::UnboundedSender<Waiting>,
}

impl HeldAnswers {
    /// Starts the task that sends held answers; it runs until `stop` is cancelled, and then
    /// sends whatever still waits.
    pub fn start(stop: CancellationToken) -> HeldAnswers {
        let (passed, passed_rx) = watch::channel(0);
        let (waiting, rx) = mpsc::unbounded_channel();
        tokio::spawn(release(rx, passed_rx, stop));
        HeldAnswers {
            last: Mutex::new(0),
            passed,
            healthy: AtomicBool::new(true),
            waiting,
        }
    }

    /// Sends `answers` once the publisher has passed a mark that `queue_mark` puts in its queue
    /// (false when it could not: the queue is full); at once when publishing does not work.
    pub fn hold(&self, queue_mark: impl FnOnce(u64) -> bool, answers: Answers) {
        if !self.healthy.load(Ordering::Acquire) {
            answers();
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mark = *last + 1;
        if !queue_mark(mark) {
            drop(last);
            answers();
            return;
        }
        *last = mark;
        let waiting = Waiting {
            mark,
            deadline: Instant::now() + ANSWER_WAIT,
            answers,
        };
        drop(last);
        if let Err(mpsc::error::SendError(w)) = self.waiting.send(waiting) {
            // The release task is gone (shutting down): nothing will hold them.
            (w.answers)();
        }
    }

    /// The publisher is done with everything up to `mark`: published it, or could not.
    pub fn passed(&self, mark: u64) {
        self.passed.send_if_modified(|p| {
            let newer = mark > *p;
            if newer {
                *p = mark;
            }
            newer
        });
    }

    /// Whether the last publish worked; while it did not, answers are sent at once.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }
}

/// Sends each batch of answers, in order, once its mark is passed or its time is up.
async fn release(
    mut rx: mpsc::UnboundedReceiver<Waiting>,
    mut passed: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut slow_logged = false;
    loop {
        let w = tokio::select! {
            _ = stop.cancelled() => break,
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
        };
        let mark = w.mark;
        let done = tokio::select! {
            _ = stop.cancelled() => {
                (w.answers)();
                break;
            }
            done = timeout_at(w.deadline, passed.wait_for(|p| *p >= mark)) => done,
        };
        if done.is_err() && !slow_logged {
            warn!("cluster bus: a publish took over {ANSWER_WAIT:?}; acks no longer wait for it");
            slow_logged = true;
        } else if done.is_ok() {
            slow_logged = false;
        }
        (w.answers)();
    }
    // Shutting down: nobody is left to wait for.
    rx.close();
    while let Some(w) = rx.recv().await {
        (w.answers)();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    fn counter(n: &Arc<AtomicUsize>) -> Answers {
        let n = n.clone();
        Box::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn answers_wait_for_their_mark_but_never_long() {
        let held = HeldAnswers::start(CancellationToken::new());
        let sent = Arc::new(AtomicUsize::new(0));
        held.hold(|m| m == 1, counter(&sent));
        held.hold(|m| m == 2, counter(&sent));
        settle().await;
        assert_eq!(sent.load(Ordering::SeqCst), 0, "held until published");
        held.passed(1);
        settle().await;
        assert_eq!(sent.load(Ordering::SeqCst), 1, "the first mark is passed");
        let hanging = Instant::now();
        while sent.load(Ordering::SeqCst) < 2 {
            assert!(
                hanging.elapsed() < ANSWER_WAIT * 20,
                "a hanging publish holds no ack for long"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn answers_go_at_once_when_publishing_fails_or_the_queue_is_full() {
        let held = HeldAnswers::start(CancellationToken::new());
        let sent = Arc::new(AtomicUsize::new(0));
        held.hold(|_| false, counter(&sent));
        assert_eq!(sent.load(Ordering::SeqCst), 1, "no room for the mark");
        held.set_healthy(false);
        held.hold(|_| panic!("no mark while publishing fails"), counter(&sent));
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }
}
