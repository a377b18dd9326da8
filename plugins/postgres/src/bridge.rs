//! How the synchronous storage ports reach the asynchronous PostgreSQL client.
//!
//! The ports are called from three kinds of threads: the committer's own thread (no runtime),
//! blocking-pool threads (`spawn_blocking`: account removal, shutdown), and — for queue reads,
//! dequeues and group reads — straight from session tasks on the server's tokio workers. A
//! blocking client (the `postgres` crate) would panic in the last case (it runs a runtime of
//! its own inside `block_on`), and `Handle::block_on` of the caller's runtime panics there too.
//! So the adapter owns a small multi-thread runtime that drives every connection; a call spawns
//! its future there and waits for the answer on a plain channel. Waiting blocks the calling
//! thread, which is safe in every context because the future never needs the caller's runtime;
//! on a worker of a multi-thread runtime the wait goes through `block_in_place`, so tokio moves
//! that worker's other tasks elsewhere meanwhile (as it must for any blocking store call).
//! Every call has a timeout, so a server that stops answering fails calls instead of hanging
//! the committer.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::error::PgError;

/// The adapter's runtime.
pub struct Bridge {
    /// Taken at drop, to shut it down without blocking (dropping a runtime inside another
    /// runtime's task would panic).
    runtime: Option<Runtime>,
    /// The longest a call may take.
    timeout: Duration,
}

impl Bridge {
    /// A runtime of `threads` workers; calls give up after `timeout`.
    pub fn new(threads: usize, timeout: Duration) -> Result<Bridge, PgError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("chatd-postgres")
            .enable_all()
            .build()
            .map_err(|e| PgError::Runtime(format!("cannot start its runtime: {e}")))?;
        Ok(Bridge {
            runtime: Some(runtime),
            timeout,
        })
    }

    /// Runs `future` on the adapter's runtime and waits for its answer from any thread.
    pub fn run<T, F>(&self, future: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PgError>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| PgError::Runtime("shut down".into()))?;
        let (tx, rx) = mpsc::sync_channel(1);
        let timeout = self.timeout;
        runtime.spawn(async move {
            let answer = match tokio::time::timeout(timeout, future).await {
                Ok(answer) => answer,
                Err(_) => Err(PgError::Timeout(timeout)),
            };
            // The caller may be gone (it panicked): nobody to tell.
            let _ = tx.send(answer);
        });
        let wait = move || {
            rx.recv()
                .map_err(|_| PgError::Runtime("a call ended without an answer".into()))?
        };
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
