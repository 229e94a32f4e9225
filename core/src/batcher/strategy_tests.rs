//! The default strategy's batch plan: how boosted lower tiers share a batch with the tier above.

use std::time::Duration;

use super::*;
use crate::batcher::State;
use crate::config::StrategyKind;

/// Production-like sizes: batches of up to 32, a boost quota of 8 (a quarter).
fn policy() -> BatchPolicy {
    BatchPolicy {
        max_batch_size: 32,
        min_batch_size: 1,
        tier_wait: [2, 5, 10, 20].map(Duration::from_millis),
        batch_timeout: Duration::from_millis(50),
        priority: true,
        tier_capacity: 250,
        boost_threshold: 10,
        boost_quota: 8,
        aging_limit: Duration::from_millis(50),
        starvation_bound: None,
        min_interval: Duration::ZERO,
        max_batch_bytes: usize::MAX,
        strategy: StrategyKind::Priority,
        retry: crate::pipeline::RetryPolicy {
            max_retries: 0,
            retry_delay: Duration::ZERO,
        },
        row_overhead_bytes: 0,
    }
}

/// Every tier with `lens[q]` queued, the oldest admitted `ages_ms[q]` before `now`.
fn plan(p: &BatchPolicy, lens: [usize; 4], ages_ms: [u64; 4], room: usize) -> [usize; 4] {
    let now = Instant::now() + Duration::from_secs(10);
    let queues = std::array::from_fn(|q| QueueStats {
        len: lens[q],
        oldest: (lens[q] > 0).then(|| now - Duration::from_millis(ages_ms[q])),
    });
    let view = QueueView {
        queues,
        len: lens.iter().sum(),
        bytes: 0,
        target: room,
        policy: p,
    };
    PriorityStrategy.plan(&view, room, now)
}

#[test]
fn a_full_batch_gives_each_boosted_tier_its_quota_within_half() {
    let p = policy();
    // One boosted tier: its whole quota of 8.
    assert_eq!(
        plan(&p, [500, 0, 0, 500], [5, 0, 0, 200], 32),
        [24, 0, 0, 8]
    );
    // Three: 8 each would leave critical 8 of 32; capped at half, 5 each.
    assert_eq!(
        plan(&p, [500, 500, 500, 500], [5, 200, 200, 200], 32),
        [17, 5, 5, 5]
    );
}

#[test]
fn a_small_target_never_goes_to_the_boosted_tiers_whole() {
    let p = policy();
    // The adaptive target at 6 with a long aged low queue: before, low's quota of 8 took all 6
    // slots and critical waited for as long as low stayed long (a backlog: the whole drain).
    let take = plan(&p, [300, 0, 0, 500], [5, 0, 0, 200], 6);
    assert_eq!(take, [5, 0, 0, 1]);
    // Three boosted tiers in a batch of 6: one slot each, critical the other half.
    assert_eq!(
        plan(&p, [300, 50, 50, 500], [5, 90, 80, 200], 6),
        [3, 1, 1, 1]
    );
}

#[test]
fn when_half_a_batch_is_fewer_slots_than_boosted_tiers_the_oldest_get_them() {
    let p = policy();
    // Room 4: a cap of 2 for three boosted tiers; low and high waited longest.
    assert_eq!(
        plan(&p, [300, 50, 50, 50], [5, 150, 90, 400], 4),
        [2, 1, 0, 1]
    );
}

#[test]
fn a_batch_of_one_goes_by_strict_priority() {
    let p = policy();
    assert_eq!(
        plan(&p, [300, 0, 0, 500], [5, 0, 0, 5_000], 1),
        [1, 0, 0, 0]
    );
}

#[test]
fn unused_slots_still_go_to_lower_tiers() {
    let p = policy();
    // Critical has 3: the boosted low tier gets its share and then the rest of the batch.
    assert_eq!(plan(&p, [3, 0, 0, 500], [5, 0, 0, 200], 32), [3, 0, 0, 29]);
    // Nothing boosted (short and young): strict priority fills the batch in tier order.
    assert_eq!(plan(&p, [3, 4, 0, 5], [1, 1, 0, 1], 32), [3, 4, 0, 5]);
}

/// A view of `lens` queued per tier, the oldest `ages_ms` old at `now`.
fn view_at(p: &BatchPolicy, lens: [usize; 4], ages_ms: [u64; 4], now: Instant) -> QueueView<'_> {
    QueueView {
        queues: std::array::from_fn(|q| QueueStats {
            len: lens[q],
            oldest: (lens[q] > 0).then(|| now - Duration::from_millis(ages_ms[q])),
        }),
        len: lens.iter().sum(),
        bytes: 0,
        target: p.max_batch_size,
        policy: p,
    }
}

#[test]
fn latency_closes_at_once_for_critical_and_never_holds_for_size() {
    let p = BatchPolicy {
        min_batch_size: 8,
        strategy: StrategyKind::Latency,
        ..policy()
    };
    let now = Instant::now() + Duration::from_secs(10);
    let (latency, priority) = (LatencyStrategy, PriorityStrategy);
    // One critical request, just admitted: latency runs it now; the default waits its 2 ms.
    let v = view_at(&p, [1, 0, 0, 0], [0, 0, 0, 0], now);
    assert_eq!(latency.due(&v, now), Some(FlushReason::Wait));
    assert_eq!(priority.due(&v, now), None);
    // Three normal requests past their 10 ms wait, under min_batch_size 8: latency runs them;
    // the default holds them for size until the 50 ms batch timeout.
    let v = view_at(&p, [0, 0, 3, 0], [0, 0, 12, 0], now);
    assert_eq!(latency.due(&v, now), Some(FlushReason::Wait));
    assert_eq!(priority.due(&v, now), None);
    assert_eq!(
        priority.wake_at(&v),
        Some(now - Duration::from_millis(12) + p.batch_timeout)
    );
    // Before any wait runs out, latency waits too.
    let v = view_at(&p, [0, 0, 3, 0], [0, 0, 4, 0], now);
    assert_eq!(latency.due(&v, now), None);
    assert_eq!(
        latency.wake_at(&v),
        Some(now - Duration::from_millis(4) + Duration::from_millis(10))
    );
}

#[test]
fn latency_fills_in_strict_tier_order_without_boost_shares() {
    let p = policy();
    let now = Instant::now() + Duration::from_secs(10);
    // A long, aged low tier: the default gives it its quota; latency gives it what is left.
    let v = view_at(&p, [500, 0, 0, 500], [5, 0, 0, 200], now);
    assert_eq!(PriorityStrategy.plan(&v, 32, now), [24, 0, 0, 8]);
    assert_eq!(LatencyStrategy.plan(&v, 32, now), [32, 0, 0, 0]);
    let v = view_at(&p, [3, 4, 0, 500], [5, 5, 0, 200], now);
    assert_eq!(LatencyStrategy.plan(&v, 32, now), [3, 4, 0, 25]);
}

#[test]
fn the_configured_strategy_is_the_one_a_state_runs_and_a_reload_swaps_it() {
    let mut s = State::new(policy());
    assert_eq!(s.strategy_name(), "priority");
    s.set_policy(BatchPolicy {
        strategy: StrategyKind::Latency,
        ..policy()
    });
    assert_eq!(s.strategy_name(), "latency");
    let mut cfg = crate::config::Config::default();
    cfg.batch_processing.strategy = StrategyKind::Latency;
    assert_eq!(
        State::new(BatchPolicy::from_config(&cfg)).strategy_name(),
        "latency"
    );
}
