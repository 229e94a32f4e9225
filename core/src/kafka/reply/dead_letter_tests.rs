//! Unit tests of `dead_letter`.

use super::*;
use crate::tier::Tier;
use crate::wire::WireCodec;
use rdkafka::message::{Header as KHeader, OwnedHeaders, Timestamp};
use rdkafka::types::RDKafkaErrorCode;

#[test]
fn the_dead_letter_names_the_request_and_keeps_the_reply_bytes() {
    let cfg = Config::default();
    let headers = OwnedHeaders::new().insert(KHeader {
        key: "request-id",
        value: Some("r-1".as_bytes()),
    });
    let msg = OwnedMessage::new(
        Some(b"reply bytes".to_vec()),
        Some(b"k".to_vec()),
        "no.such.topic".into(),
        Timestamp::NotAvailable,
        -1,
        -1,
        Some(headers),
    );
    let origin = Origin {
        topic_tier: Tier::High,
        partition: 3,
        offset: 77,
        epoch: 1,
    };
    let err = RdError::MessageProduction(RDKafkaErrorCode::UnknownTopic);
    let refused = Refused {
        origin: &origin,
        message: &msg,
        error: &err,
    };
    let dl = reply_dead_letter(&cfg, &refused, 1_000);
    assert_eq!(dl.source_topic, cfg.kafka.topics.high);
    assert_eq!((dl.source_partition, dl.source_offset), (3, 77));
    assert_eq!(dl.value.as_deref(), Some(&b"reply bytes"[..]));
    assert_eq!(dl.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(dl.headers[0].key, "request-id");
    assert_eq!(dl.error_kind, REPLY_UNDELIVERABLE);
    assert!(dl.error.contains("no.such.topic"), "{}", dl.error);
    // It must be encodable as any other dead letter.
    let codec = WireCodec::new(&cfg.wire);
    let mut buf = Vec::new();
    codec.encode_dead_letter(&dl, &mut buf);
    assert_eq!(codec.decode_dead_letter(&buf).unwrap(), dl);
}

#[test]
fn a_poison_letter_keeps_the_request_and_names_the_model_error() {
    let cfg = Config::default();
    let codec = WireCodec::new(&cfg.wire);
    let origin = Origin {
        topic_tier: Tier::Low,
        partition: 1,
        offset: 9,
        epoch: 1,
    };
    let a = crate::pipeline::fixtures::admitted(
        "bad-1",
        (Tier::Low, 1, 9),
        Tier::Low,
        tokio::time::Instant::now(),
    );
    let mut reply_to = a.reply_to.clone();
    reply_to.correlation_id = Some(b"corr".to_vec());
    let poison = PoisonRequest {
        origin: &origin,
        reply_to: &reply_to,
        request: &a.request,
        error: "boom",
    };
    let ctx = LetterContext {
        cfg: &cfg,
        codec: &codec,
    };
    let dl = poison_dead_letter(ctx, &poison, 5);
    assert_eq!(dl.error_kind, POISON);
    assert!(dl.error.ends_with("boom"), "{}", dl.error);
    assert_eq!(dl.source_topic, cfg.kafka.topics.low);
    assert_eq!((dl.source_partition, dl.source_offset), (1, 9));
    assert_eq!(dl.key, reply_to.key);
    let kept = codec.decode_request(dl.value.as_deref().unwrap()).unwrap();
    assert_eq!(kept, a.request, "the request decodes back unchanged");
    let names: Vec<&str> = dl.headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(
        names,
        ["request-id", cfg.replies.correlation_header.as_str()]
    );
    let mut buf = Vec::new();
    codec.encode_dead_letter(&dl, &mut buf);
    assert_eq!(codec.decode_dead_letter(&buf).unwrap(), dl);
}
