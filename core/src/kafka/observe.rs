//! What the consumer's librdkafka statistics say about health and lag, as pure functions of the
//! statistics and kbatch's own offset tracker.
//!
//! Invariant: lag is counted from kbatch's commit point (the first record of the partition not
//! yet answered), not from librdkafka's fetch position, so records fetched and still queued in
//! kbatch count as lag; it ends at the last offset kbatch can read: the high watermark, or under
//! `read_committed` the last stable offset (records of a transaction still open are not work
//! kbatch can do yet). A partition whose end is unknown reports nothing rather than a guess.

use rdkafka::statistics::Statistics;

use crate::config::TierTopics;
use crate::tier::Tier;

/// A broker counts as reachable when librdkafka holds an open session to it (`UP`); the
/// bootstrap placeholders (node id -1) do not count.
pub fn broker_up(stats: &Statistics) -> bool {
    stats
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP")
}

/// Which end of a partition's log the consumer can read up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// `read_uncommitted`: the high watermark.
    HighWatermark,
    /// `read_committed`: the last stable offset (the first offset of the oldest open
    /// transaction, else the high watermark).
    LastStable,
}

/// `(topic, partition, lag)` of every assigned tier partition whose log end is known.
/// `positions`: kbatch's commit offsets; `assigned`: the partitions kbatch owns.
pub fn lags(
    stats: &Statistics,
    topics: &TierTopics,
    positions: &[(Tier, i32, i64)],
    assigned: &[(Tier, i32)],
    end: LogEnd,
) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    for &(tier, partition) in assigned {
        let topic = topics.topic(tier);
        let Some(p) = stats
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(&partition))
        else {
            continue;
        };
        let last = match end {
            LogEnd::HighWatermark => p.hi_offset,
            LogEnd::LastStable => p.ls_offset,
        };
        if last < 0 {
            continue;
        }
        let ours = positions
            .iter()
            .find(|&&(t, q, _)| t == tier && q == partition)
            .map(|&(_, _, o)| o);
        // Before kbatch answered anything here: the group's committed offset, else the log start.
        let from = ours
            .or((p.committed_offset >= 0).then_some(p.committed_offset))
            .unwrap_or(p.lo_offset.max(0));
        out.push((topic.to_owned(), partition, (last - from).max(0)));
    }
    out
}

#[cfg(test)]
mod tests {
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
}
