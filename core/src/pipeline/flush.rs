//! Why the batcher closed a batch: the `flush_reason` label of `kbatch_batcher_batches_total`,
//! the batch span's field and the batcher report's breakdown.
//!
//! Invariant: every batch has exactly one reason, and the set is closed, so the metric's label
//! values are known before the first batch (exported at zero from the start).

use std::fmt;

use serde::Serialize;

/// Why a batch was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushReason {
    /// It reached the target size or the byte bound.
    Full,
    /// A queued request's tier wait ran out with at least `min_batch_size` queued.
    Wait,
    /// The oldest request waited `batch_timeout` (whatever the batch's size).
    Timeout,
    /// Shutdown: everything still queued is flushed.
    Drain,
}

impl FlushReason {
    pub const ALL: [FlushReason; 4] = [
        FlushReason::Full,
        FlushReason::Wait,
        FlushReason::Timeout,
        FlushReason::Drain,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Full => "full",
            FlushReason::Wait => "wait",
            FlushReason::Timeout => "timeout",
            FlushReason::Drain => "drain",
        }
    }

    /// Position in `ALL` (an index into per-reason counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Batches closed per reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushCounts([u64; 4]);

impl FlushCounts {
    pub fn add(&mut self, reason: FlushReason) {
        self.0[reason.index()] += 1;
    }

    /// Sets the count of `reason` (a report built from elsewhere, a test).
    pub fn set(&mut self, reason: FlushReason, count: u64) {
        self.0[reason.index()] = count;
    }

    pub fn get(&self, reason: FlushReason) -> u64 {
        self.0[reason.index()]
    }

    /// Every reason with its count, in `FlushReason::ALL` order (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (FlushReason, u64)> + '_ {
        FlushReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

#[cfg(test)]
#[path = "flush_tests.rs"]
mod tests;
