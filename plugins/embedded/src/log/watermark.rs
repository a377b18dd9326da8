//! The committed watermark: the highest id whose batch is durably stored.
//!
//! Queue and history reads stop at it, so nobody sees a message that was applied to the store
//! but might still be lost (its flush has not returned, or failed): the store itself shows
//! applied writes at once, whether flushed or not.

use std::sync::Mutex;

/// The highest committed id (empty before the first one).
#[derive(Debug, Default)]
pub(super) struct Watermark(Mutex<String>);

impl Watermark {
    /// A watermark starting at `id` (the newest id found at open).
    pub(super) fn new(id: String) -> Watermark {
        Watermark(Mutex::new(id))
    }

    /// The current watermark.
    pub(super) fn get(&self) -> String {
        self.lock().clone()
    }

    /// Moves the watermark up to `id`; never moves it down.
    pub(super) fn advance(&self, id: &str) {
        let mut current = self.lock();
        if id > current.as_str() {
            *current = id.to_string();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        // A plain string: a poisoned lock holds nothing broken.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
