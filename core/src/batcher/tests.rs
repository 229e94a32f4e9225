//! Batcher tests: the pure rules with explicit instants, and the task with a paused clock and
//! a fake worker pool.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::*;

/// Several model versions at once: one lane each, sharing the workers.
mod lanes;
/// The pure state's rules, and what the task makes of them.
mod state;
use crate::pipeline::{fixtures, Admitted, Batch, FlushReason, Outcome, WorkerPool};
use crate::tier::Tier;
use crate::wire::Status;

pub(super) fn policy() -> BatchPolicy {
    BatchPolicy {
        max_batch_size: 4,
        min_batch_size: 1,
        tier_wait: [2, 5, 10, 20].map(Duration::from_millis),
        batch_timeout: Duration::from_millis(50),
        priority: true,
        tier_capacity: 8,
        boost_threshold: 3,
        boost_quota: 1,
        aging_limit: Duration::from_millis(50),
        starvation_bound: None,
        min_interval: Duration::ZERO,
        max_batch_bytes: usize::MAX,
        strategy: crate::config::StrategyKind::Priority,
        retry: crate::pipeline::RetryPolicy {
            max_retries: 0,
            retry_delay: Duration::ZERO,
        },
        row_overhead_bytes: 0,
    }
}

pub(super) fn entry(id: u64, tier: Tier, at: Instant) -> Admitted {
    fixtures::admitted(&format!("r{id}"), (tier, 0, id as i64), tier, at)
}

pub(super) fn ids(batch: &[Admitted]) -> Vec<&str> {
    batch
        .iter()
        .map(|a| a.request.request_id.as_str())
        .collect()
}

#[test]
fn empty_state_is_never_ready_and_never_yields_a_batch() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    assert_eq!(s.ready(t0 + Duration::from_secs(60)), None);
    assert_eq!(s.flush_at(), None);
    assert!(s.next_batch(t0).batch.is_empty());
}

#[test]
fn a_full_batch_is_due_at_once_and_capped_at_max() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    for i in 0..6 {
        s.push(entry(i, Tier::Normal, t0));
    }
    assert_eq!(s.ready(t0), Some(FlushReason::Full));
    let sel = s.next_batch(t0);
    assert_eq!(ids(&sel.batch), ["r0", "r1", "r2", "r3"]);
    assert_eq!(s.len(), 2);
}

#[test]
fn a_partial_batch_waits_for_its_tier_wait() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    s.push(entry(1, Tier::Low, t0));
    assert_eq!(s.flush_at(), Some(t0 + Duration::from_millis(20)));
    assert_eq!(s.ready(t0 + Duration::from_millis(19)), None);
    assert_eq!(
        s.ready(t0 + Duration::from_millis(20)),
        Some(FlushReason::Wait)
    );
    // A critical arrival shortens the wait to its own.
    s.push(entry(2, Tier::Critical, t0 + Duration::from_millis(1)));
    assert_eq!(s.flush_at(), Some(t0 + Duration::from_millis(3)));
}

#[test]
fn below_min_batch_size_only_the_absolute_timeout_flushes() {
    let mut s = State::new(BatchPolicy {
        min_batch_size: 3,
        ..policy()
    });
    let t0 = Instant::now();
    s.push(entry(1, Tier::Critical, t0));
    assert_eq!(s.ready(t0 + Duration::from_millis(10)), None);
    assert_eq!(
        s.ready(t0 + Duration::from_millis(50)),
        Some(FlushReason::Timeout)
    );
}

#[test]
fn strict_priority_orders_the_batch() {
    let mut s = State::new(BatchPolicy {
        boost_threshold: 100,
        ..policy()
    });
    let t0 = Instant::now();
    s.push(entry(1, Tier::Low, t0));
    s.push(entry(2, Tier::Normal, t0));
    s.push(entry(3, Tier::High, t0));
    s.push(entry(4, Tier::Critical, t0));
    s.push(entry(5, Tier::Critical, t0));
    assert_eq!(ids(&s.next_batch(t0).batch), ["r4", "r5", "r3", "r2"]);
    assert_eq!(ids(&s.next_batch(t0).batch), ["r1"]);
}

#[test]
fn a_long_lower_tier_queue_is_boosted_into_every_batch() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    for i in 0..8 {
        s.push(entry(i, Tier::Critical, t0));
    }
    for i in 100..103 {
        s.push(entry(i, Tier::Low, t0));
    }
    let batch = s.next_batch(t0).batch;
    assert_eq!(batch.len(), 4);
    assert_eq!(
        batch.iter().filter(|a| a.tier == Tier::Low).count(),
        1,
        "low gets its quota"
    );
}

#[test]
fn an_aged_request_is_boosted_even_in_a_short_queue() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    s.push(entry(100, Tier::Low, t0));
    let later = t0 + Duration::from_millis(60);
    for i in 0..8 {
        s.push(entry(i, Tier::Critical, later));
    }
    assert!(ids(&s.next_batch(later).batch).contains(&"r100"));
}

#[test]
fn expired_requests_are_never_batched() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    let mut late = entry(1, Tier::High, t0);
    late.deadline = Some(t0 + Duration::from_millis(1));
    s.push(late);
    s.push(entry(2, Tier::High, t0));
    let sel = s.next_batch(t0 + Duration::from_millis(5));
    assert_eq!(ids(&sel.batch), ["r2"]);
    let expired: Vec<_> = sel
        .expired
        .into_iter()
        .map(|(a, why)| (a.request.request_id, why))
        .collect();
    assert_eq!(expired, [("r1".to_string(), Expiry::Deadline)]);
    assert!(s.is_empty());
}

#[test]
fn capacity_is_per_tier() {
    let mut s = State::new(policy());
    let t0 = Instant::now();
    for i in 0..8 {
        s.push(entry(i, Tier::Low, t0));
    }
    assert!(!s.has_room(Tier::Low));
    assert!(s.has_room(Tier::Critical));
}

#[test]
fn without_priority_queueing_all_tiers_share_one_fifo() {
    let mut s = State::new(BatchPolicy {
        priority: false,
        ..policy()
    });
    let t0 = Instant::now();
    s.push(entry(1, Tier::Low, t0));
    s.push(entry(2, Tier::Critical, t0));
    assert_eq!(s.depth(Tier::Low), 1);
    assert_eq!(ids(&s.next_batch(t0).batch), ["r1", "r2"]);
}

pub(super) struct Harness {
    pub tiers: [mpsc::Sender<Admitted>; 4],
    pub batches: mpsc::Receiver<Batch>,
    pub outcomes: mpsc::Receiver<Outcome>,
    pub feedback: mpsc::Sender<crate::pipeline::BatchDone>,
    pub task: tokio::task::JoinHandle<BatcherReport>,
    /// Resource readings, as the sampler publishes them.
    pub utilization: watch::Sender<crate::resources::Utilization>,
    /// Reloaded configurations, as `config::reload` publishes them.
    pub config: watch::Sender<Arc<crate::config::Config>>,
}

/// Adaptive sizing off: the batch cap is `max_batch_size`.
pub(super) fn fixed(policy: &BatchPolicy) -> adaptive::AdaptiveParams {
    let mut cfg = crate::config::Config::default();
    cfg.adaptive_batching.enable_adaptive_batching = false;
    cfg.batch_processing.max_batch_size = policy.max_batch_size;
    cfg.batch_processing.max_queue_size = policy.max_batch_size;
    cfg.batch_processing.min_batch_size = 1;
    adaptive::AdaptiveParams::from_config(&cfg)
}

pub(super) fn start(policy: BatchPolicy, workers: usize) -> Harness {
    start_with(
        policy,
        workers,
        None,
        dedup::DedupParams::from_config(&Default::default()),
    )
}

pub(super) fn start_with(
    policy: BatchPolicy,
    workers: usize,
    adaptive: Option<adaptive::AdaptiveParams>,
    dedup: dedup::DedupParams,
) -> Harness {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel(16)).unzip();
    let (btx, brx) = mpsc::channel(workers);
    let (otx, orx) = mpsc::channel(64);
    let (ftx, frx) = mpsc::channel(8);
    let pool = WorkerPool {
        idle: Arc::new(Semaphore::new(workers)),
        batches: btx,
    };
    let rxs: [mpsc::Receiver<Admitted>; 4] = rxs.try_into().unwrap_or_else(|_| unreachable!());
    let (utilization, util_rx) = watch::channel(Default::default());
    let (config, config_rx) = watch::channel(Arc::new(crate::config::Config::default()));
    let task = tokio::spawn(run_batcher(BatcherParts {
        adaptive: adaptive.unwrap_or_else(|| fixed(&policy)),
        policy,
        dedup,
        tiers: rxs,
        pool,
        outcomes: otx,
        feedback: frx,
        utilization: util_rx,
        telemetry: crate::telemetry::Telemetry::new(&Default::default()).expect("telemetry"),
        config: config_rx,
    }));
    Harness {
        tiers: txs.try_into().unwrap_or_else(|_| unreachable!()),
        batches: brx,
        outcomes: orx,
        feedback: ftx,
        task,
        utilization,
        config,
    }
}

#[tokio::test(start_paused = true)]
async fn task_flushes_a_partial_batch_after_the_tier_wait() {
    let mut h = start(policy(), 1);
    let t0 = Instant::now();
    h.tiers[2].send(entry(1, Tier::Normal, t0)).await.unwrap();
    let batch = h.batches.recv().await.unwrap();
    assert_eq!(batch.flush_reason, FlushReason::Wait);
    assert_eq!(batch.formed_at - t0, Duration::from_millis(10));
    assert_eq!(ids(&batch.requests), ["r1"]);
}

#[tokio::test(start_paused = true)]
async fn next_batch_grows_while_the_worker_is_busy() {
    let mut h = start(policy(), 1);
    let t0 = Instant::now();
    h.tiers[0].send(entry(1, Tier::Critical, t0)).await.unwrap();
    let first = h.batches.recv().await.unwrap();
    assert_eq!(first.requests.len(), 1);
    // The only worker is busy (its permit lives in `first`): arrivals accumulate.
    for i in 2..=6 {
        h.tiers[0]
            .send(entry(i, Tier::Critical, Instant::now()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        h.batches.try_recv().is_err(),
        "no batch without a free worker"
    );
    drop(first);
    let second = h.batches.recv().await.unwrap();
    assert_eq!(
        (second.requests.len(), second.flush_reason),
        (4, FlushReason::Full)
    );
}

#[tokio::test(start_paused = true)]
async fn closing_the_inputs_drains_everything_then_ends() {
    let mut h = start(
        BatchPolicy {
            max_batch_size: 8,
            min_batch_size: 8,
            batch_timeout: Duration::from_secs(5),
            ..policy()
        },
        2,
    );
    for i in 0..3 {
        h.tiers[3]
            .send(entry(i, Tier::Low, Instant::now()))
            .await
            .unwrap();
    }
    let mut late = entry(9, Tier::High, Instant::now());
    late.deadline = Some(Instant::now());
    h.tiers[1].send(late).await.unwrap();
    drop(h.tiers);
    let batch = h.batches.recv().await.unwrap();
    assert_eq!(
        (batch.requests.len(), batch.flush_reason),
        (3, FlushReason::Drain)
    );
    let Some(Outcome::Reply { reply, .. }) = h.outcomes.recv().await else {
        panic!("no expiry reply")
    };
    assert_eq!(
        (reply.request_id.as_str(), reply.status),
        ("r9", Status::DeadlineExceeded)
    );
    drop(batch);
    let report = h.task.await.unwrap();
    assert_eq!((report.batches, report.requests, report.expired), (1, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_max_batch_size_and_retry_policy_apply_from_the_next_batch() {
    let mut h = start(policy(), 1);
    let t0 = Instant::now();
    for i in 0..8 {
        h.tiers[2].send(entry(i, Tier::Normal, t0)).await.unwrap();
    }
    assert_eq!(h.batches.recv().await.unwrap().requests.len(), 4);
    assert_eq!(h.batches.recv().await.unwrap().requests.len(), 4);

    let mut cfg = crate::config::Config::default();
    cfg.adaptive_batching.enable_adaptive_batching = false;
    cfg.batch_processing.max_batch_size = 8;
    cfg.batch_processing.max_retries = 5;
    cfg.batch_processing.retry_delay = 0.25;
    h.config.send(Arc::new(cfg)).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    for i in 8..16 {
        h.tiers[2].send(entry(i, Tier::Normal, t0)).await.unwrap();
    }
    let batch = h.batches.recv().await.unwrap();
    assert_eq!(
        (batch.requests.len(), batch.flush_reason),
        (8, FlushReason::Full)
    );
    // The workers retry this batch's lone failures by the reloaded policy.
    assert_eq!(
        batch.retry,
        crate::pipeline::RetryPolicy {
            max_retries: 5,
            retry_delay: Duration::from_millis(250)
        }
    );
}
