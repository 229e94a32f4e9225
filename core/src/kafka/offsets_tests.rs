//! Unit tests of the offset tracker: the contiguous-prefix rule and epochs.

use proptest::prelude::*;

use super::*;

fn origin(tier: Tier, partition: i32, offset: i64, epoch: u64) -> Origin {
    Origin {
        topic_tier: tier,
        partition,
        offset,
        epoch,
    }
}

#[test]
fn untracked_partitions_are_skipped() {
    let mut t = OffsetTracker::new();
    assert_eq!(t.track(Tier::Low, 0, 5), None);
    assert_eq!(t.total_pending(), 0);
    assert!(t.committable().is_empty());
}

#[test]
fn commit_point_stops_at_the_lowest_pending_offset() {
    let mut t = OffsetTracker::new();
    let e = t.assign(Tier::High, 2);
    for off in 10..15 {
        assert_eq!(t.track(Tier::High, 2, off), Some(e));
    }
    // 12 and 14 finish first (a higher tier overtook them): nothing is committable yet.
    assert!(t.done(&origin(Tier::High, 2, 12, e)));
    assert!(t.done(&origin(Tier::High, 2, 14, e)));
    assert!(t.committable().is_empty(), "10 is still pending");
    assert!(t.done(&origin(Tier::High, 2, 10, e)));
    assert_eq!(t.committable(), vec![(Tier::High, 2, 11)]);
    assert!(t.committable().is_empty(), "only reported when it moves");
    assert!(t.done(&origin(Tier::High, 2, 11, e)));
    assert_eq!(t.committable(), vec![(Tier::High, 2, 13)]);
    assert!(t.done(&origin(Tier::High, 2, 13, e)));
    assert_eq!(t.committable(), vec![(Tier::High, 2, 15)]);
    assert_eq!(t.pending(Tier::High, 2), 0);
    assert_eq!(t.positions(), vec![(Tier::High, 2, 15)]);
}

#[test]
fn work_finished_after_a_revoke_is_never_committed() {
    let mut t = OffsetTracker::new();
    let old = t.assign(Tier::Normal, 0);
    t.track(Tier::Normal, 0, 0);
    t.track(Tier::Normal, 0, 1);
    assert!(t.done(&origin(Tier::Normal, 0, 0, old)));
    assert_eq!(
        t.revoke(Tier::Normal, 0),
        Some(1),
        "final offset covers the done prefix"
    );
    assert_eq!(t.total_pending(), 0);
    assert!(
        !t.done(&origin(Tier::Normal, 0, 1, old)),
        "revoked: ignored"
    );

    let new = t.assign(Tier::Normal, 0);
    assert_ne!(new, old);
    t.track(Tier::Normal, 0, 1);
    assert!(
        !t.done(&origin(Tier::Normal, 0, 1, old)),
        "stale epoch must not count"
    );
    assert_eq!(t.pending(Tier::Normal, 0), 1);
    assert!(t.committable().is_empty());
}

#[test]
fn revoke_without_progress_returns_nothing() {
    let mut t = OffsetTracker::new();
    t.assign(Tier::Critical, 1);
    assert_eq!(t.revoke(Tier::Critical, 1), None);
    t.assign(Tier::Critical, 1);
    t.track(Tier::Critical, 1, 7);
    assert_eq!(
        t.revoke(Tier::Critical, 1),
        None,
        "7 is pending: nothing new to commit"
    );
    assert_eq!(t.revoke(Tier::Critical, 1), None, "already revoked");
}

#[test]
fn abandoned_records_stop_pending_but_cap_the_commit_point() {
    let mut t = OffsetTracker::new();
    let e = t.assign(Tier::Low, 0);
    for off in 0..4 {
        t.track(Tier::Low, 0, off);
    }
    assert!(t.abandon(&origin(Tier::Low, 0, 1, e)));
    for off in [0, 2, 3] {
        assert!(t.done(&origin(Tier::Low, 0, off, e)));
    }
    assert_eq!(t.pending(Tier::Low, 0), 0);
    assert_eq!(
        t.committable(),
        vec![(Tier::Low, 0, 1)],
        "never past the abandoned 1"
    );
}

#[test]
fn partitions_of_different_topics_are_separate() {
    let mut t = OffsetTracker::new();
    let a = t.assign(Tier::Critical, 0);
    let b = t.assign(Tier::Low, 0);
    t.track(Tier::Critical, 0, 3);
    t.track(Tier::Low, 0, 3);
    assert!(t.done(&origin(Tier::Low, 0, 3, b)));
    assert!(
        !t.done(&origin(Tier::Low, 0, 3, a)),
        "epoch of another partition"
    );
    assert_eq!(t.committable(), vec![(Tier::Low, 0, 4)]);
    assert_eq!(t.total_pending(), 1);
    assert_eq!(t.assigned(), vec![(Tier::Critical, 0), (Tier::Low, 0)]);
}

proptest! {
    /// For any completion order, no reported commit offset ever passes a pending offset, commit
    /// offsets only grow, and once everything is done the last one is last + 1.
    #[test]
    fn commits_never_pass_a_pending_offset(
        start in 0i64..1000,
        order in Just((0..40usize).collect::<Vec<_>>()).prop_shuffle(),
        gaps in proptest::collection::vec(1i64..4, 40),
    ) {
        let mut t = OffsetTracker::new();
        let e = t.assign(Tier::High, 0);
        // Offsets with gaps, as after compaction or transaction markers.
        let offsets: Vec<i64> = gaps.iter().scan(start, |o, g| { *o += g; Some(*o) }).collect();
        for &o in &offsets {
            t.track(Tier::High, 0, o);
        }
        let mut done = vec![false; offsets.len()];
        let mut last_commit = i64::MIN;
        for i in order {
            prop_assert!(t.done(&origin(Tier::High, 0, offsets[i], e)));
            done[i] = true;
            for (_, _, c) in t.committable() {
                prop_assert!(c > last_commit);
                last_commit = c;
                for (j, &o) in offsets.iter().enumerate() {
                    if !done[j] {
                        prop_assert!(c <= o, "commit {} passes pending {}", c, o);
                    }
                }
            }
        }
        prop_assert_eq!(last_commit, offsets[offsets.len() - 1] + 1);
        prop_assert_eq!(t.total_pending(), 0);
    }
}

#[test]
fn positions_if_done_previews_a_transaction_without_marking_it() {
    let mut t = OffsetTracker::new();
    let epoch = t.assign(Tier::Low, 0);
    for o in 10..15 {
        t.track(Tier::Low, 0, o);
    }
    let at = |offset| Origin {
        topic_tier: Tier::Low,
        partition: 0,
        offset,
        epoch,
    };
    // 10 and 11 in the transaction: the commit point moves to 12; 13 alone would not move it.
    assert_eq!(
        t.positions_if_done(&[at(10), at(11), at(13)]),
        [(Tier::Low, 0, 12)]
    );
    assert_eq!(t.positions(), [], "nothing was marked");
    assert_eq!(t.total_pending(), 5);
    // A stale epoch counts for nothing.
    let stale = Origin {
        epoch: epoch + 9,
        ..at(10)
    };
    assert_eq!(t.positions_if_done(&[stale]), []);
    // All of them: one past the last.
    let all: Vec<Origin> = (10..15).map(at).collect();
    assert_eq!(t.positions_if_done(&all), [(Tier::Low, 0, 15)]);
}

#[test]
fn a_failed_commit_is_reported_again_though_nothing_moves() {
    let mut t = OffsetTracker::new();
    let e = t.assign(Tier::High, 0);
    for off in 10..13 {
        t.track(Tier::High, 0, off);
        t.done(&origin(Tier::High, 0, off, e));
    }
    assert_eq!(t.committable(), vec![(Tier::High, 0, 13)]);
    assert!(t.committable().is_empty(), "reported once");
    // That commit failed; the partition stays idle.
    t.commit_failed(&[(Tier::High, 0, 13)]);
    assert_eq!(t.committable(), vec![(Tier::High, 0, 13)], "made again");
    assert!(t.committable().is_empty());
    // A failure of an older point than the one reported since changes nothing.
    t.track(Tier::High, 0, 13);
    t.done(&origin(Tier::High, 0, 13, e));
    assert_eq!(t.committable(), vec![(Tier::High, 0, 14)]);
    t.commit_failed(&[(Tier::High, 0, 13), (Tier::Low, 3, 1)]);
    assert!(t.committable().is_empty());
}

#[test]
fn only_the_current_assignment_is_current() {
    let mut t = OffsetTracker::new();
    let first = t.assign(Tier::Low, 1);
    t.track(Tier::Low, 1, 4);
    assert!(t.is_current(&origin(Tier::Low, 1, 4, first)));
    t.revoke(Tier::Low, 1);
    assert!(!t.is_current(&origin(Tier::Low, 1, 4, first)));
    let second = t.assign(Tier::Low, 1);
    assert!(
        !t.is_current(&origin(Tier::Low, 1, 4, first)),
        "an old epoch"
    );
    assert!(t.is_current(&origin(Tier::Low, 1, 4, second)));
    assert!(
        !t.is_current(&origin(Tier::Low, 2, 4, second)),
        "another partition"
    );
}
