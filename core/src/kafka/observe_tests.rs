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
