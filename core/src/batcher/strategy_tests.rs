//! The default strategy's batch plan: how boosted lower tiers share a batch with the tier above.

use std::time::Duration;

use super::*;

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
