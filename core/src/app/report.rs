//! What one `serve` run did, stage by stage, and its summary: a table for a person, JSON for a
//! script, and one log event whose fields carry the figures.
//!
//! Invariant: the summary is read from the stage reports' public fields and methods only, so the
//! stages own their counters and this file only names and arranges them. JSON keys are stable
//! snake_case; statuses are keyed by their wire names (`OK`, `INVALID_INPUT`, …), every status
//! present, in `Status::ALL` order.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::batcher::BatcherReport;
use crate::inference::WorkerReport;
use crate::kafka::{ConsumerReport, ReplierReport};
use crate::telemetry::table::{Grid, Table};
use crate::wire::Status;

/// What each stage did during one `serve` run.
#[derive(Debug)]
pub struct ServeReport {
    pub consumer: ConsumerReport,
    pub batcher: BatcherReport,
    pub workers: Vec<WorkerReport>,
    pub replier: ReplierReport,
}

/// The figures of a `serve` run a person or a script reads, by stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServeSummary {
    pub intake: IntakeSummary,
    pub batching: BatchingSummary,
    pub inference: InferenceSummary,
    pub replies: RepliesSummary,
}

/// What the consumer took from the tier topics and what became of it there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IntakeSummary {
    /// Records polled.
    pub consumed: u64,
    /// Requests handed to the batcher.
    pub admitted: u64,
    /// Undecodable records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Answered INVALID_INPUT at intake.
    pub invalid: u64,
    /// Answered UNKNOWN_MODEL at intake.
    pub unknown_model: u64,
    /// Answered OVERLOADED because their tier's queue was full.
    pub shed: u64,
    /// Records of partitions no longer assigned, skipped.
    pub skipped: u64,
    /// Records given up without an outcome (at a revoke or shutdown); never committed past.
    pub abandoned: u64,
    /// Times a tier topic was paused because its queue was full.
    pub topic_pauses: u64,
    /// Times a tier topic was held back because a higher tier had records waiting in Kafka.
    pub tier_holds: u64,
    /// Records still pending when the shutdown drain timed out.
    pub pending_at_exit: u64,
    /// The last commit failed: the next owner of the partitions re-reads from the one before.
    pub final_commit_failed: bool,
}

/// What the batcher formed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchingSummary {
    pub requests: u64,
    pub batches: u64,
    /// requests / batches; 0 without batches.
    pub mean_batch_size: f64,
    /// Answered DEADLINE_EXCEEDED before running.
    pub expired: u64,
    /// Answered OVERLOADED: not batched within the starvation bound.
    pub starved: u64,
    /// Requests answered from the deduplication cache or joined to an identical one in flight.
    pub deduplicated: u64,
    /// Batches by what closed them (`full`, `timeout`, …).
    pub closed_by: Counts,
}

/// What the inference workers ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InferenceSummary {
    pub workers: usize,
    /// Model calls for batches (re-runs of failed batches not included).
    pub calls: u64,
    /// Batches whose first run failed and were re-run in parts.
    pub failed_batches: u64,
    /// Requests answered MODEL_ERROR on their own after their retries.
    pub isolated: u64,
    /// Model calls re-running parts of failed batches.
    pub retry_calls: u64,
    /// Wall time inside the model, all workers together.
    pub model_seconds: f64,
}

/// What the replier delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepliesSummary {
    pub total: u64,
    /// Replies per status, every status named.
    pub by_status: Counts,
    /// Records on the dead-letter topic (reply fallbacks included).
    pub dead_letters: u64,
    /// Replies their topic refused, sent to the dead-letter topic instead.
    pub reply_fallbacks: u64,
    /// Outcomes given up after their retries; their offsets stay uncommitted.
    pub delivery_failures: u64,
    /// Re-sends after a failed delivery.
    pub retries: u64,
}

/// One named count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// Named counts in a meaningful order; serialized as a JSON object `{name: count}` in that
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<Count>);

impl Counts {
    /// The count named `name`; 0 when absent.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    }

    /// `OK=9990 INVALID_INPUT=10`: the non-zero counts, for a log field; `none` when all are
    /// zero.
    fn non_zero(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| format!("{}={}", c.name, c.count))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for c in &self.0 {
            map.serialize_entry(&c.name, &c.count)?;
        }
        map.end()
    }
}

/// Batches per flush reason, every reason named (zeros included).
fn batches_by_reason(b: &BatcherReport) -> Counts {
    Counts(
        b.by_reason
            .iter()
            .map(|(reason, count)| Count {
                name: reason.as_str().to_owned(),
                count,
            })
            .collect(),
    )
}

fn replies_by_status(r: &ReplierReport) -> Counts {
    Counts(
        Status::ALL
            .iter()
            .map(|&s| Count {
                name: s.as_str().to_owned(),
                count: r.replies_with(s),
            })
            .collect(),
    )
}

impl ServeReport {
    /// The figures, by stage.
    pub fn summary(&self) -> ServeSummary {
        let c = &self.consumer;
        let b = &self.batcher;
        let r = &self.replier;
        let sum = |f: fn(&WorkerReport) -> u64| self.workers.iter().map(f).sum::<u64>();
        ServeSummary {
            intake: IntakeSummary {
                consumed: c.consumed,
                admitted: c.admitted,
                dead_lettered: c.dead_lettered,
                invalid: c.invalid,
                unknown_model: c.unknown_model,
                shed: c.shed,
                skipped: c.skipped,
                abandoned: c.abandoned,
                topic_pauses: c.paused,
                tier_holds: c.held,
                pending_at_exit: c.pending_at_exit,
                final_commit_failed: c.final_commit_failed,
            },
            batching: BatchingSummary {
                requests: b.requests,
                batches: b.batches,
                mean_batch_size: if b.batches > 0 {
                    b.requests as f64 / b.batches as f64
                } else {
                    0.0
                },
                expired: b.expired,
                starved: b.starved,
                deduplicated: b.dedup.hits + b.dedup.joins,
                closed_by: batches_by_reason(b),
            },
            inference: InferenceSummary {
                workers: self.workers.len(),
                calls: sum(|w| w.batches),
                failed_batches: sum(|w| w.failed_batches),
                isolated: sum(|w| w.isolated),
                retry_calls: sum(|w| w.retry_calls),
                model_seconds: sum(|w| w.inference_us) as f64 / 1e6,
            },
            replies: RepliesSummary {
                total: r.total_replies(),
                by_status: replies_by_status(r),
                dead_letters: r.dead_letters,
                reply_fallbacks: r.reply_fallbacks,
                delivery_failures: r.delivery_failures,
                retries: r.retries,
            },
        }
    }

    /// The summary as a table, one section per stage.
    pub fn table(&self) -> Table {
        self.summary().table()
    }

    /// One `info` event at the end of a run, the figures as fields (a log pipeline can query
    /// `dead_letters > 0` without parsing a sentence).
    pub fn log_stopped(&self) {
        let s = self.summary();
        let (i, b, w, r) = (&s.intake, &s.batching, &s.inference, &s.replies);
        tracing::info!(
            consumed = i.consumed,
            admitted = i.admitted,
            dead_lettered = i.dead_lettered,
            invalid = i.invalid,
            unknown_model = i.unknown_model,
            shed = i.shed,
            abandoned = i.abandoned,
            topic_pauses = i.topic_pauses,
            tier_holds = i.tier_holds,
            pending_at_exit = i.pending_at_exit,
            final_commit_failed = i.final_commit_failed,
            batches = b.batches,
            batched_requests = b.requests,
            mean_batch_size = b.mean_batch_size,
            expired = b.expired,
            starved = b.starved,
            inference_calls = w.calls,
            failed_batches = w.failed_batches,
            model_seconds = w.model_seconds,
            replies = r.total,
            replies_by_status = %r.by_status.non_zero(),
            dead_letters = r.dead_letters,
            reply_fallbacks = r.reply_fallbacks,
            delivery_failures = r.delivery_failures,
            "serve stopped"
        );
    }
}

impl ServeSummary {
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        let i = &self.intake;
        t.section("intake")
            .row("consumed", i.consumed)
            .row("admitted", i.admitted)
            .row("dead-lettered", i.dead_lettered)
            .row("invalid", i.invalid)
            .row("unknown model", i.unknown_model)
            .row("shed (queue full)", i.shed)
            .row("skipped", i.skipped)
            .row("abandoned", i.abandoned)
            .row("topic pauses", i.topic_pauses)
            .row("tier holds (higher tier waiting)", i.tier_holds)
            .row("pending at exit", i.pending_at_exit)
            .row(
                "final commit",
                if i.final_commit_failed {
                    "FAILED (the next owner re-reads since the last commit)"
                } else {
                    "ok"
                },
            );
        let b = &self.batching;
        t.section("batching")
            .row("requests", b.requests)
            .row("batches", b.batches)
            .row("mean batch size", format!("{:.1}", b.mean_batch_size))
            .row("expired", b.expired)
            .row("starved", b.starved)
            .row("deduplicated", b.deduplicated);
        for c in &b.closed_by.0 {
            t.row(format!("closed: {}", c.name), c.count);
        }
        let w = &self.inference;
        t.section("inference")
            .row("workers", w.workers)
            .row("model calls", w.calls)
            .row("failed batches", w.failed_batches)
            .row("isolated failures", w.isolated)
            .row("retry calls", w.retry_calls)
            .row("time in the model", format!("{:.2} s", w.model_seconds));
        let r = &self.replies;
        let mut statuses = Grid::new(["status", "replies"]);
        for c in &r.by_status.0 {
            statuses.row([c.name.clone(), c.count.to_string()]);
        }
        statuses.row(["total".to_owned(), r.total.to_string()]);
        t.section("replies")
            .grid(statuses)
            .row("dead letters", r.dead_letters)
            .row("reply fallbacks", r.reply_fallbacks)
            .row("delivery failures", r.delivery_failures)
            .row("delivery retries", r.retries);
        t
    }
}

/// A `ServeReport` serializes as its summary.
impl Serialize for ServeReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.summary().serialize(serializer)
    }
}

/// The summary table.
impl std::fmt::Display for ServeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.table().fmt(f)
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
