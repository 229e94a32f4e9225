//! Running statistics for `/stats` and `kbatch stats`: totals,
//! average batch size and wait, priority distribution, latency percentiles, error and timeout
//! rates, and where the time went (Kafka in, queue wait, inference, reply delivery).
//!
//! Invariant: every delivered outcome is counted exactly once, at delivery (the replier's
//! acknowledgement), so `/stats` agrees with what requesters received; percentiles come from an
//! HDR histogram (3 significant digits), not from histogram buckets.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::models::ModelsView;

use crate::config::OptimizationTarget;
use crate::tier::Tier;
use crate::wire::{Status, Timings};

/// What the adaptive batch-size controller knows (published by the batcher after each change),
/// for `/stats`, the metrics and the batcher's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdaptiveState {
    pub target: usize,
    pub enabled: bool,
    pub objective: OptimizationTarget,
    /// Requests per second dispatched over the last closed interval.
    pub throughput_rps: f64,
    /// EWMA of inference time per successful batch.
    pub batch_latency_ms: f64,
    /// Throughput estimate of the current target (0 when unknown or over the SLO).
    pub score: f64,
    pub adjustments: u64,
    pub last_reason: &'static str,
    /// Latest memory reading (host or GPU, the fuller), 0..=1; `None` = not sampled.
    pub memory_utilization: Option<f64>,
    /// Latest GPU utilization, 0..=1; `None` = no GPU.
    pub gpu_utilization: Option<f64>,
}

/// What the tier-aware intake decided from and what it decided (published by the consumer),
/// for `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeState {
    /// `priority_queueing.tier_aware_intake`.
    pub tier_aware: bool,
    /// A tier held back for a higher tier keeps fewer than this many records in flight (read
    /// again below half of it).
    pub share: usize,
    /// Highest priority first.
    pub tiers: Vec<IntakeTier>,
}

/// One tier topic in [`IntakeState`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntakeTier {
    pub tier: Tier,
    /// Records waiting in Kafka on this instance's partitions; `None` = not known yet.
    pub lag: Option<i64>,
    /// Read and not yet answered.
    pub in_flight: usize,
    /// Held back by the tier-aware intake.
    pub held: bool,
    /// Why it is held (`higher_tier_lag`, `higher_tier_lag_unknown`).
    pub reason: Option<&'static str>,
    /// The higher tier it is held back for.
    pub held_for: Option<Tier>,
    /// A higher tier has records waiting, but this one is read for its starvation share.
    pub reading_for_share: bool,
    /// Paused because its own queue (or the replier's) is full.
    pub paused_by_backpressure: bool,
    /// Holds started so far.
    pub holds: u64,
}

/// One delivered outcome, as the replier saw it acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// The tier it was served at (a dead letter: the tier of its topic).
    pub tier: Tier,
    /// `None`: a dead letter.
    pub status: Option<Status>,
    pub timings: Timings,
    /// Outcome ready → acknowledged by the broker, µs.
    pub reply_us: i64,
    /// A dead letter standing for a reply its topic refused (not an undecodable record).
    pub fallback: bool,
}

impl Delivered {
    /// Record timestamp → acknowledged, µs (saturating: the record timestamp is the producer's).
    pub fn end_to_end_us(&self) -> i64 {
        self.timings.end_to_end_us.saturating_add(self.reply_us)
    }
}

#[derive(Debug)]
struct Inner {
    by_status: [u64; Status::ALL.len()],
    dead_letters: u64,
    by_tier: [u64; 4],
    batches: u64,
    batched_requests: u64,
    /// Sums over OK replies, µs.
    kafka_in_us: u64,
    queue_wait_us: u64,
    inference_us: u64,
    /// Sum over every delivery, µs.
    reply_us: u64,
    end_to_end: Histogram<u64>,
    adaptive: Option<AdaptiveState>,
    intake: Option<IntakeState>,
    models: Option<ModelsView>,
}

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    inner: Mutex<Inner>,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Average time per OK request in each stage, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Breakdown {
    /// Record timestamp → admitted by kbatch (broker, fetch, decode).
    pub kafka_in_ms: f64,
    /// Admitted → its batch started (queueing and batch formation).
    pub queue_wait_ms: f64,
    pub inference_ms: f64,
    /// Outcome ready → reply acknowledged by the broker.
    pub reply_ms: f64,
}

/// What `/stats` returns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatsSnapshot {
    pub uptime_s: f64,
    pub total_requests: u64,
    pub completed_ok: u64,
    pub dead_letters: u64,
    /// Delivered replies per status symbol.
    pub by_status: Vec<(String, u64)>,
    /// Non-OK outcomes (dead letters included) over all outcomes.
    pub error_rate: f64,
    /// DEADLINE_EXCEEDED over all outcomes.
    pub timeout_rate: f64,
    pub throughput_rps: f64,
    pub batches: u64,
    pub average_batch_size: f64,
    pub average_wait_ms: f64,
    /// Outcomes per tier, and their share.
    pub priority_distribution: Vec<(String, u64, f64)>,
    pub latency_ms: Percentiles,
    pub time_breakdown: Breakdown,
    pub adaptive: Option<AdaptiveState>,
    pub intake: Option<IntakeState>,
    /// The model registry: every model, its versions and their state.
    pub models: Option<ModelsView>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                by_status: [0; Status::ALL.len()],
                dead_letters: 0,
                by_tier: [0; 4],
                batches: 0,
                batched_requests: 0,
                kafka_in_us: 0,
                queue_wait_us: 0,
                inference_us: 0,
                reply_us: 0,
                // 1 µs .. 1 h at 3 digits: a few tens of KiB, allocated once.
                end_to_end: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
                adaptive: None,
                intake: None,
                models: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one delivery; returns the number of outcomes delivered so far.
    pub fn delivered(&self, d: &Delivered) -> u64 {
        let us = |v: i64| v.max(0) as u64;
        let mut s = self.lock();
        match d.status {
            Some(st) => s.by_status[st as usize] += 1,
            None => s.dead_letters += 1,
        }
        s.by_tier[d.tier.index()] += 1;
        // Saturating sums: end-to-end time starts at a timestamp the producer chose.
        s.reply_us = s.reply_us.saturating_add(us(d.reply_us));
        if d.status == Some(Status::Ok) {
            let t = d.timings;
            s.queue_wait_us = s.queue_wait_us.saturating_add(us(t.queue_wait_us));
            s.inference_us = s.inference_us.saturating_add(us(t.inference_us));
            let kafka_in = t
                .end_to_end_us
                .saturating_sub(t.queue_wait_us)
                .saturating_sub(t.inference_us);
            s.kafka_in_us = s.kafka_in_us.saturating_add(us(kafka_in));
        }
        s.end_to_end.saturating_record(us(d.end_to_end_us()).max(1));
        s.by_status.iter().sum::<u64>() + s.dead_letters
    }

    pub fn batch(&self, size: usize) {
        let mut s = self.lock();
        s.batches += 1;
        s.batched_requests += size as u64;
    }

    pub fn set_adaptive(&self, a: AdaptiveState) {
        self.lock().adaptive = Some(a);
    }

    pub fn set_intake(&self, i: IntakeState) {
        self.lock().intake = Some(i);
    }

    pub fn set_models(&self, m: ModelsView) {
        self.lock().models = Some(m);
    }

    /// The registry's last report, if it made one.
    pub fn models(&self) -> Option<ModelsView> {
        self.lock().models.clone()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let s = self.lock();
        let uptime = self.started.elapsed().as_secs_f64();
        let total = s.by_status.iter().sum::<u64>() + s.dead_letters;
        let ok = s.by_status[Status::Ok as usize];
        let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let ms = |sum: u64, n: u64| ratio(sum, n) / 1000.0;
        let q = |p: f64| s.end_to_end.value_at_quantile(p) as f64 / 1000.0;
        StatsSnapshot {
            uptime_s: uptime,
            total_requests: total,
            completed_ok: ok,
            dead_letters: s.dead_letters,
            by_status: Status::ALL
                .iter()
                .map(|st| (st.as_str().to_owned(), s.by_status[*st as usize]))
                .collect(),
            error_rate: ratio(total - ok, total),
            timeout_rate: ratio(s.by_status[Status::DeadlineExceeded as usize], total),
            throughput_rps: if uptime > 0.0 {
                total as f64 / uptime
            } else {
                0.0
            },
            batches: s.batches,
            average_batch_size: ratio(s.batched_requests, s.batches),
            average_wait_ms: ms(s.queue_wait_us, ok),
            priority_distribution: Tier::ALL
                .iter()
                .map(|t| {
                    let n = s.by_tier[t.index()];
                    (t.as_str().to_owned(), n, ratio(n, total))
                })
                .collect(),
            latency_ms: Percentiles {
                p50: q(0.5),
                p95: q(0.95),
                p99: q(0.99),
                max: s.end_to_end.max() as f64 / 1000.0,
            },
            time_breakdown: Breakdown {
                kafka_in_ms: ms(s.kafka_in_us, ok),
                queue_wait_ms: ms(s.queue_wait_us, ok),
                inference_ms: ms(s.inference_us, ok),
                reply_ms: ms(s.reply_us, total),
            },
            adaptive: s.adaptive.clone(),
            intake: s.intake.clone(),
            models: s.models.clone(),
        }
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
