//! Tests of the issue-4 batching rules: earliest deadline first, expiry by timer, the starvation
//! bound, the memory bound, the minimum batch interval, the adaptive target, the strategy seam,
//! and properties over arbitrary schedules.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use super::{entry, ids, policy, start};
use crate::pipeline::{fixtures, Admitted, FlushReason, LeaderResult, Outcome};
use crate::tensor::{Tensor, TensorData};
use crate::tier::Tier;
use crate::wire::Status;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn with_deadline(mut a: Admitted, at: Option<Instant>) -> Admitted {
    a.deadline = at;
    a
}

#[test]
fn within_a_tier_the_earliest_deadline_leaves_first() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    s.push(with_deadline(entry(1, Tier::High, t0), None));
    s.push(with_deadline(entry(2, Tier::High, t0), Some(t0 + ms(30))));
    s.push(with_deadline(entry(3, Tier::High, t0), Some(t0 + ms(10))));
    s.push(with_deadline(entry(4, Tier::High, t0), None));
    assert_eq!(ids(&s.next_batch(t0).batch), ["r3", "r2", "r1", "r4"]);
}

#[test]
fn priority_still_comes_before_deadlines() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    s.push(with_deadline(entry(1, Tier::Low, t0), Some(t0 + ms(1))));
    s.push(entry(2, Tier::Critical, t0));
    assert_eq!(ids(&s.next_batch(t0).batch), ["r2", "r1"]);
}

#[test]
fn the_starvation_bound_expires_requests_as_overloaded() {
    let mut s = State::new(BatchPolicy {
        starvation_bound: Some(ms(100)),
        ..policy()
    });
    let t0 = Instant::now();
    s.push(entry(1, Tier::Low, t0));
    s.push(with_deadline(entry(2, Tier::Low, t0), Some(t0 + ms(40))));
    assert_eq!(s.next_expiry(), Some(t0 + ms(40)));
    let first = s.expire(t0 + ms(40));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, Expiry::Deadline);
    assert_eq!(s.next_expiry(), Some(t0 + ms(100)));
    assert!(s.expire(t0 + ms(99)).is_empty());
    let starved = s.expire(t0 + ms(100));
    assert_eq!(starved[0].1, Expiry::Starved);
    assert!(s.is_empty());
}

#[test]
fn the_memory_bound_closes_a_batch_but_a_lone_large_request_still_runs() {
    let one = entry(0, Tier::Normal, Instant::now())
        .request
        .inputs
        .element_count()
        * 4;
    let mut s = State::new(BatchPolicy {
        max_batch_bytes: 2 * one,
        ..policy()
    });
    let t0 = Instant::now();
    for i in 0..4 {
        s.push(entry(i, Tier::Normal, t0));
    }
    assert_eq!(
        s.ready(t0),
        Some(FlushReason::Full),
        "the queue holds a full batch of bytes"
    );
    assert_eq!(ids(&s.next_batch(t0).batch), ["r0", "r1"]);
    let mut s = State::new(BatchPolicy {
        max_batch_bytes: 1,
        ..policy()
    });
    s.push(entry(7, Tier::Normal, t0));
    assert_eq!(ids(&s.next_batch(t0).batch), ["r7"]);
}

/// Under the memory strategy each request also weighs the model's measured working memory per
/// row, so the same queue yields a smaller batch; the other strategies ignore the figure.
#[test]
fn the_memory_strategy_counts_each_rows_activations_against_the_bound() {
    use crate::config::StrategyKind;
    let one = entry(0, Tier::Normal, Instant::now())
        .request
        .inputs
        .element_count()
        * 4;
    let activations = 3 * one as u64;
    let t0 = Instant::now();
    let mut sizes = Vec::new();
    for strategy in [
        StrategyKind::Priority,
        StrategyKind::Memory,
        StrategyKind::Latency,
    ] {
        // Room for four requests' tensors, or one request with its activations (4 x one).
        let policy = BatchPolicy {
            max_batch_bytes: 4 * one,
            strategy,
            ..policy()
        }
        .with_activations(Some(activations));
        let mut s = State::new(policy);
        for i in 0..4 {
            s.push(entry(i, Tier::Normal, t0));
        }
        assert_eq!(s.ready(t0), Some(FlushReason::Full), "{strategy:?}");
        sizes.push(s.next_batch(t0).batch.len());
    }
    assert_eq!(sizes, [4, 1, 4]);
    // Unmeasured: the memory strategy counts tensors only, like the default.
    let unmeasured = BatchPolicy {
        strategy: StrategyKind::Memory,
        ..policy()
    }
    .with_activations(None);
    assert_eq!(unmeasured.row_overhead_bytes, 0);
}

#[test]
fn batches_start_at_least_the_minimum_interval_apart() {
    let mut s = State::new(BatchPolicy {
        min_interval: ms(20),
        ..policy()
    });
    let t0 = Instant::now();
    for i in 0..8 {
        s.push(entry(i, Tier::Critical, t0));
    }
    assert_eq!(s.ready(t0), Some(FlushReason::Full));
    assert_eq!(s.next_batch(t0).batch.len(), 4);
    assert_eq!(s.ready(t0 + ms(19)), None, "full, but too soon");
    assert_eq!(s.flush_at(), Some(t0 + ms(20)));
    assert_eq!(s.ready(t0 + ms(20)), Some(FlushReason::Full));
}

#[test]
fn the_target_caps_batches_below_max() {
    let mut s = State::new(policy());
    s.set_target(2);
    let t0 = Instant::now();
    for i in 0..3 {
        s.push(entry(i, Tier::Normal, t0));
    }
    assert_eq!(s.ready(t0), Some(FlushReason::Full));
    assert_eq!(s.next_batch(t0).batch.len(), 2);
    s.set_target(100);
    assert_eq!(s.target(), 4, "never above max_batch_size");
}

/// Takes one request from each queue in turn: a custom selection rule.
struct RoundRobin;

impl BatchStrategy for RoundRobin {
    fn due(&self, view: &QueueView<'_>, _now: Instant) -> Option<FlushReason> {
        // A pair is this strategy's full batch.
        (view.len >= 2).then_some(FlushReason::Full)
    }
    fn wake_at(&self, _view: &QueueView<'_>) -> Option<Instant> {
        None
    }
    fn plan(&self, view: &QueueView<'_>, room: usize, _now: Instant) -> [usize; 4] {
        let mut left = room;
        view.queues.map(|q| {
            let n = usize::from(q.len > 0 && left > 0);
            left -= n;
            n
        })
    }
    fn name(&self) -> &'static str {
        "round-robin"
    }
}

/// Plans nothing at all: the state must still form a non-empty batch.
struct Lazy;

impl BatchStrategy for Lazy {
    fn due(&self, _view: &QueueView<'_>, _now: Instant) -> Option<FlushReason> {
        Some(FlushReason::Wait)
    }
    fn wake_at(&self, _view: &QueueView<'_>) -> Option<Instant> {
        None
    }
    fn plan(&self, _view: &QueueView<'_>, _room: usize, _now: Instant) -> [usize; 4] {
        [0; 4]
    }
    fn name(&self) -> &'static str {
        "lazy"
    }
}

#[test]
fn a_custom_strategy_decides_when_and_from_where() {
    let mut s = State::with_strategy(policy(), Box::new(RoundRobin));
    let t0 = Instant::now();
    s.push(entry(1, Tier::Critical, t0));
    assert_eq!(
        s.ready(t0 + ms(500)),
        None,
        "its own rule, not the tier wait"
    );
    s.push(entry(2, Tier::Critical, t0));
    s.push(entry(3, Tier::Low, t0));
    assert_eq!(s.ready(t0), Some(FlushReason::Full));
    // One critical and one low first, then the state fills by priority.
    assert_eq!(ids(&s.next_batch(t0).batch), ["r1", "r3", "r2"]);
    let mut lazy = State::with_strategy(policy(), Box::new(Lazy));
    lazy.push(entry(9, Tier::Normal, t0));
    assert_eq!(ids(&lazy.next_batch(t0).batch), ["r9"]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_is_answered_by_a_timer_while_the_worker_is_busy() {
    let mut h = start(
        BatchPolicy {
            starvation_bound: Some(ms(300)),
            ..policy()
        },
        1,
    );
    let t0 = Instant::now();
    h.tiers[0].send(entry(1, Tier::Critical, t0)).await.unwrap();
    let busy = h.batches.recv().await.unwrap(); // holds the only worker
    h.tiers[1]
        .send(with_deadline(entry(2, Tier::High, t0), Some(t0 + ms(25))))
        .await
        .unwrap();
    h.tiers[3].send(entry(3, Tier::Low, t0)).await.unwrap();
    let mut answered = Vec::new();
    for _ in 0..2 {
        let Some(Outcome::Reply { reply, .. }) = h.outcomes.recv().await else {
            panic!("no reply")
        };
        answered.push((reply.request_id.clone(), reply.status, t0.elapsed()));
    }
    assert_eq!(
        answered,
        [
            ("r2".to_string(), Status::DeadlineExceeded, ms(25)),
            ("r3".to_string(), Status::Overloaded, ms(300)),
        ]
    );
    drop(busy);
    drop(h.tiers);
    let report = h.task.await.unwrap();
    assert_eq!((report.expired, report.starved, report.batches), (1, 1, 1));
}

#[derive(Debug, Clone)]
enum Step {
    Push {
        tier: usize,
        after_ms: u64,
        deadline_ms: Option<u64>,
    },
    Batch {
        after_ms: u64,
    },
    Expire {
        after_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, 0u64..5, proptest::option::of(0u64..60))
            .prop_map(|(tier, after_ms, deadline_ms)| Step::Push { tier, after_ms, deadline_ms }),
        2 => (0u64..20).prop_map(|after_ms| Step::Batch { after_ms }),
        1 => (0u64..20).prop_map(|after_ms| Step::Expire { after_ms }),
    ]
}

proptest! {
    /// Every pushed request leaves exactly once; no batch is empty or over the target; nothing
    /// expired is batched; batches follow tier order and, within a tier, expiry order.
    #[test]
    fn every_request_leaves_once_within_bounds(
        steps in proptest::collection::vec(step(), 1..120),
        target in 1usize..6,
        starve in proptest::option::of(10u64..80),
    ) {
        let mut s = State::new(BatchPolicy { max_batch_size: 5, tier_capacity: 1000,
            starvation_bound: starve.map(ms), ..policy() });
        s.set_target(target);
        let t0 = Instant::now();
        let (mut now, mut id, mut left) = (t0, 0u64, HashSet::new());
        let done = |a: &Admitted, left: &mut HashSet<String>| {
            prop_assert!(left.remove(&a.request.request_id), "left twice: {}", a.request.request_id);
            Ok(())
        };
        for st in steps {
            match st {
                Step::Push { tier, after_ms, deadline_ms } => {
                    now += ms(after_ms);
                    id += 1;
                    let a = with_deadline(entry(id, Tier::ALL[tier], now), deadline_ms.map(|d| now + ms(d)));
                    left.insert(a.request.request_id.clone());
                    s.push(a);
                }
                Step::Batch { after_ms } => {
                    now += ms(after_ms);
                    let sel = s.next_batch(now);
                    prop_assert!(sel.batch.len() <= target);
                    prop_assert!(!sel.batch.is_empty() || s.is_empty());
                    let expiry = |a: &Admitted| {
                        let starved = starve.map(|b| a.admitted_at + ms(b));
                        let at = match (a.deadline, starved) {
                            (Some(d), Some(s)) => Some(d.min(s)),
                            (d, s) => d.or(s),
                        };
                        (at.is_none(), at)
                    };
                    for tier in Tier::ALL {
                        let keys: Vec<_> = sel.batch.iter().filter(|a| a.tier == tier).map(expiry).collect();
                        prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "tier {tier} out of expiry order");
                    }
                    for a in &sel.batch {
                        prop_assert!(a.deadline.is_none_or(|d| d > now), "expired request batched");
                        done(a, &mut left)?;
                    }
                    for (a, _) in &sel.expired { done(a, &mut left)?; }
                }
                Step::Expire { after_ms } => {
                    now += ms(after_ms);
                    for (a, why) in s.expire(now) {
                        let bound = match why {
                            Expiry::Deadline => a.deadline,
                            Expiry::Starved => starve.map(|b| a.admitted_at + ms(b)),
                        };
                        prop_assert!(bound.is_some_and(|b| b <= now), "expired early");
                        done(&a, &mut left)?;
                    }
                }
            }
            prop_assert_eq!(s.len(), left.len());
        }
        // Whatever is left drains in batches.
        while !s.is_empty() {
            let sel = s.next_batch(now);
            for a in sel.batch.iter().chain(sel.expired.iter().map(|(a, _)| a)) {
                done(a, &mut left)?;
            }
        }
        prop_assert!(left.is_empty());
    }
}

fn dedup_on() -> dedup::DedupParams {
    dedup::DedupParams {
        enabled: true,
        cache_size: 16,
        ttl: Duration::from_secs(60),
        purge_interval: None,
    }
}

#[tokio::test(start_paused = true)]
async fn identical_requests_run_once_and_every_requester_gets_the_result() {
    use super::start_with;
    use crate::pipeline::BatchDone;
    let mut h = start_with(policy(), 1, None, dedup_on());
    let t0 = Instant::now();
    for i in 1..=3 {
        h.tiers[2].send(entry(i, Tier::Normal, t0)).await.unwrap();
    }
    let batch = h.batches.recv().await.unwrap();
    assert_eq!(ids(&batch.requests), ["r1"], "the twins joined the leader");
    let key = batch.requests[0]
        .dedup_key
        .expect("the leader carries its key");
    let values = vec![0.25, 0.5, 0.25];
    let output = Tensor::new("output", vec![3], TensorData::F32(values.clone()));
    let outputs: std::sync::Arc<[Tensor]> = vec![output].into();
    drop(batch);
    let done = BatchDone {
        model: fixtures::model(),
        size: 1,
        inference: ms(1),
        ok: true,
        results: vec![LeaderResult {
            key,
            outputs: Some(outputs.clone()),
        }],
    };
    h.feedback.send(done).await.unwrap();
    // A fourth identical request later is answered from the cache, never batched.
    tokio::time::sleep(ms(100)).await;
    h.tiers[2]
        .send(entry(4, Tier::Normal, Instant::now()))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let Some(Outcome::Reply { reply, .. }) = h.outcomes.recv().await else {
            panic!("no reply")
        };
        assert_eq!(
            (reply.status, reply.outputs.first_f32()),
            (Status::Ok, &values[..])
        );
        got.push(reply.request_id);
    }
    got.sort();
    assert_eq!(got, ["r2", "r3", "r4"]);
    drop(h.tiers);
    let report = h.task.await.unwrap();
    assert_eq!(
        (report.batches, report.dedup.joins, report.dedup.hits),
        (1, 2, 1)
    );
}

/// With a purge interval, an expired result is released while the instance sits idle; without
/// one it stays until the cache is next used.
#[tokio::test(start_paused = true)]
async fn an_idle_batcher_releases_expired_results_at_the_purge_interval() {
    use super::start_with;
    use crate::pipeline::BatchDone;
    for purge_interval in [Some(Duration::from_secs(2)), None] {
        let params = dedup::DedupParams {
            ttl: Duration::from_secs(1),
            purge_interval,
            ..dedup_on()
        };
        let mut h = start_with(policy(), 1, None, params);
        h.tiers[2]
            .send(entry(1, Tier::Normal, Instant::now()))
            .await
            .unwrap();
        let batch = h.batches.recv().await.unwrap();
        let key = batch.requests[0].dedup_key.unwrap();
        drop(batch);
        let output = Tensor::new("output", vec![1], TensorData::F32(vec![1.0]));
        let done = BatchDone {
            model: fixtures::model(),
            size: 1,
            inference: ms(1),
            ok: true,
            results: vec![LeaderResult {
                key,
                outputs: Some(vec![output].into()),
            }],
        };
        h.feedback.send(done).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(h.tiers);
        let report = h.task.await.unwrap();
        let released = (report.dedup.expired, report.dedup.cached);
        match purge_interval {
            Some(_) => assert_eq!(released, (1, 0), "purged while idle"),
            None => assert_eq!(released, (0, 1), "held until the cache is used"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn when_a_leader_fails_a_twin_is_run_instead() {
    use super::start_with;
    use crate::pipeline::BatchDone;
    let mut h = start_with(policy(), 1, None, dedup_on());
    let t0 = Instant::now();
    h.tiers[2].send(entry(1, Tier::Normal, t0)).await.unwrap();
    h.tiers[2].send(entry(2, Tier::Normal, t0)).await.unwrap();
    let first = h.batches.recv().await.unwrap();
    let key = first.requests[0].dedup_key.unwrap();
    drop(first);
    let failed = BatchDone {
        model: fixtures::model(),
        size: 1,
        inference: ms(1),
        ok: false,
        results: vec![LeaderResult { key, outputs: None }],
    };
    h.feedback.send(failed).await.unwrap();
    let second = h.batches.recv().await.unwrap();
    assert_eq!(ids(&second.requests), ["r2"]);
    assert_eq!(
        second.requests[0].dedup_key,
        Some(key),
        "the twin leads now"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_shrinks_the_adaptive_target_of_the_next_one() {
    use super::start_with;
    use crate::pipeline::BatchDone;
    let mut cfg = crate::config::Config::default();
    cfg.batch_processing.max_batch_size = 4;
    cfg.batch_processing.max_queue_size = 32;
    cfg.adaptive_batching.initial_batch_size = 4;
    cfg.adaptive_batching.adaptive_scaling_factor = 2.0;
    let adaptive = adaptive::AdaptiveParams::from_config(&cfg);
    let mut h = start_with(
        policy(),
        1,
        Some(adaptive),
        dedup::DedupParams::from_config(&cfg),
    );
    let t0 = Instant::now();
    for i in 0..8 {
        let mut a = entry(i, Tier::Normal, t0);
        a.request.inputs = crate::wire::Inputs::v1(vec![1], vec![i as f32]);
        h.tiers[2].send(a).await.unwrap();
    }
    let first = h.batches.recv().await.unwrap();
    assert_eq!(first.requests.len(), 4);
    drop(first);
    let failed = BatchDone {
        model: fixtures::model(),
        size: 4,
        inference: ms(2),
        ok: false,
        results: Vec::new(),
    };
    h.feedback.send(failed).await.unwrap();
    let second = h.batches.recv().await.unwrap();
    assert_eq!(second.requests.len(), 2, "halved after the failure");
}

#[tokio::test(start_paused = true)]
async fn memory_over_its_threshold_shrinks_the_next_batch() {
    use super::start_with;
    use crate::resources::Utilization;
    let mut cfg = crate::config::Config::default();
    cfg.batch_processing.max_batch_size = 4;
    cfg.adaptive_batching.initial_batch_size = 4;
    cfg.adaptive_batching.adaptive_scaling_factor = 2.0;
    cfg.adaptive_batching.memory_utilization_threshold = 0.8;
    let adaptive = adaptive::AdaptiveParams::from_config(&cfg);
    let mut h = start_with(
        policy(),
        1,
        Some(adaptive),
        dedup::DedupParams::from_config(&cfg),
    );
    let reading = |m: f64| Utilization {
        host_memory: Some(m),
        ..Utilization::default()
    };
    // Under the threshold: the target stays.
    h.utilization.send(reading(0.5)).unwrap();
    tokio::time::sleep(ms(1)).await;
    let t0 = Instant::now();
    for i in 0..4 {
        h.tiers[2].send(entry(i, Tier::Normal, t0)).await.unwrap();
    }
    assert_eq!(h.batches.recv().await.unwrap().requests.len(), 4);
    // Over it: the very next batch is halved.
    h.utilization.send(reading(0.95)).unwrap();
    tokio::time::sleep(ms(1)).await;
    for i in 4..8 {
        h.tiers[2].send(entry(i, Tier::Normal, t0)).await.unwrap();
    }
    assert_eq!(h.batches.recv().await.unwrap().requests.len(), 2);
    let rest = h.batches.recv().await.unwrap();
    assert_eq!(rest.requests.len(), 2);
    drop(rest);
    for tx in h.tiers {
        drop(tx);
    }
    drop(h.feedback);
    let report = h.task.await.unwrap();
    let state = report.adaptive.expect("adaptive state");
    assert_eq!(state.memory_utilization, Some(0.95));
    assert_eq!(state.last_reason, adaptive::reason::MEMORY);
}
