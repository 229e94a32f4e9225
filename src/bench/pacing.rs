//! Open-loop pacing on an absolute schedule.
//!
//! Invariant: send `i` is due at `start + i / rate`, whatever happened before it; a sender that
//! fell behind catches up in one burst instead of shifting the rest of the schedule (no drift,
//! and slow replies never slow the offered load down: no coordinated omission).

use std::time::Duration;

/// The schedule of `total` sends at `rate` per second (0: all due at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    rate: f64,
    total: u64,
}

impl Pacer {
    /// `rate` ≤ 0 (or not finite) means unpaced: everything is due at the start.
    pub fn new(rate: f64, total: u64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        Self { rate, total }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn is_paced(&self) -> bool {
        self.rate > 0.0
    }

    /// When send `i` is due, relative to the start.
    pub fn due_at(&self, i: u64) -> Duration {
        if self.rate == 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many sends are due `elapsed` after the start (send 0 is due at once).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        if self.rate == 0.0 {
            return self.total;
        }
        // A nanosecond of slack so float rounding never holds back a send that is due exactly
        // now (e.g. 3 × (1/3 s)).
        let n = ((elapsed.as_secs_f64() + 1e-9) * self.rate).floor() as u64;
        n.saturating_add(1).min(self.total)
    }

    /// Total duration of the schedule: when the last send is due.
    pub fn span(&self) -> Duration {
        self.due_at(self.total.saturating_sub(1))
    }
}

/// Parses `20s`, `1.5s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}`: expected e.g. 20s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "duration `{s}`: unknown unit `{other}` (ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration `{s}`: {e}"))
}

#[cfg(test)]
#[path = "pacing_tests.rs"]
mod tests;
