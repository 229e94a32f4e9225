//! The records exchanged between stages.
//!
//! Invariant: an `Admitted` request has passed `wire::validate` against the signature of the
//! model version it was routed to (`Admitted::model`), so its tensors, in that model's input
//! order, can be copied into batch rows of that model as they are; every reply names the version
//! that answered and uses the schema version of its request.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::{DedupKey, FlushReason};
use crate::model::ServedModel;
use crate::tensor::Tensor;
use crate::tier::Tier;
use crate::wire::TraceContext;
use crate::wire::{DeadLetter, Outputs, Reply, Request, SchemaVersion, Status, Timings};

/// Where a record came from. `topic_tier` names the topic (one per tier); `epoch` is the
/// assignment epoch of its partition, so work finished after a revoke is never committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub topic_tier: Tier,
    pub partition: i32,
    pub offset: i64,
    pub epoch: u64,
}

/// Where and how the reply to a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub topic: String,
    /// The request record's key, reused as the reply's key.
    pub key: Option<Vec<u8>>,
    /// Value of the request's correlation header, copied to the reply.
    pub correlation_id: Option<Vec<u8>>,
    /// The request's W3C trace context, when it carried a valid `traceparent`: the reply's
    /// `traceparent` names kbatch's span for the request as its parent.
    pub trace: Option<TraceContext>,
}

/// A decoded, validated request waiting for a batch.
#[derive(Debug)]
pub struct Admitted {
    pub request: Request,
    /// Tier it is served at: the topic's, or lower if the request asked.
    pub tier: Tier,
    pub origin: Origin,
    pub reply_to: ReplyTo,
    /// Kafka timestamp of the request record (ms since the epoch): the start of end-to-end time.
    pub record_timestamp_ms: i64,
    /// When the consumer admitted it: the start of queue wait.
    pub admitted_at: Instant,
    /// Absolute deadline translated to this process's clock, if the request has one.
    /// (tokio's `Instant`, so tests can pause time.)
    pub deadline: Option<Instant>,
    /// Set when deduplication is on and this request leads its identical inputs: whoever
    /// finishes it hands its result (or failure) back to the batcher under this key.
    pub dedup_key: Option<DedupKey>,
    /// The model version it was routed to (a request that never runs: the one its reply names).
    pub model: Arc<ServedModel>,
}

/// Requests selected to run together. Holding `permit` means an inference worker is free for it.
pub struct Batch {
    /// The version every request of the batch was routed to (batches never mix versions).
    pub model: Arc<ServedModel>,
    pub requests: Vec<Admitted>,
    /// Why the batcher closed this batch.
    pub flush_reason: FlushReason,
    pub formed_at: Instant,
    pub permit: Option<OwnedSemaphorePermit>,
    /// How a request failing alone in it is retried: the batcher's policy when it formed the
    /// batch, so a reloaded `max_retries` / `retry_delay` applies from the next batch.
    pub retry: RetryPolicy,
}

/// How often, and how far apart, a request that fails alone is retried
/// (`batch_processing.max_retries`, `batch_processing.retry_delay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts of a request failing alone, beyond its first.
    pub max_retries: u32,
    pub retry_delay: std::time::Duration,
}

/// What a worker reports to the batcher about a batch it finished (adaptive sizing and
/// deduplication learn from it).
#[derive(Debug)]
pub struct BatchDone {
    /// The version the batch ran on.
    pub model: Arc<ServedModel>,
    pub size: usize,
    pub inference: Duration,
    pub ok: bool,
    /// For each request of the batch that led deduplicated twins: its key, and its outputs
    /// when the batch succeeded.
    pub results: Vec<LeaderResult>,
}

/// A deduplicated leader's key and its outputs, every output of the model for its row (`None`
/// when the leader failed).
#[derive(Debug)]
pub struct LeaderResult {
    pub key: DedupKey,
    pub outputs: Option<Arc<[Tensor]>>,
}

/// The single outcome of one consumed record. (`Clone` so that an exactly-once transaction that
/// aborted can produce it again.)
#[derive(Debug, Clone)]
pub enum Outcome {
    Reply {
        reply: Box<Reply>,
        reply_to: ReplyTo,
        origin: Origin,
    },
    DeadLetter {
        letter: Box<DeadLetter>,
        key: Option<Vec<u8>>,
        origin: Origin,
    },
    /// A request the model failed on alone, after its retries (a poison record): the requester
    /// gets the MODEL_ERROR `reply`, and the request itself is isolated on the dead-letter topic
    /// (delivered first; the record is done only once both are acknowledged).
    Poison {
        reply: Box<Reply>,
        reply_to: ReplyTo,
        origin: Origin,
        request: Box<Request>,
    },
}

impl Outcome {
    pub fn origin(&self) -> Origin {
        match self {
            Outcome::Reply { origin, .. }
            | Outcome::DeadLetter { origin, .. }
            | Outcome::Poison { origin, .. } => *origin,
        }
    }

    /// An OK reply to `a` with the model's `outputs` for it (every output, in the model's
    /// order), in the request's schema version: a version-1 reply carries the first output.
    /// `timings.end_to_end_us` is filled in here.
    pub fn ok(a: Admitted, outputs: Vec<Tensor>, mut timings: Timings, now_ms: i64) -> Outcome {
        timings.end_to_end_us = end_to_end_us(now_ms, a.record_timestamp_ms);
        let model = a.model.id();
        let outputs = match a.request.inputs.version() {
            SchemaVersion::V1 => {
                // Admission sends version-1 requests only to models whose first output is
                // float32 (`Signature::serves_version_1`), so this conversion is a move.
                let first = outputs.into_iter().next();
                let (output_shape, outputs) =
                    first.map_or_else(Default::default, |t| (t.shape, t.data.into_f32()));
                Outputs::V1 {
                    output_shape,
                    outputs,
                }
            }
            SchemaVersion::V2 => Outputs::V2(outputs),
        };
        let reply = Reply {
            request_id: a.request.request_id,
            status: Status::Ok,
            error: None,
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            outputs,
            tier: a.tier,
            timings,
            completed_at_ms: now_ms,
        };
        Outcome::Reply {
            reply: Box::new(reply),
            reply_to: a.reply_to,
            origin: a.origin,
        }
    }

    /// The outcome of a poison request: a MODEL_ERROR reply saying `error`, plus the request
    /// itself for the dead-letter topic.
    pub fn poison(a: Admitted, error: String, now_ms: i64) -> Outcome {
        let id = a.request.request_id.clone();
        let failure = Failure {
            status: Status::ModelError,
            error,
        };
        let reply = error_reply(&a, id, failure, now_ms);
        Outcome::Poison {
            reply,
            reply_to: a.reply_to,
            origin: a.origin,
            request: Box::new(a.request),
        }
    }

    /// An error reply (anything but OK) for an admitted request that will never run.
    pub fn error(mut a: Admitted, status: Status, error: String, now_ms: i64) -> Outcome {
        let id = std::mem::take(&mut a.request.request_id);
        Outcome::Reply {
            reply: error_reply(&a, id, Failure { status, error }, now_ms),
            reply_to: a.reply_to,
            origin: a.origin,
        }
    }
}

/// Why a request is answered without outputs.
struct Failure {
    status: Status,
    error: String,
}

/// The reply saying `failure` to `a`, whose id is `request_id`, without outputs.
fn error_reply(
    a: &Admitted,
    request_id: String,
    Failure { status, error }: Failure,
    now_ms: i64,
) -> Box<Reply> {
    let model = a.model.id();
    let timings = Timings {
        queue_wait_us: micros(a.admitted_at.elapsed()),
        batch_size: 0,
        inference_us: 0,
        end_to_end_us: end_to_end_us(now_ms, a.record_timestamp_ms),
    };
    Box::new(Reply {
        request_id,
        status,
        error: Some(error),
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        outputs: Outputs::none(a.request.inputs.version()),
        tier: a.tier,
        timings,
        completed_at_ms: now_ms,
    })
}

/// Microseconds from the request record's timestamp to `now_ms`, saturating: the timestamp is
/// whatever the producer set (Kafka accepts any 64-bit value), so neither the difference nor its
/// scaling may overflow; a timestamp in the future counts as zero.
pub fn end_to_end_us(now_ms: i64, record_timestamp_ms: i64) -> i64 {
    now_ms
        .saturating_sub(record_timestamp_ms)
        .max(0)
        .saturating_mul(1000)
}

/// Microseconds of a duration, saturating.
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Wall-clock now in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
