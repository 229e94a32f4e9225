//! The adaptive batch-size controller: picks the target batch size (the batcher's cap) from
//! measured batch behaviour. Pure state, no I/O and no clock of its own: every method that needs
//! time takes `now`, so the rules are unit-tested with explicit instants.
//!
//! Rule. Dispatches are cut into intervals of at least `interval_requests` requests and
//! [`MIN_INTERVAL_BATCHES`] batches (one batch is one noisy sample, never a whole measurement).
//! An interval's throughput is the requests dispatched in it over its wall time: the pipeline's
//! rate, not the model's. Only a saturated interval (at least 75 % of its batches closed full and
//! no idle pipeline in it) says anything about capacity; any other interval holds the target.
//! On saturated intervals the controller hill-climbs: it multiplies or divides the target by
//! `scaling_factor`, keeps its direction while the per-size EWMA throughput stays within
//! [`NOISE_MARGIN`] of the best size of the current episode, reverses when it falls below, and
//! after two reversals (a bound counts as one) settles on the best fresh size; settled, it
//! re-probes one side, alternately, every [`REPROBE_INTERVALS`] intervals to follow drift. The
//! latency objective also forbids sizes whose EWMA batch inference time exceeds half the SLO
//! (reason `slo`). A failed batch (with `reduce_on_failure`), memory over its threshold or GPU
//! over `gpu_high` shrink the target at once, at most once per interval; GPU at or over `gpu_low`
//! or memory over its threshold forbids growth.
//!
//! Invariant: the target is always within [max(min_size, 1), max(max_size, that)], and equals
//! `max_size` while disabled; it changes only when an interval closes, after a failed batch, on a
//! resource reading over a threshold, or when `set_params` clamps it.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, OptimizationTarget};
use crate::telemetry::stats::AdaptiveState;

/// Why the target last changed or held (the `last_reason` of a snapshot).
pub mod reason {
    pub const START: &str = "start";
    pub const PROBE_UP: &str = "probe_up";
    pub const PROBE_DOWN: &str = "probe_down";
    pub const REVERSE: &str = "reverse";
    pub const SETTLE: &str = "settle";
    pub const SETTLED: &str = "settled";
    pub const HOLD: &str = "hold";
    pub const SLO: &str = "slo";
    pub const MEMORY: &str = "memory";
    pub const GPU_HIGH: &str = "gpu_high";
    pub const FAILURE: &str = "failure";
    pub const PARAMS: &str = "params";
}

/// Relative throughput difference below which two sizes count as equal (measurement noise).
pub const NOISE_MARGIN: f64 = 0.03;
/// Fewest batches in a measurement interval, whatever `interval_requests` says.
pub const MIN_INTERVAL_BATCHES: u32 = 4;
/// Saturated intervals spent settled before one side is probed again.
pub const REPROBE_INTERVALS: u32 = 20;
/// An estimate older than this many intervals is replaced by the next sample, not averaged.
const STALE_INTERVALS: u64 = 40;
/// Weight of a new interval in a size's throughput estimate.
const RATE_ALPHA: f64 = 0.3;
/// Weight of a new batch in the latency estimates.
const LATENCY_ALPHA: f64 = 0.2;
/// Share of full batches that makes an interval saturated.
const SATURATED_SHARE: f64 = 0.75;

/// The controller's parameters, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveParams {
    pub enabled: bool,
    pub min_size: usize,
    pub max_size: usize,
    pub initial_size: usize,
    /// Multiplicative step (a factor below 1 is read as its inverse).
    pub scaling_factor: f64,
    /// Requests per measurement interval.
    pub interval_requests: u64,
    pub objective: OptimizationTarget,
    /// End-to-end latency SLO; a batch may use at most half of it.
    pub latency_slo: Duration,
    pub memory_threshold: f64,
    pub gpu_high: f64,
    pub gpu_low: f64,
    pub reduce_on_failure: bool,
}

impl AdaptiveParams {
    pub fn from_config(cfg: &Config) -> Self {
        let (b, a) = (&cfg.batch_processing, &cfg.adaptive_batching);
        let min_size = b.min_batch_size.max(1);
        let max_size = b.max_batch_size.max(min_size);
        let initial = match a.initial_batch_size {
            0 => ((min_size * max_size) as f64).sqrt().round() as usize,
            n => n,
        };
        let slo_s = cfg.performance_monitoring.alert_threshold_latency_ms / 1000.0;
        Self {
            enabled: a.enable_adaptive_batching,
            min_size,
            max_size,
            initial_size: initial.clamp(min_size, max_size),
            scaling_factor: a.adaptive_scaling_factor,
            interval_requests: a.adaptive_adjustment_interval,
            objective: a.optimization_target,
            latency_slo: Duration::try_from_secs_f64(slo_s).unwrap_or(Duration::ZERO),
            memory_threshold: a.memory_utilization_threshold,
            gpu_high: a.gpu_utilization_threshold_high,
            gpu_low: a.gpu_utilization_threshold_low,
            reduce_on_failure: a.reduce_batch_on_failure,
        }
    }

    /// These parameters with the target never above `max` (a model's own largest batch).
    pub fn capped_at(&self, max: usize) -> Self {
        let mut p = self.clone();
        p.max_size = p.max_size.min(max).max(1);
        p.min_size = p.min_size.min(p.max_size);
        p.initial_size = p.initial_size.clamp(p.min_size, p.max_size);
        p
    }

    /// The target's bounds, sane even for hand-built parameters.
    fn bounds(&self) -> (usize, usize) {
        let lo = self.min_size.max(1);
        (lo, self.max_size.max(lo))
    }

    fn factor(&self) -> f64 {
        let f = self.scaling_factor;
        if f.is_finite() && f > 0.0 {
            f.max(1.0 / f)
        } else {
            1.5
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Climbing { up: bool, reversals: u8 },
    Settled { intervals: u32 },
}

/// What was measured for one batch size; `*_at` is the interval of the last update.
#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    rate: f64,
    rate_at: Option<u64>,
    latency_s: f64,
    latency_at: Option<u64>,
}

/// The measurement interval being filled; `start == None` until its first dispatch.
#[derive(Debug, Clone, Copy, Default)]
struct Interval {
    start: Option<Instant>,
    requests: u64,
    batches: u32,
    full: u32,
    idle: bool,
}

pub struct AdaptiveController {
    p: AdaptiveParams,
    target: usize,
    phase: Phase,
    /// Per-size estimates, indexed by batch size (allocated up front: nothing on the hot path).
    table: Vec<Estimate>,
    /// Best (size, throughput) of the current climbing episode.
    best: Option<(usize, f64)>,
    /// Whether the next re-probe tries a larger size first (alternates).
    probe_up_next: bool,
    interval: Interval,
    intervals: u64,
    /// A forced shrink already happened in this interval (failures and readings come in bursts).
    forced: bool,
    in_flight: u64,
    idle_since: Option<Instant>,
    memory: Option<f64>,
    gpu: Option<f64>,
    throughput_rps: f64,
    latency_s: f64,
    adjustments: u64,
    last_reason: &'static str,
}

impl AdaptiveController {
    pub fn new(p: AdaptiveParams, _now: Instant) -> Self {
        let (lo, hi) = p.bounds();
        let target = p.initial_size.clamp(lo, hi);
        let phase = Phase::Climbing {
            up: target < hi,
            reversals: 0,
        };
        Self {
            table: vec![Estimate::default(); hi + 1],
            p,
            target,
            phase,
            best: None,
            probe_up_next: true,
            interval: Interval::default(),
            intervals: 0,
            forced: false,
            in_flight: 0,
            idle_since: None,
            memory: None,
            gpu: None,
            throughput_rps: 0.0,
            latency_s: 0.0,
            adjustments: 0,
            last_reason: reason::START,
        }
    }

    /// The cap the batcher uses now (`max_size` when disabled); always within the bounds.
    pub fn target(&self) -> usize {
        if self.p.enabled {
            self.target
        } else {
            self.p.bounds().1
        }
    }

    /// A batch was handed to a worker; `full` when it closed because it reached the target.
    pub fn on_dispatch(&mut self, size: usize, full: bool, now: Instant) {
        // A dispatch into a drained pipeline that sat idle means demand, not capacity, set the
        // pace: such an interval must not be read as this size's throughput.
        if let Some(t) = self.idle_since.take() {
            if self.in_flight == 0 && now.saturating_duration_since(t) > self.idle_gap() {
                self.interval.idle = true;
            }
        }
        self.in_flight = self.in_flight.saturating_add(1);
        if let Some(start) = self.interval.start {
            let iv = &self.interval;
            if iv.requests < self.p.interval_requests.max(1) || iv.batches < MIN_INTERVAL_BATCHES {
                self.interval.add(size, full);
                return;
            }
            let before = self.target;
            self.close(start, now);
            if self.target != before {
                // Formed with the old target: it belongs to no interval.
                return;
            }
        }
        self.interval = Interval::starting(now);
        self.interval.add(size, full);
    }

    /// A batch finished after `inference`; `ok == false` when it failed.
    pub fn on_complete(&mut self, size: usize, inference: Duration, ok: bool, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.idle_since = Some(now);
        }
        if !ok {
            if self.p.reduce_on_failure {
                self.force_shrink(reason::FAILURE);
            }
            return;
        }
        let s = inference.as_secs_f64();
        self.latency_s = ewma(self.latency_s, s, LATENCY_ALPHA, self.latency_s == 0.0);
        let at = self.intervals;
        if let Some(e) = self.table.get_mut(size) {
            e.latency_s = ewma(e.latency_s, s, LATENCY_ALPHA, stale(e.latency_at, at));
            e.latency_at = Some(at);
        }
    }

    /// Latest resource readings in 0..=1 (`None` = unknown, e.g. no GPU).
    pub fn on_utilization(&mut self, memory: Option<f64>, gpu: Option<f64>) {
        self.memory = memory;
        self.gpu = gpu;
        if memory.is_some_and(|m| m > self.p.memory_threshold) {
            self.force_shrink(reason::MEMORY);
        } else if gpu.is_some_and(|g| g > self.p.gpu_high) {
            self.force_shrink(reason::GPU_HIGH);
        }
    }

    /// Hot reload: new bounds and parameters; estimates are kept, the target is clamped.
    pub fn set_params(&mut self, p: AdaptiveParams) {
        let (lo, hi) = p.bounds();
        if self.table.len() < hi + 1 {
            self.table.resize(hi + 1, Estimate::default());
        }
        self.p = p;
        let clamped = self.target.clamp(lo, hi);
        if clamped != self.target {
            self.settle_at(clamped, reason::PARAMS);
        }
    }

    pub fn snapshot(&self) -> AdaptiveState {
        AdaptiveState {
            target: self.target(),
            enabled: self.p.enabled,
            objective: self.p.objective,
            throughput_rps: self.throughput_rps,
            batch_latency_ms: self.latency_s * 1000.0,
            score: self.score(self.target).unwrap_or(0.0),
            adjustments: self.adjustments,
            last_reason: self.last_reason,
            memory_utilization: self.memory,
            gpu_utilization: self.gpu,
        }
    }

    /// Ends the interval that started at `start`; may move the target.
    fn close(&mut self, start: Instant, now: Instant) {
        let iv = std::mem::take(&mut self.interval);
        self.intervals += 1;
        self.forced = false;
        let secs = now.saturating_duration_since(start).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let rate = iv.requests as f64 / secs;
        self.throughput_rps = rate;
        if !self.p.enabled {
            return;
        }
        if self.over_slo(self.target) {
            return self.settle_at(self.scaled(self.target, false), reason::SLO);
        }
        let saturated = !iv.idle && f64::from(iv.full) >= SATURATED_SHARE * f64::from(iv.batches);
        if !saturated {
            self.last_reason = reason::HOLD;
            return;
        }
        let (at, e) = (self.intervals, &mut self.table[self.target]);
        e.rate = ewma(e.rate, rate, RATE_ALPHA, stale(e.rate_at, at));
        e.rate_at = Some(at);
        match self.phase {
            Phase::Climbing { up, reversals } => self.climb(up, reversals),
            Phase::Settled { intervals } => self.settled(intervals + 1),
        }
    }

    /// One hill-climbing step after a saturated interval at the current target.
    fn climb(&mut self, mut up: bool, mut reversals: u8) {
        let cur = self.target;
        let score = self.table[cur].rate;
        let best = match self.best {
            Some((b, s)) if b != cur && s >= score => s,
            _ => {
                self.best = Some((cur, score));
                score
            }
        };
        let mut why = None;
        if score < best * (1.0 - NOISE_MARGIN) {
            (up, reversals, why) = (!up, reversals + 1, Some(reason::REVERSE));
        }
        // A bound counts as a reversal, so this ends within two turns.
        while reversals < 2 {
            if let Some(n) = self.step(cur, up) {
                self.phase = Phase::Climbing { up, reversals };
                return self.move_to(n, why.unwrap_or(probe_reason(up)));
            }
            (up, reversals, why) = (!up, reversals + 1, Some(reason::REVERSE));
        }
        self.settle();
    }

    /// Moves to the best fresh size and stays there until the next re-probe.
    fn settle(&mut self) {
        let best = self.best_fresh().unwrap_or(self.target);
        let why = if best == self.target {
            reason::SETTLED
        } else {
            reason::SETTLE
        };
        self.settle_at(best, why);
    }

    fn settle_at(&mut self, n: usize, why: &'static str) {
        self.phase = Phase::Settled { intervals: 0 };
        self.best = None;
        self.move_to(n, why);
    }

    fn settled(&mut self, intervals: u32) {
        self.last_reason = reason::SETTLED;
        self.phase = Phase::Settled { intervals };
        if intervals < REPROBE_INTERVALS {
            return;
        }
        // One side per re-probe: it starts as if one reversal had happened, so a worse probe
        // settles straight back; the other side is probed first next time.
        let (cur, first) = (self.target, self.probe_up_next);
        self.probe_up_next = !first;
        self.phase = Phase::Settled { intervals: 0 };
        for up in [first, !first] {
            if let Some(n) = self.step(cur, up) {
                self.best = Some((cur, self.table[cur].rate));
                self.phase = Phase::Climbing { up, reversals: 1 };
                return self.move_to(n, probe_reason(up));
            }
        }
    }

    fn force_shrink(&mut self, why: &'static str) {
        if !self.p.enabled || self.forced {
            return;
        }
        self.forced = true;
        self.settle_at(self.scaled(self.target, false), why);
    }

    fn move_to(&mut self, n: usize, why: &'static str) {
        self.last_reason = why;
        if n != self.target {
            self.target = n;
            self.adjustments += 1;
            self.interval = Interval::default();
        }
    }

    /// The next size up or down, if the bounds, resources and SLO allow one.
    fn step(&self, n: usize, up: bool) -> Option<usize> {
        if up && !self.may_grow() {
            return None;
        }
        let m = self.scaled(n, up);
        (m != n && !self.over_slo(m)).then_some(m)
    }

    /// `n` times or divided by the factor, rounded, moved by at least one, within the bounds.
    fn scaled(&self, n: usize, up: bool) -> usize {
        let (lo, hi) = self.p.bounds();
        let (f, x) = (self.p.factor(), n as f64);
        let m = match up {
            true => ((x * f).round() as usize).max(n + 1),
            false => ((x / f).round() as usize).min(n.saturating_sub(1)),
        };
        m.clamp(lo, hi)
    }

    fn may_grow(&self) -> bool {
        self.memory.is_none_or(|m| m <= self.p.memory_threshold)
            && self.gpu.is_none_or(|g| g < self.p.gpu_low)
    }

    /// Under the latency objective: `n`'s recent batches took more than half the SLO.
    fn over_slo(&self, n: usize) -> bool {
        self.p.objective == OptimizationTarget::Latency
            && self.table.get(n).is_some_and(|e| {
                !stale(e.latency_at, self.intervals)
                    && e.latency_s > self.p.latency_slo.as_secs_f64() / 2.0
            })
    }

    fn score(&self, n: usize) -> Option<f64> {
        let e = self.table.get(n)?;
        (!stale(e.rate_at, self.intervals) && !self.over_slo(n)).then_some(e.rate)
    }

    /// The allowed size with the highest fresh throughput estimate.
    fn best_fresh(&self) -> Option<usize> {
        let (lo, hi) = self.p.bounds();
        (lo..=hi)
            .filter_map(|n| Some((n, self.score(n)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(n, _)| n)
    }

    /// How long a drained pipeline may wait for its next batch before it counts as idle.
    fn idle_gap(&self) -> Duration {
        let quarter = Duration::try_from_secs_f64(self.latency_s / 4.0).unwrap_or(Duration::ZERO);
        quarter.max(Duration::from_micros(500))
    }
}

impl Interval {
    fn starting(now: Instant) -> Self {
        let start = Some(now);
        Self {
            start,
            ..Self::default()
        }
    }

    fn add(&mut self, size: usize, full: bool) {
        self.requests = self.requests.saturating_add(size as u64);
        self.batches = self.batches.saturating_add(1);
        self.full = self.full.saturating_add(u32::from(full));
    }
}

fn probe_reason(up: bool) -> &'static str {
    match up {
        true => reason::PROBE_UP,
        false => reason::PROBE_DOWN,
    }
}

fn stale(at: Option<u64>, now: u64) -> bool {
    at.is_none_or(|at| now.saturating_sub(at) > STALE_INTERVALS)
}

fn ewma(old: f64, sample: f64, alpha: f64, reset: bool) -> f64 {
    if reset {
        sample
    } else {
        old + alpha * (sample - old)
    }
}

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
