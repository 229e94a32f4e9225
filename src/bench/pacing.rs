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
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_absolute() {
        let p = Pacer::new(1000.0, 10_000);
        assert_eq!(p.due_by(Duration::ZERO), 1);
        assert_eq!(p.due_by(Duration::from_micros(999)), 1);
        assert_eq!(p.due_by(Duration::from_millis(1)), 2);
        assert_eq!(p.due_by(Duration::from_millis(250)), 251);
        // Falling behind means a catch-up burst, not a shifted schedule.
        assert_eq!(p.due_by(Duration::from_secs(3)), 3001);
        assert_eq!(p.due_by(Duration::from_secs(60)), 10_000);
        assert_eq!(p.due_at(0), Duration::ZERO);
        assert_eq!(p.due_at(500), Duration::from_millis(500));
        assert_eq!(p.span(), Duration::from_millis(9999));
    }

    #[test]
    fn due_by_and_due_at_agree_at_every_send() {
        for rate in [3.0, 7.0, 333.0, 12_345.0] {
            let p = Pacer::new(rate, 1000);
            for i in 0..1000 {
                assert!(
                    p.due_by(p.due_at(i)) > i,
                    "rate {rate}: send {i} not due at its time"
                );
            }
        }
    }

    #[test]
    fn unpaced_sends_everything_at_once() {
        for rate in [0.0, -1.0, f64::NAN] {
            let p = Pacer::new(rate, 500);
            assert!(!p.is_paced());
            assert_eq!(p.due_by(Duration::ZERO), 500);
            assert_eq!(p.due_at(499), Duration::ZERO);
        }
        assert_eq!(Pacer::new(100.0, 0).due_by(Duration::from_secs(1)), 0);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("").is_err());
    }
}
