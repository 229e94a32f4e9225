use std::time::{Duration, Instant};

use super::*;

const SHARE: usize = 10;

fn inputs(lag: [Option<i64>; 4], in_flight: [usize; 4], read: [u64; 4]) -> GateInputs {
    GateInputs {
        lag,
        in_flight,
        read,
        queue_full: [false; 4],
    }
}

/// A gate whose tiers were all assigned at `t0`.
fn gate(t0: Instant) -> TierGate {
    let mut g = TierGate::new(true, SHARE);
    for t in Tier::ALL {
        g.assigned(t, t0);
    }
    g
}

fn held(g: &TierGate) -> [bool; 4] {
    Tier::ALL.map(|t| g.is_held(t))
}

#[test]
fn a_settled_higher_tier_backlog_holds_every_busy_lower_tier() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let busy = [0, 50, 50, 50];
    // Lags under a share: only their duration makes them a backlog.
    let lag = [Some(3), Some(5), Some(0), Some(9)];
    // Not yet settled: a record just fetched is not a backlog.
    assert!(g.decide(&inputs(lag, busy, [1, 0, 0, 0]), t0).is_empty());
    assert_eq!(held(&g), [false; 4]);
    let later = t0 + SETTLE;
    let changes = g.decide(&inputs(lag, busy, [2, 0, 0, 0]), later);
    assert_eq!(changes.len(), 3);
    assert_eq!(held(&g), [false, true, true, true]);
    assert_eq!(
        g.state(Tier::Low).held,
        Some(HoldReason::Lag(Tier::Critical)),
        "the highest tier with a backlog is named"
    );
    assert_eq!(g.holds(Tier::High), 1);
}

#[test]
fn tiers_are_released_in_priority_order_as_backlogs_clear() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let busy = [50; 4];
    let t1 = t0 + SETTLE;
    g.decide(&inputs([Some(5); 4], busy, [0; 4]), t0);
    g.decide(&inputs([Some(5); 4], busy, [1; 4]), t1);
    assert_eq!(held(&g), [false, true, true, true]);
    // Critical caught up: high reads; normal and low wait for high.
    g.decide(
        &inputs([Some(0), Some(5), Some(5), Some(5)], busy, [2; 4]),
        t1,
    );
    assert_eq!(held(&g), [false, false, true, true]);
    assert_eq!(
        g.state(Tier::Normal).held,
        Some(HoldReason::Lag(Tier::High))
    );
    g.decide(
        &inputs([Some(0), Some(0), Some(5), Some(5)], busy, [3; 4]),
        t1,
    );
    assert_eq!(held(&g), [false, false, false, true]);
    g.decide(
        &inputs([Some(0), Some(0), Some(0), Some(5)], busy, [4; 4]),
        t1,
    );
    assert_eq!(
        held(&g),
        [false; 4],
        "the lowest tier's own lag holds nothing"
    );
}

#[test]
fn a_held_tier_is_read_below_half_its_share_and_held_again_at_its_share() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let lag = [Some(100), Some(0), Some(0), Some(100)];
    let t1 = t0 + SETTLE;
    g.decide(&inputs(lag, [0, 0, 0, 50], [0; 4]), t0);
    g.decide(&inputs(lag, [0, 0, 0, 50], [1, 0, 0, 0]), t1);
    assert!(g.is_held(Tier::Low));
    // Answered down to half the share: still held; below it: read for its share, once the
    // share period has passed since the hold began.
    g.decide(&inputs(lag, [0, 0, 0, SHARE / 2], [2, 0, 0, 0]), t1);
    assert!(g.is_held(Tier::Low));
    g.decide(&inputs(lag, [0, 0, 0, SHARE / 2 - 1], [3, 0, 0, 0]), t1);
    assert!(g.is_held(Tier::Low), "not before the share period");
    // (Critical keeps reading meanwhile: its backlog is live, not stale.)
    let t1 = t1 + SHARE_PERIOD;
    g.decide(&inputs(lag, [0, 0, 0, SHARE / 2 - 1], [4, 0, 0, 0]), t1);
    assert!(!g.is_held(Tier::Low));
    assert!(g.reading_for_share(Tier::Low));
    // Read up to just below the share: still read; at the share: held again.
    g.decide(&inputs(lag, [0, 0, 0, SHARE - 1], [5, 0, 0, 1]), t1);
    assert!(!g.is_held(Tier::Low));
    g.decide(&inputs(lag, [0, 0, 0, SHARE], [6, 0, 0, 2]), t1);
    assert!(g.is_held(Tier::Low));
    assert_eq!(g.holds(Tier::Low), 2);
}

#[test]
fn an_idle_lower_tier_is_never_held() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let lag = [Some(1_000), Some(0), Some(0), Some(0)];
    for i in 0..10u64 {
        let now = t0 + Duration::from_millis(10 * i);
        g.decide(&inputs(lag, [0, 3, 5, SHARE - 1], [i, 0, 0, 0]), now);
        assert_eq!(held(&g), [false; 4]);
    }
}

#[test]
fn a_lag_that_reads_nothing_stops_holding_after_the_stale_bound() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    // A transaction marker ends the critical partitions: lag 1 for good, nothing to read.
    let lag = [Some(1), Some(0), Some(0), Some(0)];
    let busy = [0, 50, 50, 50];
    g.decide(&inputs(lag, busy, [7, 0, 0, 0]), t0);
    g.decide(&inputs(lag, busy, [8, 0, 0, 0]), t0 + SETTLE);
    assert_eq!(held(&g), [false, true, true, true]);
    g.decide(&inputs(lag, busy, [8, 0, 0, 0]), t0 + SETTLE + STALE);
    assert_eq!(held(&g), [false; 4]);
}

#[test]
fn an_unknown_lag_holds_from_assignment_until_the_stale_bound() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let lag = [None, Some(0), Some(0), Some(0)];
    let busy = [0, 50, 50, 50];
    g.decide(&inputs(lag, busy, [0; 4]), t0);
    assert_eq!(
        g.state(Tier::High).held,
        Some(HoldReason::LagUnknown(Tier::Critical))
    );
    g.decide(&inputs(lag, busy, [0; 4]), t0 + STALE);
    assert_eq!(
        held(&g),
        [false; 4],
        "a partition never fetched holds nothing for long"
    );
}

#[test]
fn a_steady_stream_of_higher_tier_records_never_settles_into_a_hold() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let busy = [0, 0, 0, 500];
    // Each critical record is fetched (lag 1) and read before the next evaluation (lag 0).
    for i in 0..100u64 {
        let now = t0 + Duration::from_millis(5 * i);
        let lag = if i % 2 == 0 { 1 } else { 0 };
        g.decide(
            &inputs(
                [Some(lag), Some(0), Some(0), Some(0)],
                busy,
                [i / 2, 0, 0, 0],
            ),
            now,
        );
        assert!(!g.is_held(Tier::Low), "step {i}");
    }
}

#[test]
fn a_disabled_gate_never_holds() {
    let t0 = Instant::now();
    let mut g = TierGate::new(false, SHARE);
    g.decide(&inputs([Some(9); 4], [99; 4], [0; 4]), t0);
    g.decide(&inputs([Some(9); 4], [99; 4], [1; 4]), t0 + SETTLE);
    assert_eq!(held(&g), [false; 4]);
}

#[test]
fn a_higher_tier_with_a_full_queue_holds_lower_tiers_whatever_its_lag() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    // Its partitions are paused: the log end librdkafka knows no longer moves, lag reads 0.
    let mut i = inputs([Some(0); 4], [500, 50, 50, 50], [3, 0, 0, 0]);
    i.queue_full[Tier::Critical.index()] = true;
    g.decide(&i, t0 + STALE * 4);
    assert_eq!(held(&g), [false, true, true, true]);
    assert_eq!(
        g.state(Tier::Low).held,
        Some(HoldReason::QueueFull(Tier::Critical))
    );
    i.queue_full[Tier::Critical.index()] = false;
    g.decide(&i, t0 + STALE * 4);
    assert_eq!(held(&g), [false; 4]);
}

#[test]
fn every_hold_reason_is_a_preregistered_metric_label() {
    for reason in [
        HoldReason::Lag(Tier::Critical),
        HoldReason::LagUnknown(Tier::Critical),
        HoldReason::QueueFull(Tier::Critical),
    ] {
        assert!(
            crate::telemetry::metrics::INTAKE_HOLD_REASONS.contains(&reason.as_str()),
            "{}",
            reason.as_str()
        );
    }
}

#[test]
fn a_lag_of_a_share_or_more_holds_at_once() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let busy = [0, 50, 50, 50];
    g.decide(
        &inputs(
            [Some(SHARE as i64 - 1), Some(0), Some(0), Some(0)],
            busy,
            [0; 4],
        ),
        t0,
    );
    assert_eq!(held(&g), [false; 4], "a small lag must last SETTLE first");
    g.decide(
        &inputs(
            [Some(SHARE as i64), Some(0), Some(0), Some(0)],
            busy,
            [0; 4],
        ),
        t0,
    );
    assert_eq!(held(&g), [false, true, true, true]);
}

#[test]
fn a_reload_that_turns_the_gate_off_releases_every_hold_at_the_next_decision() {
    let t0 = Instant::now();
    let mut g = gate(t0);
    let busy = [0, 50, 50, 50];
    let lag = [Some(3), Some(5), Some(0), Some(9)];
    g.decide(&inputs(lag, busy, [1, 0, 0, 0]), t0);
    let later = t0 + SETTLE;
    g.decide(&inputs(lag, busy, [2, 0, 0, 0]), later);
    assert_eq!(held(&g), [false, true, true, true]);
    g.configure(false, SHARE);
    let changes = g.decide(&inputs(lag, busy, [3, 0, 0, 0]), later + SETTLE);
    assert_eq!(changes.len(), 3, "each held tier is resumed");
    assert_eq!(held(&g), [false; 4]);
    // On again with a larger share: 50 in flight is now under it, so nothing is held.
    g.configure(true, 100);
    assert_eq!(g.share(), 100);
    g.decide(&inputs(lag, busy, [4, 0, 0, 0]), later + 2 * SETTLE);
    assert_eq!(held(&g), [false; 4]);
}
