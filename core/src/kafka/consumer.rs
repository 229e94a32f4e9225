//! The request consumer: reads the four tier topics, admits each record and hands it on, and
//! commits the delivered prefix of every partition.
//!
//! Invariant: every record taken from an assigned partition is tracked before it is handed on,
//! and ends as exactly one of: an `Admitted` in its tier channel, an `Outcome` to the replier,
//! or abandoned (stashed or unsendable at revoke/shutdown), which keeps its offset from ever
//! being committed. Commits carry only the tracker's contiguous delivered prefix.
//!
//! Under a backlog the tier gate ([`TierGate`]) decides which tier topics are read: lower tiers
//! are paused while a higher tier has records waiting in Kafka (its lag, from librdkafka's
//! cached watermarks against the tracker's read positions), down to their starvation share. A
//! topic is paused while either the gate or backpressure wants it paused; pausing loses nothing
//! (librdkafka drops what it prefetched for the partition and fetches again from the next
//! offset kbatch has not read).
//!
//! One dedicated thread polls a `BaseConsumer`: librdkafka runs the rebalance callback inside
//! `poll`, and that callback blocks while revoked partitions drain, which must not stall a tokio
//! worker. The thread itself never waits for a channel: when a tier channel is full the record
//! is stashed and its topic paused, when the replier's channel is full the outcome is queued and
//! every topic paused ([`Intake`]); the loop keeps polling (1 ms timeouts) so the other topics
//! flow with low latency and the group keeps this member (`max.poll.interval.ms`) while the
//! stash is retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Decision, RecordParts};
use super::client::consumer_config;
use super::context::{assigned_of, commit, set_paused, wake_fetch, KbatchContext};
use super::headers::headers_of;
use super::intake::{Closed, Intake, Offer, OutcomeOffer};
use super::observe;
use super::tier_gate::{GateInputs, TierGate};
use super::watermarks::CachedWatermarks;
use super::{KafkaError, SharedTracker};
use crate::config::{Config, Delivery};
use crate::pipeline::{now_ms, Admitted, Origin, Outcome};
use crate::registry::Routes;
use crate::telemetry::{IntakeState, IntakeTier, Telemetry};
use crate::tier::Tier;

/// Poll timeout while nothing is stashed: bounds how late cancellation and commits are noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Poll timeout under backpressure: how often the stash and paused topics are retried.
const STASH_POLL: Duration = Duration::from_millis(1);
/// Every this many commit intervals (and at least [`MIN_FULL_COMMIT`] apart) the consumer
/// commits every partition's point, not only those that moved.
const FULL_COMMIT_EVERY: u32 = 10;
const MIN_FULL_COMMIT: Duration = Duration::from_secs(5);
/// The tier gate is decided again at most this often while records flow (each decision reads
/// every assigned partition's cached watermarks: microseconds).
const GATE_EVERY: Duration = Duration::from_millis(1);
/// Poll timeout while the gate holds a tier back, so a held tier's share is refilled promptly
/// as its requests are answered.
const GATE_POLL: Duration = Duration::from_millis(2);
/// How often the gate's inputs and decisions are published to `/stats`.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Where the consumer sends its work.
pub struct ConsumerInputs {
    /// `tiers[i]` receives requests served at `Tier::ALL[i]`.
    pub tiers: [Sender<Admitted>; 4],
    /// Immediate outcomes: dead letters, INVALID_INPUT and UNKNOWN_MODEL replies.
    pub outcomes: Sender<Outcome>,
    pub telemetry: Arc<Telemetry>,
    /// Reloaded configurations: admission's default timeouts and input hashing, and the tier
    /// gate, follow them from the next record. A closed channel means no reloads.
    pub config: watch::Receiver<Arc<Config>>,
}

/// What the consumer did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerReport {
    /// Records polled from Kafka.
    pub consumed: u64,
    /// Requests sent (or stashed for) a tier channel; shed requests are not admitted.
    pub admitted: u64,
    pub dead_lettered: u64,
    /// Answered INVALID_INPUT.
    pub invalid: u64,
    /// Answered UNKNOWN_MODEL.
    pub unknown_model: u64,
    /// Records of partitions not (or no longer) assigned, skipped untracked.
    pub skipped: u64,
    /// Times a topic was paused because a tier channel was full.
    pub paused: u64,
    /// Times the tier gate held a topic back because a higher tier had records waiting.
    pub held: u64,
    /// Requests answered OVERLOADED because their queue was full (`when_queue_full: reject`,
    /// or a request demoted to a tier whose stash of demoted requests is at its bound).
    pub shed: u64,
    /// Times the replier's channel was full and immediate outcomes waited in the backlog.
    pub outcome_backlogs: u64,
    /// Records given up without an outcome (stashed at revoke/shutdown); never committed past.
    pub abandoned: u64,
    /// Records still pending when the shutdown drain timed out.
    pub pending_at_exit: u64,
    /// The final synchronous commit failed (e.g. the group was rebalancing): the next owner
    /// re-reads from the last successful commit.
    pub final_commit_failed: bool,
}

/// Consumes the tier topics until `cancel`, then drains and commits. See the module docs.
pub async fn run_consumer(
    cfg: Arc<Config>,
    routes: Routes,
    inputs: ConsumerInputs,
    tracker: SharedTracker,
    cancel: CancellationToken,
) -> Result<ConsumerReport, KafkaError> {
    let k = &cfg.kafka;
    let intake = Intake::new(
        inputs.tiers,
        inputs.outcomes,
        cfg.batch_processing.when_queue_full,
    );
    let drain = Duration::from_millis(k.revoke_drain_timeout_ms);
    let gate = tier_gate(&cfg);
    let mut context = KbatchContext::new(
        k.topics.clone(),
        tracker,
        intake,
        gate,
        drain,
        inputs.telemetry.clone(),
    );
    context.commits_in_transactions = k.delivery == Delivery::ExactlyOnce;
    let consumer: BaseConsumer<KbatchContext> = consumer_config(&cfg)
        .create_with_context(context)
        .map_err(|source| KafkaError::Create {
            what: "consumer",
            source,
        })?;
    let topics: Vec<&str> = Tier::ALL.iter().map(|&t| k.topics.topic(t)).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| KafkaError::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            source,
        })?;
    let admission = Admission::new(&cfg, routes);
    let reloads = inputs.config;
    let watermarks = CachedWatermarks::new(&k.topics);
    let thread = tokio::task::spawn_blocking(move || {
        let now = Instant::now();
        let poll_loop = PollLoop {
            consumer: &consumer,
            cfg: &cfg,
            admission,
            reloads,
            cancel,
            report: ConsumerReport::default(),
            read: [0; 4],
            watermarks,
            next_gate: now,
            next_publish: now,
        };
        let result = poll_loop.run();
        // Closing runs the final revoke callback; every partition list is plain data by now.
        drop(consumer);
        result
    });
    thread
        .await
        .map_err(|e| KafkaError::Thread(e.to_string()))?
}

/// The tier gate the configuration asks for: a held tier's share in memory stays under the
/// batcher's boost threshold (see `TierGate`).
pub(crate) fn tier_gate(cfg: &Config) -> TierGate {
    let p = &cfg.priority_queueing;
    TierGate::new(
        p.tier_aware_intake && p.enable_priority_queueing,
        p.priority_boost_threshold,
    )
}

struct PollLoop<'a> {
    consumer: &'a BaseConsumer<KbatchContext>,
    cfg: &'a Config,
    admission: Admission,
    reloads: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
    report: ConsumerReport,
    /// Records read per topic tier (the gate watches them move).
    read: [u64; 4],
    /// `None` only for a topic name librdkafka cannot take (no such topic exists to read).
    watermarks: Option<CachedWatermarks>,
    next_gate: Instant,
    next_publish: Instant,
}

impl<'a> PollLoop<'a> {
    /// The context, borrowed from the consumer rather than from `self`, so `self` stays free.
    fn ctx(&self) -> &'a KbatchContext {
        self.consumer.context()
    }

    /// The loop, then the shutdown sequence (also after a failure, so what was delivered is
    /// committed either way).
    fn run(mut self) -> Result<ConsumerReport, KafkaError> {
        let failure = self.consume().err();
        if let Some(e) = &failure {
            tracing::error!(error = %e, "consumer stopping after a failure");
        }
        self.shutdown();
        match failure {
            Some(e) => Err(e),
            None => Ok(self.report),
        }
    }

    fn consume(&mut self) -> Result<(), KafkaError> {
        let interval = Duration::from_millis(self.cfg.kafka.commit_interval_ms);
        let mut next_commit = Instant::now() + interval;
        // Every partition's commit point is sent again this often, moved or not: an
        // asynchronous commit the broker refused is then made again even if its partition stays
        // idle (librdkafka does not always hand the refusal to `commit_callback` through
        // `BaseConsumer::poll`, so the callback alone cannot be relied on).
        let full_interval = (interval * FULL_COMMIT_EVERY).max(MIN_FULL_COMMIT);
        let mut next_full_commit = Instant::now() + full_interval;
        while !self.cancel.is_cancelled() {
            if self.reloads.has_changed().unwrap_or(false) {
                self.apply_reload();
            }
            let backpressure = self.flush_stash()?;
            let now = Instant::now();
            if now >= self.next_gate {
                self.decide_gate(now);
            }
            let timeout = if backpressure {
                STASH_POLL
            } else if Tier::ALL.iter().any(|&t| self.ctx().gate().is_held(t)) {
                GATE_POLL
            } else {
                IDLE_POLL
            };
            match self.consumer.poll(timeout) {
                Some(Ok(msg)) => self.handle(&msg)?,
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => {}
            }
            if Instant::now() >= next_commit && self.ctx().commits_in_transactions {
                // Exactly-once commits offsets under the group's membership: refreshed here too,
                // not only after a rebalance callback, so a generation the callbacks did not
                // report is picked up by the next transaction.
                self.ctx().tracker.set_group(self.consumer.group_metadata());
                next_commit = Instant::now() + interval;
            } else if Instant::now() >= next_commit {
                let full = Instant::now() >= next_full_commit;
                let offsets = if full {
                    next_full_commit = Instant::now() + full_interval;
                    self.ctx().tracker.positions()
                } else {
                    self.ctx().tracker.committable()
                };
                if let Err(e) = commit(
                    self.consumer,
                    &self.ctx().topics,
                    &offsets,
                    CommitMode::Async,
                ) {
                    tracing::warn!(error = %e, "enqueueing an offset commit failed");
                }
                next_commit = Instant::now() + interval;
            }
        }
        Ok(())
    }

    /// Retries the stash and resumes topics with room again; returns whether backpressure is
    /// still on (records stashed or a topic paused), so the caller polls briefly and comes back.
    fn flush_stash(&mut self) -> Result<bool, KafkaError> {
        let result = {
            let mut intake = self.ctx().intake();
            if !intake.needs_attention() {
                return Ok(false);
            }
            intake.flush()
        };
        result.map_err(|closed| match closed {
            Closed::Tier(_) => KafkaError::ChannelClosed("tier"),
            Closed::Outcomes => KafkaError::ChannelClosed("outcome"),
        })?;
        self.sync_pauses();
        Ok(self.ctx().intake().needs_attention())
    }

    /// Brings each topic's pause state in line with what backpressure (topics that started or
    /// stopped stashing) and the tier gate want: paused while either wants it.
    fn sync_pauses(&mut self) {
        let (started, backpressure) = {
            let mut intake = self.ctx().intake();
            let started = intake.pauses_due();
            intake.resumes_due();
            (started, intake.paused())
        };
        if !started.is_empty() {
            self.report.paused += started.len() as u64;
            tracing::debug!(topics = ?started, "tier channel full: pausing");
        }
        let held = {
            let gate = self.ctx().gate();
            Tier::ALL.map(|t| gate.is_held(t))
        };
        let (pause, resume) = {
            let mut applied = self.ctx().paused();
            let mut pause = Vec::new();
            let mut resume = Vec::new();
            for t in Tier::ALL {
                let want = backpressure[t.index()] || held[t.index()];
                if want != applied[t.index()] {
                    applied[t.index()] = want;
                    if want {
                        pause.push(t)
                    } else {
                        resume.push(t)
                    }
                }
            }
            (pause, resume)
        };
        // Kept current even when the gate already holds the topic (no pause to apply).
        let paused_by_backpressure = backpressure.iter().filter(|&&p| p).count();
        self.ctx()
            .telemetry
            .metrics
            .paused_topics
            .set(paused_by_backpressure as i64);
        if pause.is_empty() && resume.is_empty() {
            return;
        }
        if !resume.is_empty() {
            tracing::debug!(topics = ?resume, "resuming");
        }
        let topics = &self.ctx().topics;
        for (tiers, pause) in [(pause, true), (resume.clone(), false)] {
            if !tiers.is_empty() {
                set_paused(
                    self.consumer,
                    topics,
                    &assigned_of(self.consumer, topics, &tiers),
                    pause,
                );
            }
        }
        if !resume.is_empty() {
            let offsets: Vec<(Tier, i32, i64)> = self
                .ctx()
                .tracker
                .reads()
                .into_iter()
                .filter(|r| resume.contains(&r.key.0))
                // Never read since its assignment: where librdkafka starts reading it (the
                // committed offset, else the log start), when its statistics have said so;
                // without the seek such a partition waited up to a second after the resume.
                .filter_map(|r| {
                    let next = r.next_read.or_else(|| self.ctx().read_start(r.key))?;
                    Some((r.key.0, r.key.1, next))
                })
                .collect();
            wake_fetch(self.consumer, topics, &offsets);
        }
    }

    /// Decides the tier gate from each tier's lag and in-flight count, applies its changes, and
    /// publishes what it decided from.
    /// A reloaded configuration: what admission and the tier gate read from it.
    fn apply_reload(&mut self) {
        let cfg = self.reloads.borrow_and_update().clone();
        self.admission.reconfigure(&cfg);
        let wanted = tier_gate(&cfg);
        self.ctx()
            .gate()
            .configure(wanted.enabled(), wanted.share());
    }

    fn decide_gate(&mut self, now: Instant) {
        self.next_gate = now + GATE_EVERY;
        let Some(watermarks) = &self.watermarks else {
            return;
        };
        let ctx = self.ctx();
        let reads = ctx.tracker.reads();
        let lag = observe::tier_lags(
            &reads,
            |key| watermarks.get(self.consumer, key),
            |key| ctx.read_start(key),
        );
        let mut in_flight = [0usize; 4];
        for r in &reads {
            in_flight[r.key.0.index()] += r.in_flight;
        }
        let queue_full = ctx.intake().paused();
        let inputs = GateInputs {
            lag,
            in_flight,
            read: self.read,
            queue_full,
        };
        let changes = ctx.gate().decide(&inputs, now);
        let metrics = &ctx.telemetry.metrics;
        for t in Tier::ALL {
            let m = metrics.tier(t);
            m.intake_lag.set(lag[t.index()].unwrap_or(-1));
            m.intake_in_flight.set(in_flight[t.index()] as i64);
        }
        if !changes.is_empty() {
            let gate = ctx.gate();
            for c in &changes {
                metrics.tier(c.tier).intake_held.set(i64::from(c.held));
                if let Some(reason) = gate.state(c.tier).held.filter(|_| c.held) {
                    self.report.held += 1;
                    metrics.intake_hold(c.tier, reason.as_str());
                    tracing::debug!(tier = %c.tier, reason = reason.as_str(), higher = %reason.blocker(), "tier gate: holding back");
                } else {
                    tracing::debug!(tier = %c.tier, "tier gate: reading again");
                }
            }
            drop(gate);
            self.sync_pauses();
        }
        if now >= self.next_publish {
            self.next_publish = now + PUBLISH_EVERY;
            self.publish_intake();
        }
    }

    /// The gate's inputs and decisions, for `/stats`.
    fn publish_intake(&self) {
        let ctx = self.ctx();
        let backpressure = ctx.intake().paused();
        let state = {
            let gate = ctx.gate();
            let inputs = gate.last_inputs();
            IntakeState {
                tier_aware: gate.enabled(),
                share: gate.share(),
                tiers: Tier::ALL
                    .iter()
                    .map(|&t| {
                        let s = gate.state(t);
                        IntakeTier {
                            tier: t,
                            lag: inputs.lag[t.index()],
                            in_flight: inputs.in_flight[t.index()],
                            held: s.held.is_some(),
                            reason: s.held.map(|r| r.as_str()),
                            held_for: s.held.map(|r| r.blocker()),
                            reading_for_share: s.reading_for_share,
                            paused_by_backpressure: backpressure[t.index()],
                            holds: gate.holds(t),
                        }
                    })
                    .collect(),
            }
        };
        ctx.telemetry.stats.set_intake(state);
    }

    fn handle(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), KafkaError> {
        self.report.consumed += 1;
        let ctx = self.consumer.context();
        let Some(tier) = ctx.topics.tier_of(msg.topic()) else {
            self.report.skipped += 1;
            return Ok(());
        };
        let (partition, offset) = (msg.partition(), msg.offset());
        let Some(epoch) = ctx.tracker.track(tier, partition, offset) else {
            self.report.skipped += 1;
            return Ok(());
        };
        self.read[tier.index()] += 1;
        if ctx.gate().reading_for_share(tier) {
            // A tier read for its share is held again the moment it reaches it, not up to a
            // gate interval (and a fetched chunk of records) later.
            self.decide_gate(Instant::now());
        }
        let origin = Origin {
            topic_tier: tier,
            partition,
            offset,
            epoch,
        };
        ctx.telemetry.metrics.tier(tier).consumed.inc();
        let headers = headers_of(msg);
        let parts = RecordParts {
            topic: msg.topic(),
            partition,
            offset,
            key: msg.key(),
            value: msg.payload(),
            headers: &headers,
            timestamp_ms: msg.timestamp().to_millis(),
        };
        match self
            .admission
            .decide(&parts, origin, tokio::time::Instant::now(), now_ms())
        {
            Decision::Admit(a) => self.admit(a),
            Decision::DeadLetter(o) => {
                self.report.dead_lettered += 1;
                self.send_outcome(o)
            }
            Decision::Invalid(o) => {
                self.report.invalid += 1;
                self.send_outcome(o)
            }
            Decision::UnknownModel(o) => {
                self.report.unknown_model += 1;
                self.send_outcome(o)
            }
        }
    }

    fn admit(&mut self, admitted: Admitted) -> Result<(), KafkaError> {
        let tier = admitted.tier;
        let offer = self.ctx().intake().offer(admitted);
        if matches!(offer, Offer::Sent | Offer::Stashed) {
            self.report.admitted += 1;
            self.ctx().telemetry.metrics.tier(tier).admitted.inc();
        }
        match offer {
            Offer::Sent => Ok(()),
            Offer::Stashed => {
                self.sync_pauses();
                Ok(())
            }
            Offer::Full(refused) => {
                self.report.shed += 1;
                let outcome = self.admission.overloaded(*refused, now_ms());
                self.send_outcome(outcome)
            }
            Offer::Closed(unsent) => {
                self.abandon(&unsent.origin);
                Err(KafkaError::ChannelClosed("tier"))
            }
        }
    }

    /// Hands an immediate outcome to the replier; when its channel is full the outcome waits
    /// in the intake's backlog and every topic is paused until it drains (never a blocking
    /// wait on this thread, which must keep polling).
    fn send_outcome(&mut self, outcome: Outcome) -> Result<(), KafkaError> {
        let offer = self.ctx().intake().offer_outcome(outcome);
        match offer {
            OutcomeOffer::Sent => Ok(()),
            OutcomeOffer::Queued => {
                if self.ctx().intake().backlog() == 1 {
                    self.report.outcome_backlogs += 1;
                }
                self.sync_pauses();
                Ok(())
            }
            OutcomeOffer::Closed(outcome) => {
                self.abandon(&outcome.origin());
                Err(KafkaError::ChannelClosed("outcome"))
            }
        }
    }

    fn abandon(&mut self, origin: &Origin) {
        self.report.abandoned += 1;
        self.ctx().tracker.abandon(origin);
    }

    /// Stops intake, lets the pipeline drain, commits. A failed final commit is reported, not
    /// an error: it costs duplicates on the next start, never a lost record.
    fn shutdown(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.kafka.shutdown_timeout_ms);
        // Outcomes already decided are worth delivering: give the replier the backlog first
        // (polling meanwhile, so rebalance callbacks are served).
        while self.ctx().intake().backlog() > 0 && Instant::now() < deadline {
            if self.ctx().intake().flush_outcomes().is_err() {
                break;
            }
            let _ = self.consumer.poll(Duration::from_millis(5));
        }
        // Dropping the senders is how the batcher and replier learn that no more work comes.
        let dropped = self.ctx().intake().close();
        for origin in &dropped {
            self.abandon(origin);
        }
        let topics = &self.ctx().topics;
        set_paused(
            self.consumer,
            topics,
            &assigned_of(self.consumer, topics, &Tier::ALL),
            true,
        );
        let tracker = &self.ctx().tracker;
        // Keep polling while waiting so rebalance callbacks are served. Records polled now are
        // not tracked, so they stay after the commit point and are read again by the next owner.
        while tracker.total_pending() > 0 && Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(20));
        }
        self.report.pending_at_exit = tracker.total_pending() as u64;
        if self.report.pending_at_exit > 0 {
            tracing::warn!(
                pending = self.report.pending_at_exit,
                "shutdown drain timed out; undelivered records will be re-read"
            );
        }
        if !self.ctx().commits_in_transactions {
            // Under transactions the replier's last one committed everything delivered.
            self.report.final_commit_failed = !self.final_commit(deadline);
        }
        self.ctx().set_closing();
    }

    /// Commits every delivered record's offset before leaving; true when it is made. Just after
    /// an outage the replies can be delivered before this consumer has reconnected (its
    /// reconnect backoff grows to seconds) or found its group coordinator again, so a refusal
    /// is retried until `deadline` rather than giving up a commit that is moments away.
    fn final_commit(&mut self, deadline: Instant) -> bool {
        let mut last_error = None;
        loop {
            // librdkafka's synchronous commit has no timeout: with no broker it would wait for
            // a coordinator forever and hang the shutdown, so it is only tried while one is up.
            if self.ctx().telemetry.health.broker_up() {
                let ctx = self.ctx();
                match commit(
                    self.consumer,
                    &ctx.topics,
                    &ctx.tracker.positions(),
                    CommitMode::Sync,
                ) {
                    Ok(()) => return true,
                    Err(e) if !commit_may_succeed_later(&e) => {
                        tracing::warn!(error = %e, "final offset commit refused; delivered records will be re-read");
                        return false;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            // Polling serves the statistics callback that tells when the broker is back.
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        match last_error {
            Some(e) => tracing::warn!(error = %e, "final offset commit failed; delivered records will be re-read"),
            None => tracing::warn!("no broker reachable: final offset commit skipped; delivered records will be re-read"),
        }
        false
    }
}

/// Whether a refused commit may succeed if tried again: the broker or its group coordinator
/// was unreachable, moving or loading. A fenced or expelled member's commit never will.
fn commit_may_succeed_later(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
        )
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::commit_may_succeed_later;

    #[test]
    fn a_final_commit_is_retried_only_while_the_coordinator_may_come_back() {
        for code in [
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(
                commit_may_succeed_later(&KafkaError::ConsumerCommit(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::FencedInstanceId,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ] {
            assert!(
                !commit_may_succeed_later(&KafkaError::ConsumerCommit(code)),
                "{code:?}"
            );
        }
    }
}
