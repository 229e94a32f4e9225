//! Tests of the adaptive controller: one per rule with explicit instants, simulations of a
//! saturated pipeline on two realistic throughput curves with seeded noise, and a property over
//! arbitrary event sequences.

use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params(min: usize, max: usize, initial: usize) -> AdaptiveParams {
    AdaptiveParams {
        enabled: true,
        min_size: min,
        max_size: max,
        initial_size: initial,
        scaling_factor: 1.5,
        interval_requests: 100,
        objective: OptimizationTarget::Throughput,
        latency_slo: ms(100),
        memory_threshold: 0.8,
        gpu_high: 0.8,
        gpu_low: 0.3,
        reduce_on_failure: true,
    }
}

type Curve = fn(usize) -> f64;

/// ONNX Runtime items/s at batch size 2^x (measured at x = 0..=8), interpolated linearly in x.
fn onnx_at(x: f64) -> f64 {
    const POINTS: [f64; 9] = [
        13_162.0, 21_381.0, 31_474.0, 36_408.0, 38_543.0, 40_481.0, 30_930.0, 31_688.0, 30_795.0,
    ];
    let x = x.clamp(0.0, 8.0);
    let i = (x.floor() as usize).min(7);
    POINTS[i] + (x - i as f64) * (POINTS[i + 1] - POINTS[i])
}

/// The measured curve: peaks at 32.
fn onnx(b: usize) -> f64 {
    onnx_at((b as f64).log2())
}

/// The same shape drifted to peak at 128 (a heavier model), and at 8 (a lighter one).
fn onnx_peak_128(b: usize) -> f64 {
    onnx_at((b as f64).log2() - 2.0)
}

fn onnx_peak_8(b: usize) -> f64 {
    onnx_at((b as f64).log2() + 2.0)
}

/// A pipeline with 2 ms per-batch overhead and 60 µs per item: rises slowly up to the maximum.
fn overhead(b: usize) -> f64 {
    b as f64 / (0.002 + 60e-6 * b as f64)
}

fn best_fixed(rate: Curve, max: usize) -> (usize, f64) {
    (1..=max)
        .map(|b| (b, rate(b)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((1, 0.0))
}

/// A saturated pipeline with one worker: each batch is dispatched full at the target the moment
/// the previous one completes, and runs `size / rate(size)` times `1 ± noise`.
struct Pipeline {
    ctl: AdaptiveController,
    now: Instant,
    rng: StdRng,
    rate: Curve,
    noise: f64,
}

impl Pipeline {
    fn new(p: AdaptiveParams, rate: Curve, noise: f64, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            ctl: AdaptiveController::new(p, now),
            now,
            rng: StdRng::seed_from_u64(seed),
            rate,
            noise,
        }
    }

    /// Runs one batch; returns its size and duration.
    fn batch(&mut self) -> (usize, Duration) {
        let b = self.ctl.target();
        self.ctl.on_dispatch(b, true, self.now);
        let u = match self.noise {
            0.0 => 0.0,
            n => self.rng.random_range(-n..=n),
        };
        let d = Duration::from_secs_f64(b as f64 / (self.rate)(b) * (1.0 + u));
        self.now += d;
        self.ctl.on_complete(b, d, true, self.now);
        (b, d)
    }

    /// Requests per second over `n` batches.
    fn run(&mut self, n: usize) -> f64 {
        let (mut items, mut secs) = (0usize, 0.0);
        for _ in 0..n {
            let (b, d) = self.batch();
            items += b;
            secs += d.as_secs_f64();
        }
        items as f64 / secs
    }

    /// Runs until the target changes (at most `limit` batches): the new target and the reason.
    fn next_change(&mut self, limit: usize) -> Option<(usize, &'static str)> {
        let before = self.ctl.target();
        for _ in 0..limit {
            self.batch();
            if self.ctl.target() != before {
                return Some((self.ctl.target(), self.ctl.snapshot().last_reason));
            }
        }
        None
    }
}

#[test]
fn from_config_resolves_the_initial_size() {
    let mut cfg = Config::default();
    let p = AdaptiveParams::from_config(&cfg);
    assert_eq!((p.min_size, p.max_size, p.initial_size), (1, 32, 6));
    assert_eq!(p.latency_slo, ms(100));
    assert_eq!(p.interval_requests, 100);
    cfg.batch_processing.min_batch_size = 4;
    cfg.batch_processing.max_batch_size = 64;
    assert_eq!(AdaptiveParams::from_config(&cfg).initial_size, 16);
    cfg.adaptive_batching.initial_batch_size = 500;
    assert_eq!(AdaptiveParams::from_config(&cfg).initial_size, 64);
    cfg.adaptive_batching.initial_batch_size = 2;
    let p = AdaptiveParams::from_config(&cfg);
    assert_eq!(AdaptiveController::new(p, Instant::now()).target(), 4);
}

#[test]
fn disabled_caps_at_max_and_still_measures() {
    let p = AdaptiveParams {
        enabled: false,
        ..params(1, 32, 4)
    };
    let mut sim = Pipeline::new(p, overhead, 0.0, 0);
    for _ in 0..500 {
        assert_eq!(sim.batch().0, 32);
    }
    let s = sim.ctl.snapshot();
    assert_eq!((s.target, s.enabled, s.adjustments), (32, false, 0));
    assert!(
        (s.throughput_rps / overhead(32) - 1.0).abs() < 1e-6,
        "{s:?}"
    );
    assert!(
        (s.batch_latency_ms - 32_000.0 / overhead(32)).abs() < 1e-6,
        "{s:?}"
    );
}

#[test]
fn the_target_moves_only_when_an_interval_closes() {
    let t0 = Instant::now();
    let mut c = AdaptiveController::new(params(1, 64, 8), t0);
    // 13 batches of 8 reach 100 requests; the 14th dispatch closes the interval.
    for i in 0..14u64 {
        assert_eq!(c.target(), 8, "batch {i}");
        c.on_dispatch(8, true, t0 + ms(i));
        c.on_complete(8, ms(1), true, t0 + ms(i + 1));
    }
    assert_eq!(c.target(), 12);
    assert_eq!(c.snapshot().last_reason, reason::PROBE_UP);
    assert!((c.snapshot().throughput_rps - 104.0 / 0.013).abs() < 1e-6);

    // Large batches: the interval still needs four of them.
    let mut c = AdaptiveController::new(params(1, 64, 50), t0);
    for i in 0..4u64 {
        c.on_dispatch(50, true, t0 + ms(i));
        assert_eq!(c.target(), 50, "batch {i}");
    }
    c.on_dispatch(50, true, t0 + ms(4));
    assert_eq!(c.target(), 64);
}

#[test]
fn the_batch_formed_before_a_change_is_left_out_of_the_next_interval() {
    let t0 = Instant::now();
    let mut c = AdaptiveController::new(params(1, 64, 8), t0);
    for i in 0..13u64 {
        c.on_dispatch(8, true, t0 + ms(i));
    }
    // This dispatch closes the interval and moves the target; its batch was formed with the old
    // target, and its slow run (5 ms) must not count against the new size.
    c.on_dispatch(8, true, t0 + ms(13));
    assert_eq!(c.target(), 12);
    for i in 0..10u64 {
        c.on_dispatch(12, true, t0 + ms(18 + i));
    }
    // 9 batches of 12 in 9 ms.
    assert!((c.snapshot().throughput_rps - 108.0 / 0.009).abs() < 1e-6);
}

#[test]
fn a_step_always_moves_by_at_least_one() {
    let t0 = Instant::now();
    let p = AdaptiveParams {
        scaling_factor: 1.05,
        ..params(1, 64, 4)
    };
    let mut c = AdaptiveController::new(p, t0);
    for i in 0..26u64 {
        c.on_dispatch(4, true, t0 + ms(i));
    }
    assert_eq!(
        (c.target(), c.snapshot().last_reason),
        (5, reason::PROBE_UP)
    );
    c.on_complete(5, ms(1), false, t0 + ms(26));
    assert_eq!(c.target(), 4);
}

#[test]
fn a_worse_size_reverses_and_the_best_is_settled_and_reprobed() {
    // Throughput peaks at 12: 8 -> 12 -> 18 is worse -> back to 12 -> 8 is worse -> settle on 12.
    fn peak(b: usize) -> f64 {
        if b <= 12 {
            1000.0 * b as f64
        } else {
            6000.0
        }
    }
    let mut sim = Pipeline::new(params(1, 64, 8), peak, 0.0, 0);
    let changes: Vec<_> = (0..5).filter_map(|_| sim.next_change(1000)).collect();
    let expected = [
        (12, reason::PROBE_UP),
        (18, reason::PROBE_UP),
        (12, reason::REVERSE),
        (8, reason::PROBE_DOWN),
        (12, reason::SETTLE),
    ];
    assert_eq!(changes, expected);
    // Settled: one side is probed after REPROBE_INTERVALS, the other side the next time.
    assert_eq!(sim.next_change(10_000), Some((18, reason::PROBE_UP)));
    assert_eq!(sim.next_change(1000), Some((12, reason::SETTLE)));
    assert_eq!(sim.next_change(10_000), Some((8, reason::PROBE_DOWN)));
    assert_eq!(sim.next_change(1000), Some((12, reason::SETTLE)));
    assert_eq!(sim.ctl.snapshot().adjustments, 9);
}

#[test]
fn an_unsaturated_load_never_moves_the_target() {
    let t0 = Instant::now();
    let mut c = AdaptiveController::new(params(1, 256, 16), t0);
    let mut rng = StdRng::seed_from_u64(7);
    let mut now = t0;
    for i in 0..20_000u32 {
        // Demand below capacity: partial batches, and at most a few full ones, at rates that
        // vary wildly (a climber reading them as capacity would move).
        let full = i % 5 == 0;
        let size = if full { 16 } else { rng.random_range(1..16) };
        c.on_dispatch(size, full, now);
        now += Duration::from_micros(rng.random_range(100..20_000));
        c.on_complete(size, Duration::from_micros(50), true, now);
    }
    let s = c.snapshot();
    assert_eq!(
        (s.target, s.adjustments, s.last_reason),
        (16, 0, reason::HOLD)
    );
}

#[test]
fn full_batches_around_idle_gaps_do_not_move_the_target() {
    // Bursts of full batches with the pipeline idle in between: demand set the pace.
    let run = |gap: Duration| {
        let t0 = Instant::now();
        let mut c = AdaptiveController::new(params(1, 256, 16), t0);
        let mut now = t0;
        for i in 0..2_000u64 {
            c.on_dispatch(16, true, now);
            now += ms(1) + Duration::from_micros(i % 7);
            c.on_complete(16, ms(1), true, now);
            now += gap;
        }
        c.snapshot()
    };
    let idle = run(ms(50));
    assert_eq!((idle.target, idle.adjustments), (16, 0));
    assert_eq!(idle.last_reason, reason::HOLD);
    // The same batches back to back are saturated, and the controller does act on them.
    assert!(run(Duration::ZERO).adjustments > 0);
}

#[test]
fn a_failure_shrinks_at_once_but_once_per_interval() {
    let mut sim = Pipeline::new(params(1, 64, 32), overhead, 0.0, 0);
    let now = sim.now;
    sim.ctl.on_dispatch(32, true, now);
    sim.ctl.on_complete(32, ms(1), false, now);
    assert_eq!(sim.ctl.target(), 21);
    assert_eq!(sim.ctl.snapshot().last_reason, reason::FAILURE);
    // The rest of a burst (batches formed with the old target) does not compound.
    sim.ctl.on_complete(32, ms(1), false, now);
    assert_eq!(sim.ctl.target(), 21);
    // Once an interval has closed, a new failure shrinks again.
    while sim.ctl.snapshot().last_reason == reason::FAILURE {
        sim.batch();
    }
    assert_eq!(sim.ctl.target(), 21);
    sim.ctl.on_complete(21, ms(1), false, sim.now);
    assert_eq!(sim.ctl.target(), 14);

    let p = AdaptiveParams {
        reduce_on_failure: false,
        ..params(1, 64, 32)
    };
    let mut c = AdaptiveController::new(p, now);
    c.on_complete(32, ms(1), false, now);
    assert_eq!(c.target(), 32);
}

#[test]
fn memory_or_gpu_over_threshold_shrinks() {
    let mut sim = Pipeline::new(params(1, 64, 32), overhead, 0.0, 0);
    sim.ctl.on_utilization(Some(0.5), Some(0.1));
    assert_eq!(sim.ctl.target(), 32);
    sim.ctl.on_utilization(Some(0.9), None);
    assert_eq!(sim.ctl.target(), 21);
    assert_eq!(sim.ctl.snapshot().last_reason, reason::MEMORY);
    sim.ctl.on_utilization(Some(0.9), None);
    assert_eq!(sim.ctl.target(), 21, "once per interval");
    while sim.ctl.snapshot().last_reason == reason::MEMORY {
        sim.batch();
    }
    sim.ctl.on_utilization(Some(0.5), Some(0.95));
    assert_eq!(sim.ctl.target(), 14);
    assert_eq!(sim.ctl.snapshot().last_reason, reason::GPU_HIGH);
}

#[test]
fn gpu_between_thresholds_blocks_growth() {
    // Throughput rises with size, so without the GPU reading the target would grow past 8.
    let max_target = |gpu: f64| {
        let mut sim = Pipeline::new(params(1, 256, 8), overhead, 0.0, 0);
        sim.ctl.on_utilization(None, Some(gpu));
        (0..3_000).map(|_| sim.batch().0).max().unwrap_or(0)
    };
    assert_eq!(max_target(0.5), 8);
    assert_eq!(max_target(0.1), 256);
}

#[test]
fn the_latency_objective_keeps_batches_within_half_the_slo() {
    // Batch time 2 ms + 0.9 ms per item: throughput rises with size; half the 40 ms SLO
    // allows at most 20 items.
    fn slow(b: usize) -> f64 {
        b as f64 / (0.002 + 0.0009 * b as f64)
    }
    let run = |objective| {
        let p = AdaptiveParams {
            objective,
            latency_slo: ms(40),
            ..params(1, 64, 4)
        };
        let mut sim = Pipeline::new(p, slow, 0.0, 0);
        sim.run(1_000);
        let sizes: Vec<usize> = (0..20_000).map(|_| sim.batch().0).collect();
        let over = sizes.iter().filter(|&&b| b > 20).count() as f64 / sizes.len() as f64;
        (over, sizes.iter().copied().max().unwrap_or(0), sim.ctl)
    };
    let (over, _, ctl) = run(OptimizationTarget::Latency);
    assert!(over < 0.02, "{over}");
    assert_eq!(ctl.target(), 14);
    assert!(ctl.snapshot().batch_latency_ms <= 20.0);
    let (over, max, _) = run(OptimizationTarget::Throughput);
    assert!(over > 0.9 && max == 64, "{over} {max}");
}

#[test]
fn the_latency_objective_shrinks_a_size_over_the_slo() {
    let t0 = Instant::now();
    let p = AdaptiveParams {
        objective: OptimizationTarget::Latency,
        latency_slo: ms(40),
        ..params(1, 64, 32)
    };
    let mut c = AdaptiveController::new(p, t0);
    for i in 0..5u64 {
        c.on_dispatch(32, true, t0 + ms(30 * i));
        c.on_complete(32, ms(30), true, t0 + ms(30 * (i + 1)));
    }
    assert_eq!(c.target(), 21);
    assert_eq!(c.snapshot().last_reason, reason::SLO);
}

#[test]
fn set_params_clamps_the_target() {
    let t0 = Instant::now();
    let mut c = AdaptiveController::new(params(1, 64, 32), t0);
    c.set_params(params(1, 16, 8));
    assert_eq!((c.target(), c.snapshot().last_reason), (16, reason::PARAMS));
    c.set_params(params(20, 40, 8));
    assert_eq!(c.target(), 20);
    c.set_params(AdaptiveParams {
        enabled: false,
        ..params(20, 40, 8)
    });
    assert_eq!(c.target(), 40);
    c.set_params(params(20, 40, 8));
    assert_eq!(c.target(), 20);
}

/// Average throughput after warm-up, against the best fixed size, for every curve, seed and start.
#[test]
fn a_noisy_saturated_pipeline_runs_near_the_best_fixed_size() {
    let curves: [(&str, Curve); 2] = [("onnx", onnx), ("overhead", overhead)];
    let mut worst: f64 = 1.0;
    for (name, rate) in curves {
        let (best_size, best) = best_fixed(rate, 256);
        for seed in 1..=5 {
            for start in [1, 256] {
                let mut sim = Pipeline::new(params(1, 256, start), rate, 0.05, seed);
                sim.run(3_000);
                let achieved = sim.run(30_000);
                let ratio = achieved / best;
                worst = worst.min(ratio);
                eprintln!(
                    "{name} seed {seed} start {start}: {achieved:.0}/s vs best fixed {best:.0}/s \
                     (size {best_size}) = {:.1}%, final target {}",
                    100.0 * ratio,
                    sim.ctl.target()
                );
                assert!(ratio >= 0.95, "{name} seed {seed} start {start}: {ratio}");
            }
        }
    }
    eprintln!("worst ratio {worst:.3}");
}

#[test]
fn a_drifting_curve_is_followed_by_reprobing() {
    for seed in 1..=3 {
        let mut sim = Pipeline::new(params(1, 256, 32), onnx, 0.05, seed);
        sim.run(5_000);
        for (name, rate) in [
            ("peak 128", onnx_peak_128 as Curve),
            ("peak 8", onnx_peak_8),
        ] {
            sim.rate = rate;
            sim.run(3_000);
            let ratio = sim.run(30_000) / best_fixed(rate, 256).1;
            eprintln!(
                "drift to {name}, seed {seed}: {:.1}% of the best fixed size, target {}",
                100.0 * ratio,
                sim.ctl.target()
            );
            assert!(ratio >= 0.95, "{name} seed {seed}: {ratio}");
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Dispatch {
        size: usize,
        full: bool,
        after_us: u64,
    },
    Complete {
        size: usize,
        took_us: u64,
        ok: bool,
    },
    Utilization(Option<f64>, Option<f64>),
    Reload {
        min: usize,
        max: usize,
        enabled: bool,
    },
}

fn event() -> impl Strategy<Value = Event> {
    let util = proptest::option::of(0.0..=1.0f64);
    prop_oneof![
        6 => (0..300usize, any::<bool>(), 0..5_000u64)
            .prop_map(|(size, full, after_us)| Event::Dispatch { size, full, after_us }),
        6 => (0..300usize, 0..50_000u64, proptest::bool::weighted(0.9))
            .prop_map(|(size, took_us, ok)| Event::Complete { size, took_us, ok }),
        1 => (util.clone(), util).prop_map(|(m, g)| Event::Utilization(m, g)),
        1 => (0..20usize, 0..300usize, proptest::bool::weighted(0.8))
            .prop_map(|(min, max, enabled)| Event::Reload { min, max, enabled }),
    ]
}

proptest! {
    #[test]
    fn the_target_stays_within_bounds(
        min in 0..20usize,
        max in 0..300usize,
        initial in 0..400usize,
        factor in 0.1..4.0f64,
        interval in 0..200u64,
        latency in any::<bool>(),
        events in proptest::collection::vec(event(), 0..400),
    ) {
        let mut p = AdaptiveParams {
            scaling_factor: factor,
            interval_requests: interval,
            objective: if latency { OptimizationTarget::Latency } else { OptimizationTarget::Throughput },
            latency_slo: ms(10),
            ..params(min, max, initial)
        };
        let mut now = Instant::now();
        let mut c = AdaptiveController::new(p.clone(), now);
        for e in events {
            match e {
                Event::Dispatch { size, full, after_us } => {
                    now += Duration::from_micros(after_us);
                    c.on_dispatch(size, full, now);
                }
                Event::Complete { size, took_us, ok } => {
                    c.on_complete(size, Duration::from_micros(took_us), ok, now)
                }
                Event::Utilization(m, g) => c.on_utilization(m, g),
                Event::Reload { min, max, enabled } => {
                    p = AdaptiveParams { min_size: min, max_size: max, enabled, ..p };
                    c.set_params(p.clone());
                }
            }
            let lo = p.min_size.max(1);
            let hi = p.max_size.max(lo);
            let t = c.target();
            prop_assert!(t >= 1 && (lo..=hi).contains(&t), "{t} not in {lo}..={hi}");
            prop_assert_eq!(c.snapshot().target, t);
            if !p.enabled {
                prop_assert_eq!(t, hi);
            }
        }
    }
}
