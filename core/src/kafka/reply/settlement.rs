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
    /// Outcomes given up after their last attempt (or a permanent error); their offsets stay
    /// pending.
    pub delivery_failures: u64,
    /// Re-sends after a failed delivery.
    pub retries: u64,
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
}

impl Settlement {
    pub(super) fn new(tracker: SharedTracker, telemetry: Arc<Telemetry>) -> Self {
        Self {
            tracker,
            telemetry,
            report: ReplierReport::default(),
        }
    }

    pub(super) fn into_report(self) -> ReplierReport {
        self.report
    }

    /// An acknowledged record (committed, under exactly-once): counted, recorded, and its
    /// origin done when it is its outcome's last part.
    pub(super) fn acknowledged(&mut self, job: &Job) {
        self.telemetry.delivered(&job.pending.kind.delivered());
        self.report.count(job.pending.kind);
        if job.finishes {
            self.tracker.done(&job.pending.origin);
        }
    }

    /// A failed attempt about to be made again.
    pub(super) fn retrying(&mut self, job: &Job, error: &RdError) {
        self.report.retries += 1;
        tracing::warn!(error = %error, attempt = job.attempt, origin = ?job.pending.origin,
            "delivery failed; retrying");
    }

    /// A record given up after `job.attempt` attempts: its origin stays pending.
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
