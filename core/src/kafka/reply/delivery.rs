//! Delivery: enqueueing built records on the producer and waiting for their acknowledgements,
//! and the rule for what follows a failed attempt (retry, trim, fall back, give up).
//!
//! Invariant: every enqueued record ends as exactly one [`Attempt`], acknowledged or failed,
//! carrying what it stands for ([`Job`]); nothing here marks an origin done or counts it (that is
//! [`super::settlement`]), so each replier decides what an acknowledgement means: at once for
//! at-least-once, after the transaction commits for exactly-once. A failed record comes back
//! owned, ready to be sent again or elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::dead_letter::{Refused, TRIMMED_HEADER};
use super::record::{Built, Kind, Note, Pending, Record, RecordBuilder};
use crate::kafka::KafkaError;
use crate::pipeline::Outcome;

/// Deliveries awaiting an acknowledgement before the at-least-once replier stops taking
/// outcomes (its channel then backs up into the batcher and the consumer).
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Attempts per record (librdkafka already retries transient errors inside each attempt,
/// up to `message.timeout.ms`).
pub(super) const MAX_ATTEMPTS: u32 = 3;
/// Wait before the second attempt; it doubles for each attempt after that.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Wait before re-enqueueing when librdkafka's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

pub(super) fn create_producer(
    config: rdkafka::ClientConfig,
    what: &'static str,
) -> Result<FutureProducer, KafkaError> {
    config
        .create()
        .map_err(|source| KafkaError::Create { what, source })
}

/// One record's delivery, carried through its attempts.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) pending: Pending,
    /// 1 for the first attempt.
    pub(super) attempt: u32,
    /// What to deliver once this is acknowledged (a poison record's reply, after its dead
    /// letter); the record is done only when the last part is.
    pub(super) then: Option<Box<Outcome>>,
    /// Whether this is the last part of its outcome (set when the job is made, so it still
    /// holds after `then` was taken).
    pub(super) finishes: bool,
}

impl Job {
    /// The first attempt at delivering `pending`, followed by `then`.
    pub(super) fn first(pending: Pending, then: Option<Box<Outcome>>) -> Self {
        Self {
            pending,
            attempt: 1,
            finishes: then.is_none(),
            then,
        }
    }
}

/// Why an attempt failed: librdkafka's error and, when it handed it back, the message.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: RdError,
    pub(super) message: Option<OwnedMessage>,
}

/// One finished delivery attempt.
pub(super) struct Attempt {
    pub(super) job: Job,
    pub(super) result: Result<(), Failure>,
}

pub(super) type InFlight = Pin<Box<dyn Future<Output = Attempt> + Send>>;

/// A message its topic (or librdkafka) handed back, and why.
#[derive(Debug)]
pub(super) struct Returned {
    pub(super) error: RdError,
    pub(super) message: OwnedMessage,
}

/// What follows a failed attempt.
#[derive(Debug)]
pub(super) enum Step {
    /// A transient failure: send the same message again after a backoff.
    Retry(Returned),
    /// A dead letter too large for its topic: send it again without the original bytes (once:
    /// a trimmed letter refused again is given up like any other).
    Trim(Returned),
    /// A reply its topic refused: send it to the dead-letter topic. Only a refusal by the
    /// topic itself: after transient failures (broker away) the reply stays pending and is
    /// recomputed, so the requester still gets it.
    Fallback(Returned, Note),
    /// Nothing more to try; the origin stays pending.
    GiveUp(RdError),
}

impl Failure {
    /// What to do after the failed attempt `job.attempt` at `job`.
    pub(super) fn next_step(self, job: &Job, dead_letter_topic: &str) -> Step {
        let Failure { error, message } = self;
        let Some(message) = message else {
            return Step::GiveUp(error);
        };
        let permanent = is_permanent(&error);
        if job.attempt < MAX_ATTEMPTS && !permanent {
            return Step::Retry(Returned { error, message });
        }
        if is_too_large(&error) && message.topic() == dead_letter_topic && !is_trimmed(&message) {
            return Step::Trim(Returned { error, message });
        }
        match job.pending.kind {
            Kind::Reply(_, note) if permanent => Step::Fallback(Returned { error, message }, note),
            _ => Step::GiveUp(error),
        }
    }
}

impl Returned {
    /// This message as the record refused on behalf of `job`'s origin.
    pub(super) fn refused<'a>(&'a self, job: &'a Job) -> Refused<'a> {
        Refused {
            origin: &job.pending.origin,
            message: &self.message,
            error: &self.error,
        }
    }
}

/// Errors no retry can fix: the record or the topic itself is refused.
fn is_permanent(e: &RdError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::MessageBatchTooLarge
                | C::InvalidRecord
                | C::InvalidTopic
                | C::UnknownTopic
                | C::UnknownTopicOrPartition
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::UnsupportedForMessageFormat
                | C::InvalidArgument
        )
    )
}

/// The broker (or librdkafka, before sending) refused the record for its size.
fn is_too_large(e: &RdError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge)
    )
}

fn is_trimmed(message: &OwnedMessage) -> bool {
    message
        .headers()
        .is_some_and(|hs| hs.iter().any(|h| h.key == TRIMMED_HEADER))
}

/// Builds records and sends them on one producer: the delivery half both repliers share.
pub(super) struct Sender {
    producer: FutureProducer,
    records: RecordBuilder,
}

impl Sender {
    pub(super) fn new(producer: FutureProducer, records: RecordBuilder) -> Self {
        Self { producer, records }
    }

    pub(super) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    pub(super) fn dead_letter_topic(&self) -> &str {
        self.records.dead_letter_topic()
    }

    /// Builds and enqueues `outcome`'s first record; returns the future of its first attempt.
    pub(super) async fn send(&mut self, outcome: Outcome) -> InFlight {
        let Built {
            record,
            pending,
            then,
        } = self.records.outcome(outcome);
        let enqueued = enqueue(&self.producer, record).await;
        Box::pin(wait(enqueued, Job::first(pending, then)))
    }

    /// Sends the reply `refused` (its topic refused it) to the dead-letter topic, counted as a
    /// fallback of `note`'s reply.
    pub(super) async fn send_fallback(
        &mut self,
        refused: &Returned,
        job: &Job,
        note: Note,
    ) -> InFlight {
        let record = self.records.fallback(&refused.refused(job));
        let enqueued = enqueue(&self.producer, record).await;
        let pending = Pending {
            origin: job.pending.origin,
            kind: Kind::ReplyFallback(note),
        };
        Box::pin(wait(enqueued, Job::first(pending, None)))
    }

    /// Sends the dead letter `refused` (too large for its topic) again without the original
    /// record's value and headers; `job`'s follow-up (a poison request's reply) still follows.
    pub(super) async fn send_trimmed(&mut self, refused: &Returned, job: Job) -> InFlight {
        let record = self.records.trimmed(&refused.refused(&job));
        let enqueued = enqueue(&self.producer, record).await;
        let Job {
            pending,
            then,
            finishes,
            ..
        } = job;
        let restarted = Job {
            pending,
            attempt: 1,
            then,
            finishes,
        };
        Box::pin(wait(enqueued, restarted))
    }

    /// Sends `message`, handed back after `job`'s failed attempt, again after a backoff.
    pub(super) fn retry(&self, message: OwnedMessage, job: Job) -> InFlight {
        let next = Job {
            attempt: job.attempt + 1,
            ..job
        };
        Box::pin(resend(self.producer.clone(), message, next))
    }
}

/// Enqueues `record`, waiting while librdkafka's local queue is full. An immediate refusal
/// (anything else, e.g. a topic already known not to exist) comes back as the record, owned,
/// so that it can be retried or sent elsewhere like a failed delivery.
async fn enqueue(producer: &FutureProducer, record: Record<'_>) -> Result<DeliveryFuture, Failure> {
    let mut pending = FutureRecord::to(&record.topic)
        .payload(record.payload)
        .headers(record.headers);
    if let Some(key) = record.key.as_deref() {
        pending = pending.key(key);
    }
    enqueue_record(producer, pending).await
}

async fn enqueue_record(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, Failure> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((error, back)) => {
                let owned = OwnedMessage::new(
                    back.payload.map(<[u8]>::to_vec),
                    back.key.map(<[u8]>::to_vec),
                    back.topic.to_owned(),
                    rdkafka::Timestamp::NotAvailable,
                    back.partition.unwrap_or(-1),
                    -1,
                    back.headers,
                );
                return Err(Failure {
                    error,
                    message: Some(owned),
                });
            }
        }
    }
}

/// Waits for the acknowledgement of an enqueued record.
async fn wait(enqueued: Result<DeliveryFuture, Failure>, job: Job) -> Attempt {
    let result = match enqueued {
        Err(failure) => Err(failure),
        Ok(delivery) => match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, message))) => Err(Failure {
                error,
                message: Some(message),
            }),
            // Only when the producer is dropped, which the replier never does while waiting.
            Err(_canceled) => Err(Failure {
                error: RdError::Canceled,
                message: None,
            }),
        },
    };
    Attempt { job, result }
}

/// Re-sends a message librdkafka handed back after a failed delivery; `job.attempt` is the
/// attempt this is (2 or more).
async fn resend(producer: FutureProducer, mut message: OwnedMessage, job: Job) -> Attempt {
    tokio::time::sleep(RETRY_BACKOFF * 2u32.pow(job.attempt - 2)).await;
    let headers = message
        .detach_headers()
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(0));
    let mut record = FutureRecord::to(message.topic())
        .payload(message.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    let enqueued = enqueue_record(&producer, record).await;
    wait(enqueued, job).await
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
