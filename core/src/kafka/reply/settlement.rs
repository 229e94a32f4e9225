//! Settlement: what an acknowledged (or abandoned) delivery changes outside the producer — the
//! origin marked done in the offset tracker, the [`ReplierReport`] counters, the telemetry.
//!
//! Invariant: an origin is marked done only through [`Settlement::acknowledged`], and only for
//! the last part of its outcome (a poison record's reply, after its dead letter); the repliers
//! call it only once the record is safely written (acknowledged with acks=all, or its
//! transaction committed). A delivery given up leaves its origin pending, so its offset is never
//! committed past and the record is read again.

use std::sync::Arc;

use rdkafka::error::KafkaError as RdError;

use super::delivery::Job;
use super::record::Kind;
use crate::kafka::SharedTracker;
use crate::pipeline::micros;
use crate::telemetry::{Delivered, ErrorKind, Telemetry};
use crate::wire::Status;

/// What the replier delivered, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplierReport {
    /// Delivered replies, indexed by `Status as usize` (see [`ReplierReport::replies_with`]).
    pub replies: [u64; Status::ALL.len()],
    pub dead_letters: u64,
    /// Replies their topic refused, delivered to the dead-letter topic instead (also counted in
    /// `dead_letters`, not in `replies`).
    pub reply_fallbacks: u64,
    /// Outcomes given up (nothing could place them); their offsets stay pending.
    pub delivery_failures: u64,
    /// Re-sends after a failed delivery.
    pub retries: u64,
    /// Producers replaced after a fatal error.
    pub producers_replaced: u64,
    /// Deliveries still in flight (failing) when the replier left at shutdown.
    pub left_at_exit: u64,
    /// Exactly-once: outcomes of a revoked assignment dropped unsent (the partition's next
    /// owner answers their records).
    pub stale_dropped: u64,
}

impl ReplierReport {
    pub fn replies_with(&self, status: Status) -> u64 {
        self.replies[status as usize]
    }

    pub fn total_replies(&self) -> u64 {
        self.replies.iter().sum()
    }

    /// Logs the report as one event with a field per figure (`replier` names which one).
    pub fn log_finished(&self, replier: &'static str) {
        let by_status = Status::ALL
            .iter()
            .filter(|&&s| self.replies_with(s) > 0)
            .map(|&s| format!("{}={}", s.as_str(), self.replies_with(s)))
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            replier,
            replies = self.total_replies(),
            by_status = %by_status,
            dead_letters = self.dead_letters,
            reply_fallbacks = self.reply_fallbacks,
            delivery_failures = self.delivery_failures,
            retries = self.retries,
            producers_replaced = self.producers_replaced,
            stale_dropped = self.stale_dropped,
            left_at_exit = self.left_at_exit,
            "replier finished"
        );
    }

    /// Counts one acknowledged record of `kind`.
    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Reply(status, _) => self.replies[status as usize] += 1,
            Kind::DeadLetter(_) => self.dead_letters += 1,
            Kind::ReplyFallback(_) => {
                self.dead_letters += 1;
                self.reply_fallbacks += 1;
            }
        }
    }
}

impl Kind {
    /// What the metrics and statistics record for an acknowledged record of this kind.
    fn delivered(self) -> Delivered {
        let (status, note, fallback) = match self {
            Kind::Reply(status, note) => (Some(status), note, false),
            Kind::DeadLetter(note) => (None, note, false),
            Kind::ReplyFallback(note) => (None, note, true),
        };
        Delivered {
            tier: note.tier,
            status,
            timings: note.timings,
            reply_us: micros(note.ready.elapsed()),
            fallback,
        }
    }
}

/// The offset tracker, telemetry and report a replier settles its deliveries in.
pub(super) struct Settlement {
    tracker: SharedTracker,
    telemetry: Arc<Telemetry>,
    report: ReplierReport,
    /// The producer failed fatally and its replacement has not delivered yet.
    producer_failed: bool,
}

impl Settlement {
    pub(super) fn new(tracker: SharedTracker, telemetry: Arc<Telemetry>) -> Self {
        Self {
            tracker,
            telemetry,
            report: ReplierReport::default(),
            producer_failed: false,
        }
    }

    pub(super) fn into_report(self) -> ReplierReport {
        self.report
    }

    /// An acknowledged record (committed, under exactly-once): counted, recorded, and its
    /// origin done when it is its outcome's last part.
    pub(super) fn acknowledged(&mut self, job: &Job) {
        if self.producer_failed {
            self.producer_failed = false;
            self.telemetry.health.set_producer_failed(false);
            tracing::info!("the replacement producer delivers");
        }
        self.telemetry.delivered(&job.pending.kind.delivered());
        self.report.count(job.pending.kind);
        if job.finishes {
            self.tracker.done(&job.pending.origin);
        }
    }

    /// A failed attempt about to be made again (after a backoff).
    pub(super) fn retrying(&mut self, job: &Job, error: &RdError) {
        self.report.retries += 1;
        let metrics = &self.telemetry.metrics;
        metrics.delivery_retries.inc();
        metrics.deliveries_retrying.inc();
        // The first few retries of a record, then every tenth: an outage of minutes must not
        // write a line per record per attempt.
        if job.attempt <= 3 || job.attempt.is_multiple_of(10) {
            tracing::warn!(error = %error, attempt = job.attempt, origin = ?job.pending.origin,
                "delivery failed; retrying");
        }
    }

    /// Exactly-once: a record whose transaction aborted after `error`, made again in the next
    /// transaction.
    pub(super) fn retried_in_transaction(&mut self, job: &Job, error: &RdError) {
        self.report.retries += 1;
        self.telemetry.metrics.delivery_retries.inc();
        tracing::warn!(error = %error, origin = ?job.pending.origin,
            "delivery failed in a transaction; it goes again in the next one");
    }

    /// Exactly-once: `count` outcomes of revoked assignments dropped before a transaction.
    pub(super) fn stale(&mut self, count: usize) {
        if count > 0 {
            self.report.stale_dropped += count as u64;
            tracing::info!(count, "outcomes of a revoked assignment dropped unsent; the next owner answers their records");
        }
    }

    /// An attempt finished, acknowledged or not: a retried one no longer waits.
    pub(super) fn attempt_finished(&mut self, job: &Job) {
        if job.attempt > 1 {
            self.telemetry.metrics.deliveries_retrying.dec();
        }
    }

    /// The producer failed fatally (`error`) and is being replaced: not ready until the
    /// replacement delivers.
    pub(super) fn producer_failed(&mut self, error: &str) {
        tracing::error!(error, "the reply producer failed fatally; replacing it");
        self.report.producers_replaced += 1;
        self.producer_failed = true;
        self.telemetry.health.set_producer_failed(true);
    }

    /// Deliveries still in flight when the replier left at shutdown; their records were not
    /// committed, so whoever reads them next answers them.
    pub(super) fn left_at_exit(&mut self, count: usize) {
        self.report.left_at_exit += count as u64;
        tracing::warn!(
            count,
            "deliveries still failing at shutdown left; their records will be re-read"
        );
    }

    /// A record nothing can place (or still failing at shutdown), after `job.attempt`
    /// attempts: its origin stays pending.
    pub(super) fn given_up(&mut self, job: &Job, error: &RdError) {
        self.report.delivery_failures += 1;
        self.telemetry.metrics.error(ErrorKind::Delivery);
        tracing::error!(error = %error, attempts = job.attempt, origin = ?job.pending.origin,
            "outcome not delivered; its offset stays uncommitted and will be re-read");
    }
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;
