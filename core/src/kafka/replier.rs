//! The reply producer: writes every outcome to its topic and, once Kafka has acknowledged it,
//! marks its origin done in the offset tracker.
//!
//! Invariant: `tracker.done` is called only for an outcome whose record was acknowledged
//! (acks=all). A reply its topic refuses (missing topic, permanent error, retries spent) goes to
//! the dead-letter topic instead (`fallback`); an outcome that cannot be delivered there either
//! stays pending, so its input offset is never committed past: at-least-once, the record is
//! re-read by whoever owns the partition next.
//!
//! Many deliveries are in flight at once (up to `MAX_IN_FLIGHT`); at the bound the replier stops
//! reading its channel, which backs up into the batcher and the consumer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header as KHeader, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::mpsc::Receiver;

use super::client::producer_config;
use super::fallback::{poison_dead_letter, reply_dead_letter, trimmed_dead_letter, TRIMMED_HEADER};
use super::{KafkaError, SharedTracker};
use crate::config::Config;
use crate::pipeline::{micros, now_ms, Origin, Outcome, ReplyTo};
use crate::telemetry::{Delivered, ErrorKind, Telemetry};
use crate::tier::Tier;
use crate::wire::{DeadLetter, Reply, Status, Timings, WireCodec};

/// Deliveries awaiting an acknowledgement before the replier stops taking outcomes.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Attempts per outcome (librdkafka already retries transient errors inside each attempt,
/// up to `message.timeout.ms`).
const MAX_ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Wait before re-enqueueing when librdkafka's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the replier delivered, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplierReport {
    /// Delivered replies, indexed by `Status as usize` (see [`ReplierReport::replies_with`]).
    pub replies: [u64; Status::ALL.len()],
    pub dead_letters: u64,
    /// Replies their topic refused, delivered to the dead-letter topic instead (also counted in
    /// `dead_letters`, not in `replies`).
    pub reply_fallbacks: u64,
    /// Outcomes given up after `MAX_ATTEMPTS` (or a permanent error); their offsets stay pending.
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
}

/// What was sent, for counting and retrying.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Reply(Status, Note),
    DeadLetter(Note),
    /// A refused reply on its way to the dead-letter topic.
    ReplyFallback(Note),
}

/// What the metrics and statistics learn about an outcome once it is acknowledged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Note {
    tier: Tier,
    timings: Timings,
    /// When the replier took the outcome: the start of reply time.
    ready: std::time::Instant,
}

impl Kind {
    pub(super) fn delivered(self) -> Delivered {
        let (status, note, fallback) = match self {
            Kind::Reply(s, n) => (Some(s), n, false),
            Kind::DeadLetter(n) => (None, n, false),
            Kind::ReplyFallback(n) => (None, n, true),
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

/// One finished delivery attempt.
pub(super) struct Attempt {
    pub(super) origin: Origin,
    pub(super) kind: Kind,
    attempt: u32,
    /// The failed message is handed back by librdkafka, ready to re-send.
    pub(super) result: Result<(), (RdError, Option<OwnedMessage>)>,
    /// What to deliver once this is acknowledged (a poison record's reply, after its dead
    /// letter); the record is done only when the last part is.
    pub(super) then: Option<Box<Outcome>>,
    /// Whether this is the last part of its outcome.
    pub(super) finishes: bool,
}

pub(super) type InFlight = Pin<Box<dyn Future<Output = Attempt> + Send>>;

/// Delivers outcomes until `outcomes` is closed and every delivery has finished.
pub async fn run_replier(
    cfg: Arc<Config>,
    mut outcomes: Receiver<Outcome>,
    tracker: SharedTracker,
    telemetry: Arc<Telemetry>,
) -> Result<ReplierReport, KafkaError> {
    let producer = create_producer(producer_config(&cfg), "producer")?;
    let mut enc = Encoder::new(cfg.clone(), telemetry);
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut report = ReplierReport::default();
    let mut open = true;
    loop {
        let (busy, room) = (!in_flight.is_empty(), in_flight.len() < MAX_IN_FLIGHT);
        tokio::select! {
            // Acknowledgements first: they free room and move commit points.
            biased;
            Some(a) = in_flight.next(), if busy => {
                if let Some(retry) = enc.settle(a, &producer, &tracker, &mut report).await {
                    in_flight.push(retry);
                }
            }
            next = outcomes.recv(), if open && room => match next {
                Some(o) => {
                    // Awaited before `push` borrows `in_flight` (a borrow across the await
                    // would require the futures to be `Sync`).
                    let delivery = enc.send(&producer, o).await;
                    in_flight.push(delivery);
                }
                None => open = false,
            },
            else => break,
        }
    }
    let flusher = producer.clone();
    tokio::task::spawn_blocking(move || flusher.flush(FLUSH_TIMEOUT))
        .await
        .map_err(|e| KafkaError::Thread(e.to_string()))?
        .map_err(KafkaError::Flush)?;
    tracing::info!(?report, "replier finished");
    Ok(report)
}

impl Encoder {
    /// Accounts for a finished attempt; returns the retry or the fallback to run, if any.
    async fn settle(
        &mut self,
        a: Attempt,
        producer: &FutureProducer,
        tracker: &SharedTracker,
        report: &mut ReplierReport,
    ) -> Option<InFlight> {
        let (e, msg) = match a.result {
            Ok(()) => {
                self.acknowledged(&a, tracker, report);
                return match a.then {
                    Some(next) => Some(self.send(producer, *next).await),
                    None => None,
                };
            }
            Err(failed) => failed,
        };
        match msg {
            Some(msg) if a.attempt < MAX_ATTEMPTS && !is_permanent(&e) => {
                report.retries += 1;
                tracing::warn!(error = %e, attempt = a.attempt, origin = ?a.origin, "delivery failed; retrying");
                Some(Box::pin(resend(
                    producer.clone(),
                    msg,
                    (a.origin, a.kind),
                    a.attempt + 1,
                    a.then,
                )))
            }
            // A dead letter too large for its topic goes again without the original bytes
            // (once: a trimmed letter refused again is given up like any other).
            Some(msg)
                if is_too_large(&e)
                    && msg.topic() == self.cfg.replies.dead_letter_topic
                    && !is_trimmed(&msg) =>
            {
                tracing::warn!(error = %e, origin = ?a.origin,
                    "dead-letter topic refused a dead letter as too large; sending it without the original value");
                Some(
                    self.send_trimmed(producer, (a.origin, a.kind), &msg, &e, a.then)
                        .await,
                )
            }
            // Only a refusal by the topic itself: after transient failures (broker away) the
            // reply stays pending and is recomputed, so the requester still gets it.
            Some(msg) if is_permanent(&e) => match a.kind {
                Kind::Reply(_, note) => {
                    tracing::warn!(error = %e, topic = msg.topic(), origin = ?a.origin,
                        "reply topic refused the reply; sending it to the dead-letter topic");
                    Some(
                        self.send_fallback(producer, (&a.origin, note), &msg, &e)
                            .await,
                    )
                }
                _ => self.given_up((&a.origin, a.attempt), &e, report),
            },
            _ => self.given_up((&a.origin, a.attempt), &e, report),
        }
    }

    fn given_up(
        &self,
        (origin, attempts): (&Origin, u32),
        e: &RdError,
        report: &mut ReplierReport,
    ) -> Option<InFlight> {
        report.delivery_failures += 1;
        self.telemetry.metrics.error(ErrorKind::Delivery);
        tracing::error!(error = %e, attempts, origin = ?origin,
            "outcome not delivered; its offset stays uncommitted and will be re-read");
        None
    }

    /// Sends the dead letter `msg`, refused as too large, again without the original record's
    /// value and headers; `then` (a poison request's reply) still follows it.
    async fn send_trimmed(
        &mut self,
        producer: &FutureProducer,
        (origin, kind): (Origin, Kind),
        msg: &OwnedMessage,
        e: &RdError,
        then: Option<Box<Outcome>>,
    ) -> InFlight {
        let letter = trimmed_dead_letter((&self.cfg, &self.codec), &origin, msg, e, now_ms());
        let refused = msg.payload().map_or(0, <[u8]>::len).to_string();
        let extra = header(TRIMMED_HEADER, refused.as_bytes());
        self.send_letter(
            producer,
            &letter,
            msg.key(),
            Some(extra),
            (origin, kind),
            then,
        )
        .await
    }

    /// Sends the refused reply `msg` to the dead-letter topic.
    async fn send_fallback(
        &mut self,
        producer: &FutureProducer,
        (origin, note): (&Origin, Note),
        msg: &OwnedMessage,
        e: &RdError,
    ) -> InFlight {
        let letter = reply_dead_letter(&self.cfg, origin, msg, e, now_ms());
        let kind = Kind::ReplyFallback(note);
        self.send_letter(producer, &letter, msg.key(), None, (*origin, kind), None)
            .await
    }

    /// Encodes `letter` and sends it to the dead-letter topic with kbatch's headers (plus
    /// `extra`), keyed like the record it stands for; returns its first delivery attempt.
    async fn send_letter(
        &mut self,
        producer: &FutureProducer,
        letter: &DeadLetter,
        key: Option<&[u8]>,
        extra: Option<KHeader<'_, &[u8]>>,
        (origin, kind): (Origin, Kind),
        then: Option<Box<Outcome>>,
    ) -> InFlight {
        self.buf.clear();
        self.codec.encode_dead_letter(letter, &mut self.buf);
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(header("kbatch-error-kind", letter.error_kind.as_bytes()))
            .insert(header(
                "kbatch-instance",
                self.cfg.kafka.client_id.as_bytes(),
            ));
        if let Some(h) = extra {
            headers = headers.insert(h);
        }
        let mut record = FutureRecord::to(&self.cfg.replies.dead_letter_topic)
            .payload(&self.buf[..])
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        let enqueued = enqueue(producer, record).await;
        Box::pin(attempt(enqueued, (origin, kind), 1, then))
    }
}

pub(super) fn create_producer(
    config: rdkafka::ClientConfig,
    what: &'static str,
) -> Result<FutureProducer, KafkaError> {
    config
        .create()
        .map_err(|source| KafkaError::Create { what, source })
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

fn is_trimmed(msg: &OwnedMessage) -> bool {
    use rdkafka::message::Headers;
    msg.headers()
        .is_some_and(|hs| hs.iter().any(|h| h.key == TRIMMED_HEADER))
}

/// Turns outcomes into Kafka records, reusing one encode buffer.
pub(super) struct Encoder {
    codec: WireCodec,
    cfg: Arc<Config>,
    buf: Vec<u8>,
    telemetry: Arc<Telemetry>,
}

impl Encoder {
    pub(super) fn new(cfg: Arc<Config>, telemetry: Arc<Telemetry>) -> Self {
        Self {
            codec: WireCodec::new(&cfg.wire),
            cfg,
            buf: Vec::with_capacity(8 * 1024),
            telemetry,
        }
    }

    /// An acknowledged outcome (committed, under exactly-once): counted, recorded, done.
    pub(super) fn acknowledged(
        &self,
        a: &Attempt,
        tracker: &SharedTracker,
        report: &mut ReplierReport,
    ) {
        self.telemetry.delivered(&a.kind.delivered());
        match a.kind {
            Kind::Reply(s, _) => report.replies[s as usize] += 1,
            Kind::DeadLetter(_) => report.dead_letters += 1,
            Kind::ReplyFallback(_) => {
                report.dead_letters += 1;
                report.reply_fallbacks += 1;
            }
        }
        if a.finishes {
            tracker.done(&a.origin);
        }
    }

    /// Encodes and enqueues `o`; returns the future of its first delivery attempt. A poison
    /// outcome's dead letter goes first and carries its reply as `then`.
    pub(super) async fn send(&mut self, producer: &FutureProducer, o: Outcome) -> InFlight {
        self.buf.clear();
        let (origin, kind, topic, key, headers, then) = match o {
            Outcome::Reply {
                reply,
                reply_to,
                origin,
            } => {
                let (kind, h) = self.encode_reply(&reply, &reply_to);
                (origin, kind, reply_to.topic, reply_to.key, h, None)
            }
            Outcome::DeadLetter {
                letter,
                key,
                origin,
            } => {
                let (kind, h) = self.encode_letter(&letter, origin.topic_tier);
                let topic = self.cfg.replies.dead_letter_topic.clone();
                (origin, kind, topic, key, h, None)
            }
            Outcome::Poison {
                reply,
                reply_to,
                origin,
                request,
            } => {
                let error = reply.error.as_deref().unwrap_or_default();
                let letter = poison_dead_letter(
                    (&self.cfg, &self.codec),
                    &origin,
                    (&reply_to, &request),
                    error,
                    now_ms(),
                );
                let (kind, h) = self.encode_letter(&letter, origin.topic_tier);
                let topic = self.cfg.replies.dead_letter_topic.clone();
                let key = reply_to.key.clone();
                let then = Outcome::Reply {
                    reply,
                    reply_to,
                    origin,
                };
                (origin, kind, topic, key, h, Some(Box::new(then)))
            }
        };
        let instance = self.cfg.kafka.client_id.as_bytes();
        let mut record = FutureRecord::to(&topic)
            .payload(&self.buf[..])
            .headers(headers.insert(header("kbatch-instance", instance)));
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        let enqueued = enqueue(producer, record).await;
        Box::pin(attempt(enqueued, (origin, kind), 1, then))
    }

    /// Encodes `reply` into the buffer; returns its kind and headers.
    fn encode_reply(&mut self, reply: &Reply, reply_to: &ReplyTo) -> (Kind, OwnedHeaders) {
        self.codec.encode_reply(reply, &mut self.buf);
        let mut h = OwnedHeaders::new_with_capacity(5)
            .insert(header("request-id", reply.request_id.as_bytes()));
        if let Some(c) = &reply_to.correlation_id {
            h = h.insert(header(&self.cfg.replies.correlation_header, c));
        }
        let traceparent = reply_to.trace.map(|t| t.reply_header());
        if let Some(t) = &traceparent {
            h = h.insert(header("traceparent", t.as_bytes()));
        }
        h = h.insert(header("kbatch-status", reply.status.as_str().as_bytes()));
        let note = Note {
            tier: reply.tier,
            timings: reply.timings,
            ready: std::time::Instant::now(),
        };
        (Kind::Reply(reply.status, note), h)
    }

    /// Encodes `letter` into the buffer; returns its kind and headers.
    fn encode_letter(&mut self, letter: &DeadLetter, tier: Tier) -> (Kind, OwnedHeaders) {
        self.codec.encode_dead_letter(letter, &mut self.buf);
        let h = OwnedHeaders::new_with_capacity(2)
            .insert(header("kbatch-error-kind", letter.error_kind.as_bytes()));
        let note = Note {
            tier,
            timings: Timings::default(),
            ready: std::time::Instant::now(),
        };
        (Kind::DeadLetter(note), h)
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> KHeader<'a, &'a [u8]> {
    KHeader {
        key,
        value: Some(value),
    }
}

/// Enqueues `record`, waiting while librdkafka's local queue is full. An immediate refusal
/// (anything else, e.g. a topic already known not to exist) comes back as the record, owned,
/// so that it can be retried or sent elsewhere like a failed delivery.
async fn enqueue(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, (RdError, OwnedMessage)> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((e, back)) => {
                let owned = OwnedMessage::new(
                    back.payload.map(<[u8]>::to_vec),
                    back.key.map(<[u8]>::to_vec),
                    back.topic.to_owned(),
                    rdkafka::Timestamp::NotAvailable,
                    back.partition.unwrap_or(-1),
                    -1,
                    back.headers,
                );
                return Err((e, owned));
            }
        }
    }
}

/// Waits for the acknowledgement of an enqueued record.
async fn attempt(
    enqueued: Result<rdkafka::producer::DeliveryFuture, (RdError, OwnedMessage)>,
    (origin, kind): (Origin, Kind),
    attempt: u32,
    then: Option<Box<Outcome>>,
) -> Attempt {
    let result = match enqueued {
        Err((e, msg)) => Err((e, Some(msg))),
        Ok(delivery) => match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, msg))) => Err((e, Some(msg))),
            // Only when the producer is dropped, which the replier never does while waiting.
            Err(_canceled) => Err((RdError::Canceled, None)),
        },
    };
    Attempt {
        origin,
        kind,
        attempt,
        result,
        finishes: then.is_none(),
        then,
    }
}

/// Re-sends a message librdkafka handed back after a failed delivery.
async fn resend(
    producer: FutureProducer,
    mut msg: OwnedMessage,
    (origin, kind): (Origin, Kind),
    n: u32,
    then: Option<Box<Outcome>>,
) -> Attempt {
    tokio::time::sleep(RETRY_BACKOFF * 2u32.pow(n - 2)).await;
    let headers = msg
        .detach_headers()
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(0));
    let mut record = FutureRecord::to(msg.topic())
        .payload(msg.payload().unwrap_or_default())
        .headers(headers);
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    let enqueued = enqueue(&producer, record).await;
    attempt(enqueued, (origin, kind), n, then).await
}
