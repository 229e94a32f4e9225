//! What the consumer's librdkafka statistics say about health and lag, as pure functions of the
//! statistics and kbatch's own offset tracker.
//!
//! Invariant: lag is counted from kbatch's commit point (the first record of the partition not
//! yet answered), not from librdkafka's fetch position, so records fetched and still queued in
//! kbatch count as lag; it ends at the last offset kbatch can read: the high watermark, or under
//! `read_committed` the last stable offset (records of a transaction still open are not work
//! kbatch can do yet). A partition whose end is unknown reports nothing rather than a guess.

use rdkafka::statistics::Statistics;

use super::offsets::{PartitionKey, PartitionRead};
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

/// A partition's log start and end as librdkafka last saw them (negative: not known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// Per tier: records waiting in Kafka on the assigned partitions of `reads`, i.e. the sum of
/// (log end − next offset to read). A partition not read since its assignment is counted from
/// `start_of` (the group's committed offset, else the log start); a partition whose log end or
/// start point is unknown makes its tier's lag `None`, except an empty log (start = end), which
/// has nothing to wait for. A tier with no assigned partition has lag 0.
pub fn tier_lags(
    reads: &[PartitionRead],
    watermarks_of: impl Fn(PartitionKey) -> Option<Watermarks>,
    start_of: impl Fn(PartitionKey) -> Option<i64>,
) -> [Option<i64>; 4] {
    let mut lags = [Some(0i64); 4];
    for read in reads {
        let t = read.key.0.index();
        let lag = watermarks_of(read.key)
            .filter(|w| w.high >= 0)
            .and_then(|w| {
                let from = read.next_read.or_else(|| start_of(read.key));
                match from {
                    Some(from) => Some((w.high - from).max(0)),
                    None if w.low == w.high => Some(0),
                    None => None,
                }
            });
        lags[t] = match (lags[t], lag) {
            (Some(sum), Some(lag)) => Some(sum.saturating_add(lag)),
            _ => None,
        };
    }
    lags
}

/// Where the assigned partitions' reading starts before kbatch has read anything from them: the
/// group's committed offset, else the log start (`auto.offset.reset: earliest`).
pub fn read_starts(
    stats: &Statistics,
    topics: &TierTopics,
    assigned: &[PartitionKey],
) -> Vec<(PartitionKey, i64)> {
    assigned
        .iter()
        .filter_map(|&(tier, partition)| {
            let p = stats
                .topics
                .get(topics.topic(tier))?
                .partitions
                .get(&partition)?;
            let start = if p.committed_offset >= 0 {
                p.committed_offset
            } else {
                p.lo_offset
            };
            (start >= 0).then_some(((tier, partition), start))
        })
        .collect()
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
