//! Unit tests of `observe`.

use super::*;

use rdkafka::statistics::{Broker, Partition, Topic};

fn sample(broker_state: &str, hi: i64, committed: i64) -> Statistics {
    sample_with_stable(broker_state, hi, hi, committed)
}

fn sample_with_stable(broker_state: &str, hi: i64, ls: i64, committed: i64) -> Statistics {
    let mut s = Statistics::default();
    let broker = |nodeid: i32, state: &str| Broker {
        nodeid,
        state: state.into(),
        ..Broker::default()
    };
    s.brokers.insert("bootstrap".into(), broker(-1, "UP"));
    s.brokers.insert("b1".into(), broker(1, broker_state));
    let mut topic = Topic::default();
    topic.partitions.insert(
        0,
        Partition {
            partition: 0,
            hi_offset: hi,
            ls_offset: ls,
            lo_offset: 0,
            committed_offset: committed,
            ..Partition::default()
        },
    );
    let name = TierTopics::default().topic(Tier::Critical).to_owned();
    s.topics.insert(name, topic);
    s
}

#[test]
fn only_a_real_broker_session_counts_as_up() {
    assert!(broker_up(&sample("UP", 10, 0)));
    assert!(!broker_up(&sample("DOWN", 10, 0)));
    assert!(!broker_up(&sample("CONNECT", 10, 0)));
}

#[test]
fn lag_counts_from_kbatchs_commit_point_then_the_groups() {
    let topics = TierTopics::default();
    let s = sample("UP", 100, 40);
    let assigned = [(Tier::Critical, 0)];
    let t = topics.topic(Tier::Critical).to_owned();
    let hw = LogEnd::HighWatermark;
    // kbatch has answered up to offset 90.
    assert_eq!(
        lags(&s, &topics, &[(Tier::Critical, 0, 90)], &assigned, hw),
        [(t.clone(), 0, 10)]
    );
    // Nothing answered yet in this process: the group's committed offset.
    assert_eq!(lags(&s, &topics, &[], &assigned, hw), [(t.clone(), 0, 60)]);
    // Unknown high watermark: nothing reported.
    assert!(lags(&sample("UP", -1, 40), &topics, &[], &assigned, hw).is_empty());
    // Not assigned here: not ours to report.
    assert!(lags(&s, &topics, &[], &[(Tier::Low, 0)], hw).is_empty());
}

#[test]
fn under_read_committed_lag_ends_at_the_last_stable_offset() {
    let topics = TierTopics::default();
    let t = topics.topic(Tier::Critical).to_owned();
    // A transaction open since offset 95 holds 5 records nobody can read yet.
    let s = sample_with_stable("UP", 100, 95, 40);
    let ours = [(Tier::Critical, 0, 90)];
    let assigned = [(Tier::Critical, 0)];
    assert_eq!(
        lags(&s, &topics, &ours, &assigned, LogEnd::LastStable),
        [(t.clone(), 0, 5)]
    );
    assert_eq!(
        lags(&s, &topics, &ours, &assigned, LogEnd::HighWatermark),
        [(t, 0, 10)]
    );
    // librdkafka reports -1 until it knows the stable offset.
    let unknown = sample_with_stable("UP", 100, -1, 40);
    assert!(lags(&unknown, &topics, &ours, &assigned, LogEnd::LastStable).is_empty());
}

fn read(tier: Tier, partition: i32, next_read: Option<i64>) -> PartitionRead {
    PartitionRead {
        key: (tier, partition),
        next_read,
        in_flight: 0,
    }
}

#[test]
fn tier_lag_sums_log_end_minus_next_read_over_a_tiers_partitions() {
    let reads = [
        read(Tier::Critical, 0, Some(90)),
        read(Tier::Critical, 1, Some(100)),
        read(Tier::Low, 0, Some(5)),
    ];
    let wm = |(t, p): PartitionKey| {
        Some(match (t, p) {
            (Tier::Critical, 0) => Watermarks { low: 0, high: 100 },
            (Tier::Critical, _) => Watermarks { low: 0, high: 130 },
            _ => Watermarks { low: 0, high: 5 },
        })
    };
    let lags = tier_lags(&reads, wm, |_| None);
    assert_eq!(
        lags,
        [Some(40), Some(0), Some(0), Some(0)],
        "high and normal: nothing assigned"
    );
}

#[test]
fn a_partition_not_read_yet_counts_from_its_start_or_is_unknown() {
    let reads = [read(Tier::High, 0, None), read(Tier::Normal, 0, None)];
    let wm = |_| Some(Watermarks { low: 10, high: 50 });
    let start = |(t, _): PartitionKey| (t == Tier::High).then_some(20);
    let lags = tier_lags(&reads, wm, start);
    assert_eq!(lags[Tier::High.index()], Some(30));
    assert_eq!(lags[Tier::Normal.index()], None, "no start point: unknown");
    // An empty log has nothing waiting, start point or not.
    let empty = |_| Some(Watermarks { low: 7, high: 7 });
    assert_eq!(tier_lags(&reads, empty, |_| None), [Some(0); 4]);
    // No fetch answered yet: the log end is unknown.
    let unknown = |_| {
        Some(Watermarks {
            low: -1,
            high: -1001,
        })
    };
    assert_eq!(
        tier_lags(&reads, unknown, |_| Some(0))[Tier::High.index()],
        None
    );
}

#[test]
fn read_starts_prefer_the_committed_offset_then_the_log_start() {
    let committed = sample("UP", 100, 42);
    let assigned = [(Tier::Critical, 0), (Tier::Critical, 9)];
    let topics = TierTopics::default();
    assert_eq!(
        read_starts(&committed, &topics, &assigned),
        vec![((Tier::Critical, 0), 42)]
    );
    let never = sample("UP", 100, -1001);
    assert_eq!(
        read_starts(&never, &topics, &assigned),
        vec![((Tier::Critical, 0), 0)]
    );
}
