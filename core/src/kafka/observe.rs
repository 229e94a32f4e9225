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
#[path = "observe_tests.rs"]
mod tests;
