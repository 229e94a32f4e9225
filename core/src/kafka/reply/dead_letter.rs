//! The dead letters the replier builds itself (the consumer builds those of unreadable records),
//! as plain `DeadLetter` values; [`super::record`] turns them into Kafka records.
//!
//! - a reply its own topic refuses goes to the dead-letter topic wrapped in a `DeadLetter` whose
//!   `error_kind` is [`REPLY_UNDELIVERABLE`]: a reply topic that does not exist (or refuses the
//!   record) must not hold its partition's commits back forever, so after the replier gives up on
//!   the reply topic the same reply bytes, key and headers go where operators already watch;
//! - a poison request (one the model failed on alone, after its retries) is isolated there too,
//!   `error_kind` [`POISON`], besides its MODEL_ERROR reply: its `value` is the request
//!   re-encoded in `wire.reply_format` (kbatch keeps decoded requests, not their bytes), so it
//!   can be inspected or produced back to its topic as is once the model is fixed;
//! - a dead letter the dead-letter topic refuses as too large (a record near `max_request_bytes`
//!   on a topic whose `max.message.bytes` is smaller, 1 MiB by default on Kafka) is sent again
//!   without the original value and headers, [`trimmed_dead_letter`]: it still names the source
//!   record, which stays readable in its own topic, so nothing is lost and the partition's
//!   commits go on.
//!
//! Invariant: every letter built here names its source record (topic, partition, offset), so a
//! request's outcome can always be delivered somewhere before its offset is committed. No I/O.

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::config::Config;
use crate::pipeline::{Origin, ReplyTo};
use crate::wire::{DeadLetter, Header, Request, WireCodec};

/// `error_kind` of a dead letter that carries an undeliverable reply.
pub const REPLY_UNDELIVERABLE: &str = "reply_undeliverable";
/// `error_kind` of a dead letter that isolates a request the model failed on.
pub const POISON: &str = "poison";

/// What every letter is built with: the service's settings and its wire codec.
#[derive(Debug, Clone, Copy)]
pub struct LetterContext<'a> {
    pub cfg: &'a Config,
    pub codec: &'a WireCodec,
}

/// A request the model failed on alone, as its poison outcome carries it.
#[derive(Debug, Clone, Copy)]
pub struct PoisonRequest<'a> {
    /// Where the request was read.
    pub origin: &'a Origin,
    pub reply_to: &'a ReplyTo,
    pub request: &'a Request,
    /// The model's error.
    pub error: &'a str,
}

/// A record its topic refused: the message librdkafka handed back, why, and the request record
/// it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub origin: &'a Origin,
    pub message: &'a OwnedMessage,
    pub error: &'a RdError,
}

/// The dead letter isolating a poison request.
pub fn poison_dead_letter(
    ctx: LetterContext<'_>,
    poison: &PoisonRequest<'_>,
    now_ms: i64,
) -> DeadLetter {
    let LetterContext { cfg, codec } = ctx;
    let PoisonRequest {
        origin,
        reply_to,
        request,
        error,
    } = *poison;
    let mut value = Vec::with_capacity(64 + request.inputs.element_count() * 8);
    codec.encode_request(request, cfg.wire.reply_format, &mut value);
    let mut headers = vec![Header::new(
        "request-id".to_owned(),
        Some(request.request_id.as_bytes().to_vec()),
    )];
    if let Some(correlation) = &reply_to.correlation_id {
        headers.push(Header::new(
            cfg.replies.correlation_header.clone(),
            Some(correlation.clone()),
        ));
    }
    if let Some(trace) = reply_to.trace {
        headers.push(Header::new(
            "traceparent".to_owned(),
            Some(trace.reply_header().into_bytes()),
        ));
    }
    DeadLetter {
        source_topic: cfg.kafka.topics.topic(origin.topic_tier).to_owned(),
        source_partition: origin.partition,
        source_offset: origin.offset,
        key: reply_to.key.clone(),
        value: Some(value),
        headers,
        error_kind: POISON.to_owned(),
        error: format!("model failed on this request alone after its retries: {error}"),
        failed_at_ms: now_ms,
        processor: cfg.kafka.client_id.clone(),
    }
}

/// The dead letter for the refused reply, which could not be delivered to its topic.
/// `source_*` name the request record; `value` is the encoded reply, unchanged.
pub fn reply_dead_letter(cfg: &Config, refused: &Refused<'_>, now_ms: i64) -> DeadLetter {
    let Refused {
        origin,
        message,
        error,
    } = *refused;
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header::new(h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    DeadLetter {
        source_topic: cfg.kafka.topics.topic(origin.topic_tier).to_owned(),
        source_partition: origin.partition,
        source_offset: origin.offset,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        error_kind: REPLY_UNDELIVERABLE.to_owned(),
        error: format!(
            "reply topic '{}' refused the reply: {error}",
            message.topic()
        ),
        failed_at_ms: now_ms,
        processor: cfg.kafka.client_id.clone(),
    }
}

/// Header marking a dead letter sent without its value and headers; its value is the size in
/// bytes of the letter the dead-letter topic refused.
pub const TRIMMED_HEADER: &str = "kbatch-dead-letter-trimmed";

/// The refused dead letter (encoded, refused by its topic as too large) without the original
/// record's value and headers. The letter is decoded to keep its error kind and text; if that
/// fails the kind comes from the record's `kbatch-error-kind` header.
pub fn trimmed_dead_letter(
    ctx: LetterContext<'_>,
    refused: &Refused<'_>,
    now_ms: i64,
) -> DeadLetter {
    let LetterContext { cfg, codec } = ctx;
    let Refused {
        origin,
        message,
        error,
    } = *refused;
    let size = message.payload().map_or(0, <[u8]>::len);
    let omitted = format!(
        "the dead letter ({size} bytes) was refused by '{}' ({error}); the original value and \
         headers are omitted here and stay readable at the source topic, partition and offset",
        message.topic()
    );
    match message.payload().map(|p| codec.decode_dead_letter(p)) {
        Some(Ok(mut letter)) => {
            letter.value = None;
            letter.headers.clear();
            letter.error = format!("{}; {omitted}", letter.error);
            letter.failed_at_ms = now_ms;
            letter
        }
        _ => {
            let kind = message
                .headers()
                .and_then(|hs| hs.iter().find(|h| h.key == "kbatch-error-kind"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "unknown".to_owned());
            DeadLetter {
                source_topic: cfg.kafka.topics.topic(origin.topic_tier).to_owned(),
                source_partition: origin.partition,
                source_offset: origin.offset,
                key: message.key().map(<[u8]>::to_vec),
                value: None,
                headers: Vec::new(),
                error_kind: kind,
                error: omitted,
                failed_at_ms: now_ms,
                processor: cfg.kafka.client_id.clone(),
            }
        }
    }
}

#[cfg(test)]
#[path = "dead_letter_tests.rs"]
mod tests;

/// A dead letter encoded to fit its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The encoded size of the whole letter, when it had to be cut (else `None`).
    pub cut_from: Option<usize>,
}

/// Encodes `letter` into `buf` (cleared first) in at most `limit` bytes: when the whole letter
/// is larger, its `value` is cut to the longest prefix that fits, and if even an empty value is
/// too large, its headers' values and then its headers are left out; `error` says what was cut.
/// The source record stays readable at the topic, partition and offset the letter names, so a
/// cut letter loses nothing. The JSON framing writes bytes as number arrays (up to four
/// characters a byte), so the cut is found by encoding, not by arithmetic.
pub fn encode_fitted(
    codec: &WireCodec,
    letter: &DeadLetter,
    limit: usize,
    buf: &mut Vec<u8>,
) -> Fitted {
    buf.clear();
    codec.encode_dead_letter(letter, buf);
    let whole = buf.len();
    if whole <= limit {
        return Fitted { cut_from: None };
    }
    let value = letter.value.as_deref().unwrap_or_default();
    let cut = |keep: usize, headers: HeadersKept| {
        let mut l = letter.clone();
        l.value = letter.value.as_ref().map(|v| v[..keep].to_vec());
        match headers {
            HeadersKept::All => {}
            HeadersKept::Names => l.headers.iter_mut().for_each(|h| h.value = None),
            HeadersKept::None => l.headers.clear(),
        }
        l.error = format!(
            "{}; the letter ({whole} bytes) is larger than the dead-letter topic accepts \
             ({limit} bytes): value cut to {keep} of {} bytes{}; the whole record stays \
             readable at its source topic, partition and offset",
            letter.error,
            value.len(),
            headers.note(),
        );
        l
    };
    let fits = |l: &DeadLetter, buf: &mut Vec<u8>| {
        buf.clear();
        codec.encode_dead_letter(l, buf);
        buf.len() <= limit
    };
    for headers in [HeadersKept::All, HeadersKept::Names, HeadersKept::None] {
        if !fits(&cut(0, headers), buf) {
            continue;
        }
        // The longest prefix that fits: `lo` always fits, `hi` never does.
        let (mut lo, mut hi) = (0, value.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(&cut(mid, headers), buf) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let fitted = cut(lo, headers);
        buf.clear();
        codec.encode_dead_letter(&fitted, buf);
        return Fitted {
            cut_from: Some(whole),
        };
    }
    // Not even the letter's own fields fit (a limit of a few hundred bytes): send the smallest
    // letter; the broker's refusal then leaves its offset pending, logged as an error.
    let smallest = cut(0, HeadersKept::None);
    buf.clear();
    codec.encode_dead_letter(&smallest, buf);
    Fitted {
        cut_from: Some(whole),
    }
}

/// How much of the source record's headers a cut letter keeps.
#[derive(Debug, Clone, Copy)]
enum HeadersKept {
    All,
    Names,
    None,
}

impl HeadersKept {
    fn note(self) -> &'static str {
        match self {
            Self::All => "",
            Self::Names => ", header values left out",
            Self::None => ", headers left out",
        }
    }
}
