//! A run second by second: latency percentiles per tier and the send and reply rates, the data
//! behind `kbatch bench --plot` and the report's `timeline`.
//!
//! Invariant: seconds count from the run's first send. In a paced run a request's latency lands
//! in the bucket of the second in which it was *sent* (so a tail that grows under load shows
//! where the load was); in a backlog, sent all at once, in the second in which it was
//! *answered* (else the whole drain is one point). Its first reply is counted in the second in
//! which it was received, and a send in the second in which it was sent; bucket `k` covers
//! `[k s, k + 1 s)`.
//!
//! Memory: per second, one histogram per tier that had a reply sent in it, with two significant
//! digits, 16 µs resolution below 4 ms and `u32` counts, grown only as far as the largest latency
//! recorded: about 3 KB per tier-second for tails under 65 ms, so an hour of four tiers stays
//! under 50 MB.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::report::PerTier;
use super::SendLog;
use kbatch_core::tier::Tier;

/// Width of a bucket.
pub const BUCKET: Duration = Duration::from_secs(1);

/// Smallest latency (µs) the per-second histograms tell apart from zero; below it they keep
/// 16 µs steps.
const LOW_US: u64 = 16;
/// Latencies above this (µs, one hour) are recorded as this, so a histogram never grows past it.
const MAX_US: u64 = 3_600_000_000;
/// Significant digits of the per-second histograms.
const SIGFIG: u8 = 2;

fn second_histogram() -> Histogram<u32> {
    let mut h = Histogram::new_with_bounds(LOW_US, 2 * LOW_US, SIGFIG)
        .expect("static histogram bounds are valid");
    h.auto(true);
    h
}

/// The bucket of `at` for a run whose first send was at `origin`.
pub fn bucket(origin: Instant, at: Instant) -> usize {
    (at.saturating_duration_since(origin).as_secs() / BUCKET.as_secs()) as usize
}

/// Which second a request's latency is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyBy {
    /// The second it was sent (paced runs).
    #[default]
    Send,
    /// The second its reply arrived (backlogs).
    Reply,
}

impl LatencyBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Reply => "reply",
        }
    }
}

/// The per-second tallies the collector keeps while a run goes.
#[derive(Debug, Clone, Default)]
pub struct Seconds {
    by: LatencyBy,
    /// End-to-end latency (µs) by send second, per tier (`Tier::ALL` order); `None` until a
    /// request of that tier sent in that second is answered.
    latency: Vec<[Option<Histogram<u32>>; 4]>,
    /// First replies by receive second.
    replies: Vec<u64>,
}

impl Seconds {
    pub fn new(by: LatencyBy) -> Self {
        Self {
            by,
            ..Self::default()
        }
    }

    /// One answered request of `tier`, sent in second `sent_s`, answered in second
    /// `received_s` after `us` microseconds.
    pub fn record(&mut self, tier: Tier, sent_s: usize, received_s: usize, us: u64) {
        let at = match self.by {
            LatencyBy::Send => sent_s,
            LatencyBy::Reply => received_s,
        };
        if self.latency.len() <= at {
            self.latency.resize_with(at + 1, Default::default);
        }
        let h = self.latency[at][tier.index()].get_or_insert_with(second_histogram);
        let us = us.min(MAX_US);
        if h.record(us).is_err() {
            // Only when `usize` cannot index a histogram up to an hour: keep the count anyway.
            h.saturating_record(us);
        }
        if self.replies.len() <= received_s {
            self.replies.resize(received_s + 1, 0);
        }
        self.replies[received_s] += 1;
    }

    /// The histogram of `tier`'s requests sent in second `s`, if any was answered.
    pub fn latency(&self, s: usize, tier: Tier) -> Option<&Histogram<u32>> {
        self.latency.get(s)?[tier.index()].as_ref()
    }

    /// First replies received in second `s`.
    pub fn replies(&self, s: usize) -> u64 {
        self.replies.get(s).copied().unwrap_or(0)
    }
}

/// Requests sent (and not failed) per second since `origin`, from the send log.
pub fn sends_per_second(log: &SendLog, origin: Instant) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for seq in 0..log.len() as u64 {
        if let Some(at) = log.sent_at(seq) {
            let s = bucket(origin, at);
            if out.len() <= s {
                out.resize(s + 1, 0);
            }
            out[s] += 1;
        }
    }
    out
}

/// One tier's requests sent in one second (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondLatency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl SecondLatency {
    fn of(h: &Histogram<u32>) -> Self {
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the second, in seconds since the first send (of the first step, for a step
    /// load).
    pub t_s: f64,
    /// Requests sent in this second (deliveries that failed are not counted).
    pub sent: u64,
    /// First replies received in this second.
    pub replies: u64,
    /// End-to-end latency of the requests sent in this second, per tier; `null` where none of
    /// the tier's was answered.
    pub latency: PerTier<Option<SecondLatency>>,
}

/// A labelled instant on the time axis (the start of a step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineMark {
    pub t_s: f64,
    pub label: String,
}

/// The per-second series of a run (or of every step of a step load on one time axis).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// Width of a point, in seconds.
    pub bucket_s: f64,
    /// Whether a point's latency is of the requests sent in its second or answered in it.
    #[serde(default)]
    pub latency_by: LatencyBy,
    /// One point per second, in time order.
    pub points: Vec<TimelinePoint>,
    /// Labelled instants (the steps' starts); none for a single run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<TimelineMark>,
}

impl Timeline {
    /// The points of one run: every second from 0 to the last one with a send or a reply.
    pub fn build(seconds: &Seconds, sent: &[u64]) -> Self {
        let len = seconds
            .latency
            .len()
            .max(seconds.replies.len())
            .max(sent.len());
        let points = (0..len)
            .map(|s| TimelinePoint {
                t_s: (s as u64 * BUCKET.as_secs()) as f64,
                sent: sent.get(s).copied().unwrap_or(0),
                replies: seconds.replies(s),
                latency: PerTier::from(
                    Tier::ALL.map(|t| seconds.latency(s, t).map(SecondLatency::of)),
                ),
            })
            .collect();
        Self {
            bucket_s: BUCKET.as_secs_f64(),
            latency_by: seconds.by,
            points,
            marks: Vec::new(),
        }
    }

    /// Several runs on one time axis: each run's points shifted by its start (seconds after the
    /// first run's first send), with a mark labelled `label` at each start.
    pub fn concat<'a>(parts: impl IntoIterator<Item = (f64, &'a Timeline, String)>) -> Self {
        let mut out = Self {
            bucket_s: BUCKET.as_secs_f64(),
            ..Self::default()
        };
        for (start, t, label) in parts {
            out.latency_by = t.latency_by;
            out.marks.push(TimelineMark { t_s: start, label });
            out.points.extend(t.points.iter().map(|p| TimelinePoint {
                t_s: start + p.t_s,
                ..p.clone()
            }));
        }
        out
    }

    /// Tiers with at least one latency point.
    pub fn tiers(&self) -> Vec<Tier> {
        Tier::ALL
            .into_iter()
            .filter(|&t| self.points.iter().any(|p| p.latency.get(t).is_some()))
            .collect()
    }

    /// End of the time axis: the start of the last point plus its width.
    pub fn end_s(&self) -> f64 {
        self.points
            .iter()
            .map(|p| p.t_s + self.bucket_s)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
