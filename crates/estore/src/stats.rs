//! Counters an operator (and the tests) can read to see what the server did.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Times a subscription fell behind the bounded live feed and went back to reading from disk.
    pub subscriptions_fell_behind: AtomicU64,
}

impl Stats {
    pub fn subscriptions_fell_behind(&self) -> u64 {
        self.subscriptions_fell_behind.load(Ordering::Relaxed)
    }
}
