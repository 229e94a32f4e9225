//! Record building without a broker: topic, key, payload and headers of each kind of record.

use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, OwnedMessage, Timestamp};
use rdkafka::types::RDKafkaErrorCode;

use super::*;
use crate::kafka::reply::dead_letter::{POISON, REPLY_UNDELIVERABLE};
use crate::pipeline::fixtures::admitted;
use crate::wire::Header;
use crate::wire::TraceContext;

const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn builder() -> RecordBuilder {
    RecordBuilder::new(
        Arc::new(Config::default()),
        Arc::new(std::sync::atomic::AtomicUsize::new(1_000_000)),
    )
}

fn codec() -> WireCodec {
    WireCodec::new(&Config::default().wire)
}

/// The headers of `record` as (name, value) pairs, in order.
fn headers(record: &Record<'_>) -> Vec<(String, Vec<u8>)> {
    record
        .headers
        .iter()
        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
        .collect()
}

fn names(record: &Record<'_>) -> Vec<String> {
    headers(record).into_iter().map(|(name, _)| name).collect()
}

fn value(record: &Record<'_>, name: &str) -> Vec<u8> {
    headers(record)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .1
}

/// A MODEL_ERROR reply to `id`, read at (High, 2, 40), with a key, correlation id and trace.
fn reply_outcome(id: &str) -> Outcome {
    let mut a = admitted(
        id,
        (Tier::High, 2, 40),
        Tier::Normal,
        tokio::time::Instant::now(),
    );
    a.reply_to = ReplyTo {
        topic: "caller.replies".into(),
        key: Some(b"key-1".to_vec()),
        correlation_id: Some(b"corr-1".to_vec()),
        trace: TraceContext::join(Some(TRACEPARENT)),
    };
    Outcome::error(a, Status::ModelError, "boom".into(), 1_000)
}

fn letter() -> DeadLetter {
    DeadLetter {
        source_topic: "requests".into(),
        source_partition: 1,
        source_offset: 8,
        key: Some(b"k".to_vec()),
        value: Some(vec![0xff; 32]),
        headers: vec![Header::new("h", Some(b"v".to_vec()))],
        error_kind: "unknown_framing".into(),
        error: "not a request".into(),
        failed_at_ms: 5,
        processor: "other".into(),
    }
}

fn origin() -> Origin {
    Origin {
        topic_tier: Tier::Low,
        partition: 1,
        offset: 8,
        epoch: 1,
    }
}

/// A message handed back by the producer for `topic`, with `payload`, key `k` and `headers`.
fn handed_back(topic: &str, payload: Vec<u8>, headers: OwnedHeaders) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload),
        Some(b"k".to_vec()),
        topic.into(),
        Timestamp::NotAvailable,
        0,
        -1,
        Some(headers),
    )
}

#[test]
fn a_reply_goes_to_its_reply_topic_with_its_key_and_headers_in_order() {
    let cfg = Config::default();
    let mut records = builder();
    let built = records.outcome(reply_outcome("r-1"));
    let record = &built.record;
    assert_eq!(record.topic, "caller.replies");
    assert_eq!(record.key.as_deref(), Some(&b"key-1"[..]));
    let reply = codec().decode_reply(record.payload).expect("a reply");
    assert_eq!(reply.request_id, "r-1");
    assert_eq!(reply.status, Status::ModelError);
    assert_eq!(
        names(record),
        [
            "request-id",
            cfg.replies.correlation_header.as_str(),
            "traceparent",
            "kbatch-status",
            "kbatch-instance"
        ]
    );
    assert_eq!(value(record, "request-id"), b"r-1");
    assert_eq!(value(record, &cfg.replies.correlation_header), b"corr-1");
    let traceparent = String::from_utf8(value(record, "traceparent")).unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {traceparent}"
    );
    assert!(!traceparent.contains("00f067aa0ba902b7"), "kbatch's span");
    assert_eq!(value(record, "kbatch-status"), b"MODEL_ERROR");
    assert_eq!(
        value(record, "kbatch-instance"),
        cfg.kafka.client_id.as_bytes()
    );
    assert!(built.then.is_none());
    assert_eq!(built.pending.origin.offset, 40);
    match built.pending.kind {
        Kind::Reply(status, note) => {
            assert_eq!(status, Status::ModelError);
            assert_eq!(note.tier, Tier::Normal, "the served tier");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reply_without_correlation_or_trace_carries_neither_header() {
    let mut a = admitted(
        "r-2",
        (Tier::Low, 0, 1),
        Tier::Low,
        tokio::time::Instant::now(),
    );
    a.reply_to.key = None;
    let outcome = Outcome::error(a, Status::Rejected, "full".into(), 0);
    let mut records = builder();
    let built = records.outcome(outcome);
    assert_eq!(built.record.key, None);
    assert_eq!(
        names(&built.record),
        ["request-id", "kbatch-status", "kbatch-instance"]
    );
}

#[test]
fn a_dead_letter_goes_to_the_dead_letter_topic_keyed_like_its_record() {
    let cfg = Config::default();
    let outcome = Outcome::DeadLetter {
        letter: Box::new(letter()),
        key: Some(b"k".to_vec()),
        origin: origin(),
    };
    let mut records = builder();
    let built = records.outcome(outcome);
    let record = &built.record;
    assert_eq!(record.topic, cfg.replies.dead_letter_topic);
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        codec().decode_dead_letter(record.payload).unwrap(),
        letter()
    );
    assert_eq!(names(record), ["kbatch-error-kind", "kbatch-instance"]);
    assert_eq!(value(record, "kbatch-error-kind"), b"unknown_framing");
    match built.pending.kind {
        Kind::DeadLetter(note) => assert_eq!(note.tier, Tier::Low, "its topic's tier"),
        other => panic!("{other:?}"),
    }
    assert!(built.then.is_none());
}

#[test]
fn a_poison_outcome_is_its_dead_letter_first_then_its_reply() {
    let cfg = Config::default();
    let a = admitted(
        "bad-1",
        (Tier::Normal, 4, 2),
        Tier::Normal,
        tokio::time::Instant::now(),
    );
    let mut reply_to = a.reply_to.clone();
    reply_to.key = Some(b"pk".to_vec());
    let mut outcome = Outcome::poison(a, "nan".into(), 0);
    if let Outcome::Poison { reply_to: r, .. } = &mut outcome {
        *r = reply_to.clone();
    }
    let mut records = builder();
    let built = records.outcome(outcome);
    assert_eq!(built.record.topic, cfg.replies.dead_letter_topic);
    assert_eq!(built.record.key.as_deref(), Some(&b"pk"[..]));
    let letter = codec().decode_dead_letter(built.record.payload).unwrap();
    assert_eq!(letter.error_kind, POISON);
    assert!(letter.error.ends_with("nan"), "{}", letter.error);
    assert_eq!(value(&built.record, "kbatch-error-kind"), POISON.as_bytes());
    assert!(matches!(built.pending.kind, Kind::DeadLetter(_)));
    let then = built.then.expect("the reply follows");
    let Outcome::Reply {
        reply,
        reply_to: then_to,
        origin,
    } = *then
    else {
        panic!("the follow-up is the reply");
    };
    assert_eq!(reply.status, Status::ModelError);
    assert_eq!(then_to, reply_to);
    assert_eq!((origin.partition, origin.offset), (4, 2));
}

#[test]
fn a_refused_reply_becomes_a_dead_letter_keeping_its_bytes() {
    let cfg = Config::default();
    let reply_headers = OwnedHeaders::new().insert(header("request-id", b"r-9"));
    let message = handed_back("no.such.topic", b"reply bytes".to_vec(), reply_headers);
    let error = RdError::MessageProduction(RDKafkaErrorCode::UnknownTopic);
    let origin = origin();
    let refused = Refused {
        origin: &origin,
        message: &message,
        error: &error,
    };
    let mut records = builder();
    let record = records.fallback(&refused);
    assert_eq!(record.topic, cfg.replies.dead_letter_topic);
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(names(&record), ["kbatch-error-kind", "kbatch-instance"]);
    assert_eq!(
        value(&record, "kbatch-error-kind"),
        REPLY_UNDELIVERABLE.as_bytes()
    );
    let letter = codec().decode_dead_letter(record.payload).unwrap();
    assert_eq!(letter.error_kind, REPLY_UNDELIVERABLE);
    assert_eq!(letter.value.as_deref(), Some(&b"reply bytes"[..]));
    assert_eq!(letter.headers[0].key, "request-id");
    assert_eq!((letter.source_partition, letter.source_offset), (1, 8));
}

#[test]
fn a_too_large_letter_is_rebuilt_without_its_value_and_marked_with_the_refused_size() {
    let cfg = Config::default();
    let mut encoded = Vec::new();
    codec().encode_dead_letter(&letter(), &mut encoded);
    let size = encoded.len();
    let original = OwnedHeaders::new().insert(header("kbatch-error-kind", b"unknown_framing"));
    let message = handed_back(&cfg.replies.dead_letter_topic, encoded, original);
    let error = RdError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    let origin = origin();
    let refused = Refused {
        origin: &origin,
        message: &message,
        error: &error,
    };
    let mut records = builder();
    let record = records.trimmed(&refused);
    assert_eq!(record.topic, cfg.replies.dead_letter_topic);
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(
        names(&record),
        ["kbatch-error-kind", "kbatch-instance", TRIMMED_HEADER]
    );
    assert_eq!(value(&record, TRIMMED_HEADER), size.to_string().as_bytes());
    let trimmed = codec().decode_dead_letter(record.payload).unwrap();
    assert_eq!(trimmed.value, None);
    assert!(trimmed.headers.is_empty());
    assert_eq!(trimmed.error_kind, "unknown_framing", "kind kept");
    assert!(
        trimmed.error.starts_with("not a request; "),
        "{}",
        trimmed.error
    );
    assert_eq!(trimmed.source_topic, "requests", "still names its source");
}

#[test]
fn an_undecodable_too_large_letter_takes_its_kind_from_its_header() {
    let cfg = Config::default();
    let original = OwnedHeaders::new().insert(header("kbatch-error-kind", b"poison"));
    let message = handed_back(&cfg.replies.dead_letter_topic, vec![0xff; 64], original);
    let error = RdError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    let origin = origin();
    let refused = Refused {
        origin: &origin,
        message: &message,
        error: &error,
    };
    let mut records = builder();
    let record = records.trimmed(&refused);
    let trimmed = codec().decode_dead_letter(record.payload).unwrap();
    assert_eq!(trimmed.error_kind, "poison");
    assert_eq!(trimmed.source_topic, cfg.kafka.topics.low);
    assert_eq!((trimmed.source_partition, trimmed.source_offset), (1, 8));
    assert_eq!(value(&record, TRIMMED_HEADER), b"64");
}
