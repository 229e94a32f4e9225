//! Which input offsets may be committed: per partition, only the contiguous prefix of records
//! whose outcome has been delivered.
//!
//! Invariant: a commit offset returned here never passes an offset that is still pending (tracked
//! but not done) or abandoned; work finished under an older assignment epoch (after a revoke) is
//! ignored, so it can never move a commit point. Pure data: no rdkafka types, no locking.
//!
//! Priorities reorder completion (a critical record read after a low one is answered first), so
//! "done" is a set, and the commit point is the lowest offset still pending, or one past the
//! last tracked offset when nothing is pending.

use std::collections::{BTreeSet, HashMap};

use crate::pipeline::Origin;
use crate::tier::Tier;

/// A partition of one of the four tier topics.
pub type PartitionKey = (Tier, i32);

#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    /// Offsets tracked and not yet done.
    pending: BTreeSet<i64>,
    /// Highest offset tracked in this epoch.
    last: Option<i64>,
    /// Commit point at the start of the epoch (the first tracked offset): committing it would
    /// say nothing new, so it is not reported.
    base: Option<i64>,
    /// Lowest offset given up without an outcome (dropped from a stash on revoke or shutdown):
    /// the commit point never passes it.
    ceiling: Option<i64>,
    /// Commit point last returned by `committable`.
    reported: Option<i64>,
}

impl PartitionState {
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            pending: BTreeSet::new(),
            last: None,
            base: None,
            ceiling: None,
            reported: None,
        }
    }

    /// The Kafka commit offset (next offset to read), if anything was tracked.
    fn commit_point(&self) -> Option<i64> {
        let next = self.last? + 1;
        let lowest_pending = self.pending.first().copied().unwrap_or(next);
        Some(lowest_pending.min(self.ceiling.unwrap_or(next)).min(next))
    }

    /// The commit point, if it is past where this epoch started.
    fn progress(&self) -> Option<i64> {
        let point = self.commit_point()?;
        (Some(point) > self.base).then_some(point)
    }
}

/// How far kbatch has read one assigned partition, for the tier-aware intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRead {
    pub key: PartitionKey,
    /// One past the highest offset read in this assignment; `None` before the first record.
    pub next_read: Option<i64>,
    /// Records read and not yet answered.
    pub in_flight: usize,
}

/// Per-partition bookkeeping of in-flight records. See the module invariant.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<PartitionKey, PartitionState>,
    next_epoch: u64,
    total_pending: usize,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a newly assigned partition; returns its new epoch. Re-assigning a
    /// partition that is still tracked starts it afresh (its old work is no longer committable).
    pub fn assign(&mut self, tier: Tier, partition: i32) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        if let Some(old) = self
            .partitions
            .insert((tier, partition), PartitionState::new(epoch))
        {
            self.total_pending -= old.pending.len();
        }
        epoch
    }

    /// Stops tracking a revoked partition; returns its final commit offset if it made progress.
    pub fn revoke(&mut self, tier: Tier, partition: i32) -> Option<i64> {
        let state = self.partitions.remove(&(tier, partition))?;
        self.total_pending -= state.pending.len();
        state.progress()
    }

    /// Every assigned partition's read position and in-flight count.
    pub fn reads(&self) -> Vec<PartitionRead> {
        self.partitions
            .iter()
            .map(|(&key, s)| PartitionRead {
                key,
                next_read: s.last.map(|l| l + 1),
                in_flight: s.pending.len(),
            })
            .collect()
    }

    /// Marks `offset` as in flight; returns the partition's epoch, or `None` when the partition
    /// is not assigned (the record must then be skipped).
    pub fn track(&mut self, tier: Tier, partition: i32, offset: i64) -> Option<u64> {
        let state = self.partitions.get_mut(&(tier, partition))?;
        if state.base.is_none() {
            state.base = Some(offset);
        }
        state.last = Some(state.last.map_or(offset, |l| l.max(offset)));
        if state.pending.insert(offset) {
            self.total_pending += 1;
        }
        Some(state.epoch)
    }

    /// Marks the record at `origin` as answered. Returns false (and changes nothing) when its
    /// partition was revoked or reassigned since it was tracked, or it is not pending.
    pub fn done(&mut self, origin: &Origin) -> bool {
        self.finish(origin).is_some()
    }

    /// Like `done`, also reporting whether its partition has nothing pending any more.
    pub(crate) fn finish(&mut self, origin: &Origin) -> Option<bool> {
        let state = self
            .partitions
            .get_mut(&(origin.topic_tier, origin.partition))?;
        if state.epoch != origin.epoch || !state.pending.remove(&origin.offset) {
            return None;
        }
        self.total_pending -= 1;
        Some(state.pending.is_empty())
    }

    /// Gives up on the record at `origin` without an outcome: it stops being pending (so drains
    /// do not wait for it) but the partition's commit point never passes it.
    pub fn abandon(&mut self, origin: &Origin) -> bool {
        let Some(state) = self
            .partitions
            .get_mut(&(origin.topic_tier, origin.partition))
        else {
            return false;
        };
        if state.epoch != origin.epoch || !state.pending.remove(&origin.offset) {
            return false;
        }
        self.total_pending -= 1;
        state.ceiling = Some(
            state
                .ceiling
                .map_or(origin.offset, |c| c.min(origin.offset)),
        );
        true
    }

    /// Commit offsets of the partitions whose commit point moved since the last call.
    pub fn committable(&mut self) -> Vec<(Tier, i32, i64)> {
        let mut out = Vec::new();
        for (&(tier, partition), state) in &mut self.partitions {
            if let Some(point) = state.progress() {
                if Some(point) > state.reported {
                    state.reported = Some(point);
                    out.push((tier, partition, point));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// An offset commit of `offsets` failed: each partition whose last reported point is the
    /// failed one reports it again from the next `committable`, so a partition that then stays
    /// idle still gets its commit point to the broker (else it would stay behind for good:
    /// replays after a crash, false lag).
    pub fn commit_failed(&mut self, offsets: &[(Tier, i32, i64)]) {
        for &(tier, partition, offset) in offsets {
            if let Some(state) = self.partitions.get_mut(&(tier, partition)) {
                if state.reported == Some(offset) {
                    state.reported = None;
                }
            }
        }
    }

    /// Current commit offsets of every partition that made progress, moved since the last
    /// `committable` or not: for synchronous commits, which must not rely on an earlier
    /// asynchronous one having succeeded.
    pub fn positions(&self) -> Vec<(Tier, i32, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(&(t, p), s)| s.progress().map(|o| (t, p, o)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The commit offsets `positions` would return once every record at `origins` is done,
    /// without marking them: what an exactly-once transaction commits together with their
    /// outcomes (they are marked done only after it commits). Origins of an older epoch count
    /// for nothing, as in `done`.
    pub fn positions_if_done(&self, origins: &[Origin]) -> Vec<(Tier, i32, i64)> {
        let mut done: HashMap<PartitionKey, BTreeSet<i64>> = HashMap::new();
        for o in origins {
            let key = (o.topic_tier, o.partition);
            if self
                .partitions
                .get(&key)
                .is_some_and(|s| s.epoch == o.epoch)
            {
                done.entry(key).or_default().insert(o.offset);
            }
        }
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(&key, s)| {
                let point = match done.get(&key) {
                    None => s.progress()?,
                    Some(d) => {
                        let next = s.last? + 1;
                        let lowest = s.pending.iter().find(|o| !d.contains(o)).copied();
                        let point = lowest.unwrap_or(next).min(s.ceiling.unwrap_or(next));
                        (Some(point) > s.base).then_some(point)?
                    }
                };
                Some((key.0, key.1, point))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether `origin` belongs to a partition's current assignment: its outcome may still be
    /// produced. Outcomes of an assignment given up (revoked, or revoked and assigned again)
    /// belong to whoever owns the partition now, who reads the record again.
    pub fn is_current(&self, origin: &Origin) -> bool {
        self.partitions
            .get(&(origin.topic_tier, origin.partition))
            .is_some_and(|s| s.epoch == origin.epoch)
    }

    /// Records of the partition still waiting for their outcome.
    pub fn pending(&self, tier: Tier, partition: i32) -> usize {
        self.partitions
            .get(&(tier, partition))
            .map_or(0, |s| s.pending.len())
    }

    pub fn total_pending(&self) -> usize {
        self.total_pending
    }

    /// Partitions currently assigned.
    pub fn assigned(&self) -> Vec<PartitionKey> {
        let mut out: Vec<_> = self.partitions.keys().copied().collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
