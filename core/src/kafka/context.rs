//! The consumer's librdkafka context: rebalance handling, plus small helpers for committing and
//! pausing in terms of (tier, partition).
//!
//! Invariant: a partition is given up only after its in-flight records were delivered or
//! `revoke_drain_timeout_ms` passed, and after its delivered prefix was committed synchronously;
//! its stashed (never admitted) records are abandoned first, so they are never committed past.
//! Work finished after the revoke carries a stale epoch and is ignored by the tracker; under
//! exactly-once the revoke also waits for a transaction already committing, and transactions
//! after it drop (or abort for) outcomes of the revoked assignment.
//!
//! The callbacks run on the consumer's polling thread (inside `BaseConsumer::poll`), which is
//! a dedicated thread, so blocking here for the drain blocks no async task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::intake::Intake;
use super::observe;
use super::offsets::PartitionKey;
use super::shared::SharedTracker;
use super::tier_gate::TierGate;
use crate::config::TierTopics;
use crate::telemetry::{ErrorKind, Telemetry};
use crate::tier::Tier;

/// Longest a revoke waits for an exactly-once transaction that passed the commit gate: its two
/// remaining calls (offsets, commit) are bounded by 30 s each.
const COMMIT_GATE_WAIT: Duration = Duration::from_secs(65);

/// State shared between the polling loop and the rebalance callbacks.
pub struct KbatchContext {
    pub(crate) tracker: SharedTracker,
    pub(crate) topics: TierTopics,
    intake: Mutex<Intake>,
    gate: Mutex<TierGate>,
    /// Per tier: whether its assigned partitions are paused now (by backpressure or the gate).
    paused: Mutex<[bool; 4]>,
    /// Where reading of each assigned partition starts before kbatch read anything from it
    /// (from librdkafka's statistics).
    read_starts: Mutex<HashMap<PartitionKey, i64>>,
    drain_timeout: Duration,
    /// Set once the final commit is done: the revoke librdkafka runs while closing the
    /// consumer then has nothing to wait for.
    closing: AtomicBool,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Exactly-once: offsets are committed in the replier's transactions, never by the consumer.
    pub(crate) commits_in_transactions: bool,
}

impl KbatchContext {
    pub fn new(
        topics: TierTopics,
        tracker: SharedTracker,
        intake: Intake,
        gate: TierGate,
        drain_timeout: Duration,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            tracker,
            topics,
            intake: Mutex::new(intake),
            gate: Mutex::new(gate),
            paused: Mutex::new([false; 4]),
            read_starts: Mutex::new(HashMap::new()),
            drain_timeout,
            closing: AtomicBool::new(false),
            telemetry,
            commits_in_transactions: false,
        }
    }

    pub(crate) fn intake(&self) -> MutexGuard<'_, Intake> {
        // Intake operations leave it consistent at every step; a poisoned lock is still usable.
        self.intake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn gate(&self) -> MutexGuard<'_, TierGate> {
        // Gate decisions replace the whole state each time; a poisoned lock is still usable.
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pause state applied to each tier's partitions.
    pub(crate) fn paused(&self) -> MutexGuard<'_, [bool; 4]> {
        self.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where reading of `key` starts, if librdkafka's statistics said so since its assignment.
    pub(crate) fn read_start(&self, key: PartitionKey) -> Option<i64> {
        self.read_starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
    }

    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn on_assign(&self, assigned: &[PartitionKey]) {
        let now = Instant::now();
        for &(tier, partition) in assigned {
            self.tracker.assign(tier, partition);
            self.gate().assigned(tier, now);
        }
        self.telemetry.health.set_group_joined(true);
        tracing::info!(partitions = ?assigned, "partitions assigned");
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, revoked: &[PartitionKey]) {
        let dropped = self.intake().drop_partitions(revoked);
        for origin in &dropped {
            self.tracker.abandon(origin);
        }
        let wait = if self.closing.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            self.drain_timeout
        };
        if !self.tracker.wait_until_drained(revoked, wait) {
            let pending: usize = revoked
                .iter()
                .map(|&(t, p)| self.tracker.pending(t, p))
                .sum();
            tracing::warn!(pending, timeout = ?wait, "revoke: in-flight records not delivered in time; they will be re-read by the next owner");
        }
        let finals: Vec<(Tier, i32, i64)> = revoked
            .iter()
            .filter_map(|&(t, p)| self.tracker.revoke(t, p).map(|o| (t, p, o)))
            .collect();
        if self.commits_in_transactions && !self.tracker.wait_commit_finished(COMMIT_GATE_WAIT) {
            // Only a transaction call hanging past its own bound gets here.
            tracing::error!(timeout = ?COMMIT_GATE_WAIT, "revoke: an exactly-once transaction is still committing; giving the partitions up anyway");
        }
        let lost = consumer.assignment_lost();
        if lost {
            // The group evicted this member (session timeout): it must rejoin before serving.
            self.telemetry.health.set_group_joined(false);
        }
        // While closing, the shutdown has made the final commit already; committing again here
        // (synchronously, inside the close) would wait forever for a broker that is gone.
        let closing = self.closing.load(Ordering::Acquire);
        if !finals.is_empty() && !lost && !closing && !self.commits_in_transactions {
            if let Err(e) = commit(consumer, &self.topics, &finals, CommitMode::Sync) {
                self.telemetry.metrics.error(ErrorKind::Commit);
                tracing::warn!(error = %e, "revoke: committing delivered offsets failed");
            }
        }
        tracing::info!(partitions = ?revoked, stashed_dropped = dropped.len(), "partitions revoked");
    }
}

impl ClientContext for KbatchContext {
    /// Every `statistics.interval.ms`: broker reachability and per-partition lag.
    fn stats(&self, stats: Statistics) {
        let t = &self.telemetry;
        t.health.set_broker_up(observe::broker_up(&stats));
        // Exactly-once reads `read_committed`: open transactions are not lag yet.
        let end = if self.commits_in_transactions {
            observe::LogEnd::LastStable
        } else {
            observe::LogEnd::HighWatermark
        };
        let assigned = self.tracker.assigned();
        let lags = observe::lags(
            &stats,
            &self.topics,
            &self.tracker.positions(),
            &assigned,
            end,
        );
        *self
            .read_starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            observe::read_starts(&stats, &self.topics, &assigned)
                .into_iter()
                .collect();
        // Revoked partitions must not keep reporting their last lag.
        t.metrics.consumer_lag.reset();
        for (topic, partition, lag) in lags {
            t.metrics
                .consumer_lag
                .with_label_values(&[topic.as_str(), &partition.to_string()])
                .set(lag);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.metrics.error(ErrorKind::Kafka);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.telemetry.health.set_broker_up(false);
        }
        tracing::error!(%error, reason, "librdkafka");
    }
}

impl ConsumerContext for KbatchContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.on_assign(&partitions(&self.topics, tpl)),
            Rebalance::Revoke(tpl) => self.on_revoke(consumer, &partitions(&self.topics, tpl)),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    /// Newly assigned partitions of a paused topic (backpressure or the tier gate) are paused
    /// too; the others are resumed explicitly, so no pause state left from an earlier assignment
    /// can stall them.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The membership exactly-once transactions commit under (a new generation per rebalance).
        self.tracker.set_group(consumer.group_metadata());
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let assigned = partitions(&self.topics, tpl);
        let (paused, running): (Vec<PartitionKey>, Vec<PartitionKey>) = {
            let applied = *self.paused();
            assigned.iter().partition(|(t, _)| applied[t.index()])
        };
        set_paused(consumer, &self.topics, &paused, true);
        set_paused(consumer, &self.topics, &running, false);
    }

    /// A commit can fail as a whole (`result`) or partition by partition (each element's
    /// error, with `result` Ok): either way the failed points are reported again by the next
    /// periodic commit, even if their partitions stay idle.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let failed = match &result {
            Err(_) => commit_offsets(&self.topics, offsets, |_| true),
            Ok(()) => commit_offsets(&self.topics, offsets, |e| e.error().is_err()),
        };
        if failed.is_empty() {
            return;
        }
        self.telemetry.metrics.error(ErrorKind::Commit);
        let error = offsets
            .elements()
            .iter()
            .find_map(|e| e.error().err())
            .map(|e| e.to_string())
            .or(result.err().map(|e| e.to_string()));
        tracing::warn!(
            error,
            partitions = failed.len(),
            "offset commit failed; it will be made again"
        );
        self.tracker.commit_failed(&failed);
    }
}

/// The (tier, partition) pairs of a partition list, as plain data; partitions of topics that
/// are not tier topics are left out.
pub fn partitions(topics: &TierTopics, tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .filter_map(|e| Some((topics.tier_of(e.topic())?, e.partition())))
        .collect()
}

/// The (tier, partition, commit offset) entries of a partition list that `keep` selects.
fn commit_offsets(
    topics: &TierTopics,
    tpl: &TopicPartitionList,
    keep: impl Fn(&rdkafka::topic_partition_list::TopicPartitionListElem<'_>) -> bool,
) -> Vec<(Tier, i32, i64)> {
    tpl.elements()
        .iter()
        .filter(|e| keep(e))
        .filter_map(|e| {
            let Offset::Offset(offset) = e.offset() else {
                return None;
            };
            Some((topics.tier_of(e.topic())?, e.partition(), offset))
        })
        .collect()
}

/// A partition list holding `offsets` as commit offsets.
pub(super) fn offsets_list(
    topics: &TierTopics,
    offsets: &[(Tier, i32, i64)],
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for &(tier, partition, offset) in offsets {
        // Only fails for offsets librdkafka cannot represent; ours are plain non-negative ones.
        if let Err(e) =
            tpl.add_partition_offset(topics.topic(tier), partition, Offset::Offset(offset))
        {
            tracing::warn!(%tier, partition, offset, error = %e, "skipping unrepresentable offset");
        }
    }
    tpl
}

/// Commits `offsets` (Kafka commit offsets: the next record to read).
pub fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &TierTopics,
    offsets: &[(Tier, i32, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    consumer.commit(&offsets_list(topics, offsets), mode)
}

/// Pauses (or resumes) `parts`; failures are logged (a partition revoked meanwhile cannot be
/// paused, and needs not be).
pub fn set_paused<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &TierTopics,
    parts: &[PartitionKey],
    pause: bool,
) {
    if parts.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(parts.len());
    for &(tier, partition) in parts {
        tpl.add_partition(topics.topic(tier), partition);
    }
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, partitions = ?parts, "pause/resume failed");
    }
}

/// Makes librdkafka fetch `offsets` (partition, next offset to read) right away after a resume.
/// A resume does not wake the broker thread that fetches the partition, and that thread sleeps
/// up to a second when every partition it serves was paused; an asynchronous seek to the same
/// position does wake it (the records after it are fetched again either way: the pause dropped
/// what was prefetched).
pub fn wake_fetch<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &TierTopics,
    offsets: &[(Tier, i32, i64)],
) {
    if offsets.is_empty() {
        return;
    }
    if let Err(e) = consumer.seek_partitions(offsets_list(topics, offsets), Duration::ZERO) {
        tracing::debug!(error = %e, "seek after resume failed; fetching resumes at librdkafka's next wake-up");
    }
}

/// The currently assigned partitions of the topics of `tiers`, as plain data.
pub fn assigned_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &TierTopics,
    tiers: &[Tier],
) -> Vec<PartitionKey> {
    match consumer.assignment() {
        Ok(tpl) => partitions(topics, &tpl)
            .into_iter()
            .filter(|(t, _)| tiers.contains(t))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the assignment failed");
            Vec::new()
        }
    }
}
