//! What the consumer's librdkafka statistics say about health and lag, as pure functions of the
//! statistics and kbatch's own offset tracker.
//!
//! Invariant: lag is counted from kbatch's commit point (the first record of the partition not
//! yet answered), not from librdkafka's fetch position, so records fetched and still queued in
//! kbatch count as lag; a partition whose high watermark is unknown reports nothing rather than
//! a guess.

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

/// `(topic, partition, lag)` of every assigned tier partition with a known high watermark.
/// `positions`: kbatch's commit offsets; `assigned`: the partitions kbatch owns.
pub fn lags(
    stats: &Statistics,
    topics: &TierTopics,
    positions: &[(Tier, i32, i64)],
    assigned: &[(Tier, i32)],
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
        if p.hi_offset < 0 {
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
        out.push((topic.to_owned(), partition, (p.hi_offset - from).max(0)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use rdkafka::statistics::{Broker, Partition, Topic};

    fn sample(broker_state: &str, hi: i64, committed: i64) -> Statistics {
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
        // kbatch has answered up to offset 90.
        assert_eq!(
            lags(&s, &topics, &[(Tier::Critical, 0, 90)], &assigned),
            [(t.clone(), 0, 10)]
        );
        // Nothing answered yet in this process: the group's committed offset.
        assert_eq!(lags(&s, &topics, &[], &assigned), [(t.clone(), 0, 60)]);
        // Unknown high watermark: nothing reported.
        assert!(lags(&sample("UP", -1, 40), &topics, &[], &assigned).is_empty());
        // Not assigned here: not ours to report.
        assert!(lags(&s, &topics, &[], &[(Tier::Low, 0)]).is_empty());
    }
}
