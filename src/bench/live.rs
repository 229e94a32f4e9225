//! The live view of a run: per-interval rate, latency per tier and statuses, printed every second
//! by the bench and the demo.
//!
//! Invariant: a snapshot describes one interval only (rate, percentiles, batch mean) plus the
//! run's totals so far; the collector starts a new interval with each snapshot.

use std::fmt;
use std::time::Duration;

use kbatch_core::tier::Tier;
use kbatch_core::wire::Status;

/// One tier's latency over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLive {
    pub tier: Tier,
    /// Replies in the interval.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// What a run looks like right now (printed every second by the bench and the demo).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStats {
    /// Since the collector started.
    pub elapsed: Duration,
    /// Requests handed to the producer so far.
    pub sent: u64,
    /// Requests answered so far (first replies).
    pub answered: u64,
    /// Length of the interval the rate and percentiles cover.
    pub interval: Duration,
    pub interval_answered: u64,
    /// First replies by status so far (non-zero only).
    pub statuses: Vec<(Status, u64)>,
    /// Per-tier latency over the interval.
    pub tiers: [TierLive; 4],
    /// Mean `timings.batch_size` of OK replies in the interval.
    pub batch_mean: Option<f64>,
    pub duplicates: u64,
    pub unknown: u64,
}

impl LiveStats {
    /// Replies per second over the interval.
    pub fn rate(&self) -> f64 {
        let secs = self.interval.as_secs_f64();
        if secs > 0.0 {
            self.interval_answered as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LiveStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>6.1}s] sent {} answered {} ({:.0}/s)",
            self.elapsed.as_secs_f64(),
            self.sent,
            self.answered,
            self.rate()
        )?;
        f.write_str(" | p50/p99 ms:")?;
        for t in &self.tiers {
            if t.count == 0 {
                write!(f, " {} -", t.tier.as_str())?;
            } else {
                write!(
                    f,
                    " {} {:.1}/{:.1}",
                    t.tier.as_str(),
                    t.p50_us as f64 / 1000.0,
                    t.p99_us as f64 / 1000.0
                )?;
            }
        }
        if let Some(b) = self.batch_mean {
            write!(f, " | batch {b:.1}")?;
        }
        f.write_str(" |")?;
        for (s, n) in &self.statuses {
            write!(f, " {}={n}", s.as_str())?;
        }
        if self.duplicates > 0 {
            write!(f, " dup={}", self.duplicates)?;
        }
        if self.unknown > 0 {
            write!(f, " unknown={}", self.unknown)?;
        }
        Ok(())
    }
}
