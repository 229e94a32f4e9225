//! Delivery: enqueueing built records on the producer and waiting for their acknowledgements,
//! and the rule for what follows a failed attempt (retry, trim, fall back, give up).
//!
//! Invariants: every enqueued record ends as exactly one [`Attempt`], acknowledged or failed,
//! carrying what it stands for ([`Job`]); nothing here marks an origin done or counts it (that is
//! [`super::settlement`]), so each replier decides what an acknowledgement means: at once for
//! at-least-once, after the transaction commits for exactly-once. A failed record comes back
//! owned, ready to be sent again or elsewhere. A transient failure is retried without a limit
//! (backing off up to [`MAX_BACKOFF`]): a record that can still be delivered once the broker is
//! back must never stop its partition's commit point for good. Only a record nothing can place
//! (a dead letter refused even after it was cut to its bare fields) is given up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::dead_letter::{Refused, TRIMMED_HEADER};
use super::record::{Built, Kind, Note, Part, Pending, Record, RecordBuilder};
use crate::config::Config;
use crate::kafka::KafkaError;
use crate::pipeline::Outcome;

/// Deliveries awaiting an acknowledgement before the at-least-once replier stops taking
/// outcomes (its channel then backs up into the batcher and the consumer).
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Wait before the second attempt; it doubles for each attempt after that, up to
/// [`MAX_BACKOFF`]. (librdkafka already retries transient errors inside each attempt, up to
/// `message.timeout.ms`.)
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts at one record.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// What a record batch holds besides its records' keys and values (batch and record headers,
/// kbatch's own headers), rounded up: a dead letter's key and value must fit the topic's
/// limit less this.
const RECORD_OVERHEAD: usize = 1024;
/// Kafka's default `max.message.bytes`, assumed when the dead-letter topic's cannot be read.
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Wait before re-enqueueing when librdkafka's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

pub(super) fn create_producer(
    config: &rdkafka::ClientConfig,
    what: &'static str,
) -> Result<FutureProducer, KafkaError> {
    config
        .create()
        .map_err(|source| KafkaError::Create { what, source })
}

/// The largest dead letter (key and value) kbatch sends, shared by a replier and the task that
/// learns it: at first Kafka's default `max.message.bytes` (or the producer's own
/// `message.max.bytes`, when smaller), less the record overhead; then the dead-letter topic's
/// own limit once the broker says ([`learn_dead_letter_limit`]). Learning it in the background
/// keeps a broker that does not answer DescribeConfigs (or a client not allowed to ask) from
/// delaying the first replies.
fn dead_letter_limit(producer_max: usize) -> Arc<AtomicUsize> {
    let limit = KAFKA_DEFAULT_MAX_MESSAGE_BYTES.min(producer_max);
    Arc::new(AtomicUsize::new(limit.saturating_sub(RECORD_OVERHEAD)))
}

/// Reads the dead-letter topic's `max.message.bytes` and stores the letter limit it allows.
async fn learn_dead_letter_limit(cfg: Arc<Config>, producer_max: usize, limit: Arc<AtomicUsize>) {
    let topic = &cfg.replies.dead_letter_topic;
    let props = cfg.kafka.property_pairs();
    match crate::kafka::admin::topic_max_message_bytes(&cfg.kafka.brokers, &props, topic).await {
        Ok(Some(topic_max)) => {
            let learned = topic_max.min(producer_max).saturating_sub(RECORD_OVERHEAD);
            limit.store(learned, Ordering::Relaxed);
            tracing::info!(
                topic,
                limit = learned,
                "dead letters larger than this are cut to fit"
            );
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, topic, "reading the dead-letter topic's max.message.bytes failed; assuming Kafka's default");
        }
    }
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
    /// A transient failure (or a dead letter its topic refuses for another reason, which only
    /// an operator can fix): send the same message again after a backoff, without a limit.
    Retry(Returned),
    /// A dead letter too large for its topic: send it again without the original bytes (once:
    /// a trimmed letter refused again is given up like any other).
    Trim(Returned),
    /// A reply its topic refused: send it to the dead-letter topic. Only a refusal by the
    /// topic itself: after transient failures (broker away) the reply stays pending and is
    /// recomputed, so the requester still gets it.
    Fallback(Returned, Note),
    /// Nothing more to try (a trimmed letter refused as too large; no message handed back);
    /// the origin stays pending.
    GiveUp(RdError),
}

impl Failure {
    /// What to do after the failed attempt `job.attempt` at `job`.
    pub(super) fn next_step(self, job: &Job, dead_letter_topic: &str) -> Step {
        let Failure { error, message } = self;
        let Some(message) = message else {
            return Step::GiveUp(error);
        };
        if !is_permanent(&error) {
            return Step::Retry(Returned { error, message });
        }
        if message.topic() != dead_letter_topic {
            // A reply its topic refuses: the dead-letter topic takes it.
            return match job.pending.kind {
                Kind::Reply(_, note) => Step::Fallback(Returned { error, message }, note),
                // Every other record goes to the dead-letter topic itself.
                _ => Step::Retry(Returned { error, message }),
            };
        }
        if is_too_large(&error) {
            if is_trimmed(&message) {
                return Step::GiveUp(error);
            }
            return Step::Trim(Returned { error, message });
        }
        // The dead-letter topic itself refuses (missing, not authorized): nothing else can take
        // the letter, so it waits, with its partition's commits, until an operator fixes it.
        Step::Retry(Returned { error, message })
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
    /// What the producer was made from, to make its replacement after a fatal error.
    config: rdkafka::ClientConfig,
    records: RecordBuilder,
}

impl Sender {
    /// A replier's sender: a producer made from `config`, records built for `cfg`, and the
    /// dead-letter limit learned from the broker in the background.
    pub(super) fn for_replier(
        cfg: &Arc<Config>,
        config: rdkafka::ClientConfig,
        what: &'static str,
    ) -> Result<Self, KafkaError> {
        let producer_max = crate::kafka::client::producer_max_bytes(cfg);
        let letter_limit = dead_letter_limit(producer_max);
        tokio::spawn(learn_dead_letter_limit(
            cfg.clone(),
            producer_max,
            letter_limit.clone(),
        ));
        Self::new(config, RecordBuilder::new(cfg.clone(), letter_limit), what)
    }

    /// A sender on a new producer made from `config` (`what` names it in errors).
    pub(super) fn new(
        config: rdkafka::ClientConfig,
        records: RecordBuilder,
        what: &'static str,
    ) -> Result<Self, KafkaError> {
        let producer = create_producer(&config, what)?;
        Ok(Self {
            producer,
            config,
            records,
        })
    }

    pub(super) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// librdkafka's fatal error of the current producer, if it has one: it will deliver
    /// nothing more (an idempotent producer whose sequence broke, a fenced one).
    pub(super) fn fatal_error(&self) -> Option<String> {
        use rdkafka::producer::Producer;
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Replaces a producer that failed fatally with a new one from the same settings. Records
    /// the old one handed back are sent again on the new one (see [`Sender::retry`]).
    pub(super) fn renew(&mut self) -> Result<(), KafkaError> {
        self.producer = create_producer(&self.config, "replacement producer")?;
        Ok(())
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

    /// `outcome` as the single-record parts the exactly-once replier sends at once.
    pub(super) fn parts(&self, outcome: Outcome) -> Vec<Part> {
        self.records.parts(outcome)
    }

    /// Builds and enqueues one part of an outcome (see [`RecordBuilder::parts`]).
    pub(super) async fn send_part(&mut self, part: Part) -> InFlight {
        let Built {
            record, pending, ..
        } = self.records.outcome(part.outcome);
        let enqueued = enqueue(&self.producer, record).await;
        let job = Job {
            pending,
            attempt: 1,
            then: None,
            finishes: part.finishes,
        };
        Box::pin(wait(enqueued, job))
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

/// The wait before attempt `attempt` (2 or more): doubling from [`RETRY_BACKOFF`], at most
/// [`MAX_BACKOFF`].
pub(super) fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(2).min(16);
    (RETRY_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
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
    tokio::time::sleep(backoff(job.attempt)).await;
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
