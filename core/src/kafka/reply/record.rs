//! Building the Kafka record for an outcome: its topic, key, payload and headers, and what it
//! counts as once delivered (a reply with its status, a dead letter, or a refused reply's
//! fallback dead letter).
//!
//! - a reply goes to its request's reply topic, keyed like the request, with `request-id`, the
//!   correlation header (when the request had one), `traceparent` (when the request joined a
//!   trace), `kbatch-status` and `kbatch-instance`;
//! - a dead letter goes to `replies.dead_letter_topic` with `kbatch-error-kind` and
//!   `kbatch-instance`;
//! - a poison outcome is two records: its dead letter first, its MODEL_ERROR reply after it
//!   ([`Built::then`]);
//! - a refused reply, or a dead letter refused as too large, becomes a dead letter of its own
//!   ([`RecordBuilder::fallback`], [`RecordBuilder::trimmed`]).
//!
//! Invariant: building does no I/O and sends nothing (it reads only the clock, for a dead
//! letter's `failed_at_ms` and the start of reply time): both repliers send exactly the records
//! built here, so they agree on topics, keys, payloads and headers, and this module is tested
//! without a broker. A payload lives in the builder's one reusable buffer until the next build.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::{Header as KHeader, Message, OwnedHeaders};

use super::dead_letter::{
    encode_fitted, poison_dead_letter, reply_dead_letter, trimmed_dead_letter, LetterContext,
    PoisonRequest, Refused, TRIMMED_HEADER,
};
use crate::config::Config;
use crate::pipeline::{now_ms, Origin, Outcome, ReplyTo};
use crate::tier::Tier;
use crate::wire::{DeadLetter, Reply, Status, Timings, WireCodec};

/// What a delivered record counts as, for the report and the telemetry.
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
    pub(super) tier: Tier,
    pub(super) timings: Timings,
    /// When the replier took the outcome: the start of reply time.
    pub(super) ready: Instant,
}

/// What one record stands for: the request record it settles and what it counts as.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) origin: Origin,
    pub(super) kind: Kind,
}

/// A record ready to enqueue. Its payload borrows the builder's buffer.
#[derive(Debug)]
pub(super) struct Record<'a> {
    pub(super) topic: String,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: &'a [u8],
    pub(super) headers: OwnedHeaders,
}

/// The first record of an outcome, what it stands for, and the outcome to deliver once it is
/// acknowledged (a poison record's reply, after its dead letter).
#[derive(Debug)]
pub(super) struct Built<'a> {
    pub(super) record: Record<'a>,
    pub(super) pending: Pending,
    pub(super) then: Option<Box<Outcome>>,
}

/// One record of an outcome (never a poison outcome: see [`RecordBuilder::parts`]) and whether
/// its acknowledgement finishes its origin.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) outcome: Outcome,
    pub(super) finishes: bool,
}

/// A payload's kind and headers, encoded into the buffer.
struct Encoded {
    kind: Kind,
    headers: OwnedHeaders,
}

/// Turns outcomes into Kafka records, reusing one encode buffer.
pub(super) struct RecordBuilder {
    cfg: Arc<Config>,
    codec: WireCodec,
    buf: Vec<u8>,
    /// Largest dead-letter record (key and value) the dead-letter topic accepts; learned from
    /// the broker after the replier started (see [`super::delivery::dead_letter_limit`]).
    letter_limit: Arc<AtomicUsize>,
}

impl RecordBuilder {
    /// `letter_limit`: the largest dead-letter record the dead-letter topic accepts (see
    /// [`super::delivery::dead_letter_limit`]); larger letters are cut to fit.
    pub(super) fn new(cfg: Arc<Config>, letter_limit: Arc<AtomicUsize>) -> Self {
        Self {
            codec: WireCodec::new(&cfg.wire),
            cfg,
            buf: Vec::with_capacity(8 * 1024),
            letter_limit,
        }
    }

    pub(super) fn dead_letter_topic(&self) -> &str {
        &self.cfg.replies.dead_letter_topic
    }

    /// The record for `outcome`. A poison outcome's dead letter comes first and carries its
    /// reply as `then`.
    pub(super) fn outcome(&mut self, outcome: Outcome) -> Built<'_> {
        self.buf.clear();
        let (origin, encoded, topic, key, then) = match outcome {
            Outcome::Reply {
                reply,
                reply_to,
                origin,
            } => {
                let encoded = self.encode_reply(&reply, &reply_to);
                (origin, encoded, reply_to.topic, reply_to.key, None)
            }
            Outcome::DeadLetter {
                letter,
                key,
                origin,
            } => {
                let room = self.letter_room(key.as_deref());
                let encoded = self.encode_letter(&letter, origin.topic_tier, room);
                let topic = self.cfg.replies.dead_letter_topic.clone();
                (origin, encoded, topic, key, None)
            }
            Outcome::Poison {
                reply,
                reply_to,
                origin,
                request,
            } => {
                let ctx = LetterContext {
                    cfg: &self.cfg,
                    codec: &self.codec,
                };
                let poison = PoisonRequest {
                    origin: &origin,
                    reply_to: &reply_to,
                    request: &request,
                    error: reply.error.as_deref().unwrap_or_default(),
                };
                let letter = poison_dead_letter(ctx, &poison, now_ms());
                let room = self.letter_room(reply_to.key.as_deref());
                let encoded = self.encode_letter(&letter, origin.topic_tier, room);
                let topic = self.cfg.replies.dead_letter_topic.clone();
                let key = reply_to.key.clone();
                let then = Outcome::Reply {
                    reply,
                    reply_to,
                    origin,
                };
                (origin, encoded, topic, key, Some(Box::new(then)))
            }
        };
        let instance = self.cfg.kafka.client_id.as_bytes();
        let headers = encoded.headers.insert(header("kbatch-instance", instance));
        Built {
            record: Record {
                topic,
                key,
                payload: &self.buf,
                headers,
            },
            pending: Pending {
                origin,
                kind: encoded.kind,
            },
            then,
        }
    }

    /// `outcome` as single-record outcomes, each with whether it is its origin's last part: a
    /// poison outcome is its dead letter, then its reply; any other outcome is itself. For the
    /// exactly-once replier, which sends every part of a transaction at once.
    pub(super) fn parts(&self, outcome: Outcome) -> Vec<Part> {
        let Outcome::Poison {
            reply,
            reply_to,
            origin,
            request,
        } = outcome
        else {
            return vec![Part {
                outcome,
                finishes: true,
            }];
        };
        let ctx = LetterContext {
            cfg: &self.cfg,
            codec: &self.codec,
        };
        let poison = PoisonRequest {
            origin: &origin,
            reply_to: &reply_to,
            request: &request,
            error: reply.error.as_deref().unwrap_or_default(),
        };
        let letter = Outcome::DeadLetter {
            letter: Box::new(poison_dead_letter(ctx, &poison, now_ms())),
            key: reply_to.key.clone(),
            origin,
        };
        let reply = Outcome::Reply {
            reply,
            reply_to,
            origin,
        };
        vec![
            Part {
                outcome: letter,
                finishes: false,
            },
            Part {
                outcome: reply,
                finishes: true,
            },
        ]
    }

    /// The dead letter standing for a reply its topic refused (`error_kind`
    /// [`super::REPLY_UNDELIVERABLE`]), keyed like the reply.
    pub(super) fn fallback(&mut self, refused: &Refused<'_>) -> Record<'_> {
        let letter = reply_dead_letter(&self.cfg, refused, now_ms());
        self.letter_record(&letter, refused, None)
    }

    /// The dead letter `refused` (refused by its topic as too large) again, without the original
    /// record's value and headers and marked with [`TRIMMED_HEADER`], whose value is the size of
    /// the refused letter.
    pub(super) fn trimmed(&mut self, refused: &Refused<'_>) -> Record<'_> {
        let ctx = LetterContext {
            cfg: &self.cfg,
            codec: &self.codec,
        };
        let letter = trimmed_dead_letter(ctx, refused, now_ms());
        let size = refused.message.payload().map_or(0, <[u8]>::len).to_string();
        self.letter_record(&letter, refused, Some(size))
    }

    /// Encodes `letter` for the dead-letter topic with kbatch's headers (plus the trimmed mark
    /// when `trimmed_from` is set), keyed like the record `refused` it stands for.
    fn letter_record(
        &mut self,
        letter: &DeadLetter,
        refused: &Refused<'_>,
        trimmed_from: Option<String>,
    ) -> Record<'_> {
        let room = self.letter_room(refused.message.key());
        let fitted = encode_fitted(&self.codec, letter, room, &mut self.buf);
        let trimmed_from = trimmed_from.or(fitted.cut_from.map(|size| size.to_string()));
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(header("kbatch-error-kind", letter.error_kind.as_bytes()))
            .insert(header(
                "kbatch-instance",
                self.cfg.kafka.client_id.as_bytes(),
            ));
        if let Some(size) = &trimmed_from {
            headers = headers.insert(header(TRIMMED_HEADER, size.as_bytes()));
        }
        Record {
            topic: self.cfg.replies.dead_letter_topic.clone(),
            key: refused.message.key().map(<[u8]>::to_vec),
            payload: &self.buf,
            headers,
        }
    }

    /// Encodes `reply` into the buffer.
    fn encode_reply(&mut self, reply: &Reply, reply_to: &ReplyTo) -> Encoded {
        self.codec.encode_reply(reply, &mut self.buf);
        let mut headers = OwnedHeaders::new_with_capacity(5)
            .insert(header("request-id", reply.request_id.as_bytes()));
        if let Some(correlation) = &reply_to.correlation_id {
            headers = headers.insert(header(&self.cfg.replies.correlation_header, correlation));
        }
        let traceparent = reply_to.trace.map(|trace| trace.reply_header());
        if let Some(traceparent) = &traceparent {
            headers = headers.insert(header("traceparent", traceparent.as_bytes()));
        }
        headers = headers.insert(header("kbatch-status", reply.status.as_str().as_bytes()));
        let note = Note {
            tier: reply.tier,
            timings: reply.timings,
            ready: Instant::now(),
        };
        Encoded {
            kind: Kind::Reply(reply.status, note),
            headers,
        }
    }

    /// Bytes a letter's value may take in a record keyed `key`.
    fn letter_room(&self, key: Option<&[u8]>) -> usize {
        self.letter_limit
            .load(Ordering::Relaxed)
            .saturating_sub(key.map_or(0, <[u8]>::len))
    }

    /// Encodes `letter` into the buffer, cut to `room` bytes when larger; `tier` is its source
    /// topic's.
    fn encode_letter(&mut self, letter: &DeadLetter, tier: Tier, room: usize) -> Encoded {
        let fitted = encode_fitted(&self.codec, letter, room, &mut self.buf);
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(header("kbatch-error-kind", letter.error_kind.as_bytes()));
        if let Some(size) = fitted.cut_from {
            headers = headers.insert(header(TRIMMED_HEADER, size.to_string().as_bytes()));
        }
        let note = Note {
            tier,
            timings: Timings::default(),
            ready: Instant::now(),
        };
        Encoded {
            kind: Kind::DeadLetter(note),
            headers,
        }
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> KHeader<'a, &'a [u8]> {
    KHeader {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
