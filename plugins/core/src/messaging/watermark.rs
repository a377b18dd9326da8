//! The committed watermark: the highest message id whose batch is durably stored.
//!
//! Readers of the queue and history stop at it, so nobody sees a message that was applied
//! to the store but might still be lost (its flush has not returned, or failed).

use std::sync::Mutex;

/// The highest committed message id (empty before the first message).
#[derive(Debug, Default)]
pub struct Watermark(Mutex<String>);

impl Watermark {
    /// A watermark starting at `id` (the newest message found at start-up).
    pub fn new(id: String) -> Watermark {
        Watermark(Mutex::new(id))
    }

    /// The current watermark.
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Moves the watermark up to `id`; never moves it down.
    pub fn advance(&self, id: &str) {
        let mut current = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if id > current.as_str() {
            *current = id.to_string();
        }
    }
}
