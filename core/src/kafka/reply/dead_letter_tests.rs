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

fn big_letter(value_len: usize) -> DeadLetter {
    DeadLetter {
        source_topic: "inference.requests.low".into(),
        source_partition: 2,
        source_offset: 9,
        key: Some(b"k".to_vec()),
        value: Some((0..value_len).map(|i| (i % 251) as u8).collect()),
        headers: vec![crate::wire::Header::new("h", Some(vec![7; 300]))],
        error_kind: "too_large".into(),
        error: "record too large".into(),
        failed_at_ms: 1,
        processor: "kbatch".into(),
    }
}

fn codec(framing: crate::wire::Framing) -> WireCodec {
    let mut cfg = Config::default();
    cfg.wire.reply_format = framing;
    WireCodec::new(&cfg.wire)
}

#[test]
fn a_letter_that_fits_is_encoded_whole() {
    let codec = codec(crate::wire::Framing::Confluent);
    let letter = big_letter(1000);
    let mut buf = Vec::new();
    let fitted = encode_fitted(&codec, &letter, 10_000, &mut buf);
    assert_eq!(fitted.cut_from, None);
    assert_eq!(codec.decode_dead_letter(&buf).unwrap(), letter);
}

#[test]
fn a_larger_letter_keeps_the_longest_value_prefix_that_fits_and_says_so() {
    for framing in [crate::wire::Framing::Confluent, crate::wire::Framing::Json] {
        let codec = codec(framing);
        let letter = big_letter(50_000);
        let mut whole = Vec::new();
        codec.encode_dead_letter(&letter, &mut whole);
        let limit = 20_000;
        let mut buf = Vec::new();
        let fitted = encode_fitted(&codec, &letter, limit, &mut buf);
        assert_eq!(fitted.cut_from, Some(whole.len()), "{framing:?}");
        assert!(buf.len() <= limit, "{framing:?}: {} bytes", buf.len());
        let cut = codec.decode_dead_letter(&buf).unwrap();
        let kept = cut.value.as_deref().unwrap();
        assert!(!kept.is_empty(), "{framing:?}");
        assert_eq!(
            kept,
            &letter.value.as_deref().unwrap()[..kept.len()],
            "a prefix"
        );
        assert_eq!(cut.headers, letter.headers, "headers kept while they fit");
        assert!(
            cut.error
                .contains(&format!("value cut to {} of 50000 bytes", kept.len())),
            "{}",
            cut.error
        );
        // The longest prefix: one more byte would not fit.
        let mut longer = cut.clone();
        longer.value = Some(letter.value.as_deref().unwrap()[..kept.len() + 1].to_vec());
        longer.error = cut.error.replace(
            &format!("cut to {} of", kept.len()),
            &format!("cut to {} of", kept.len() + 1),
        );
        let mut again = Vec::new();
        codec.encode_dead_letter(&longer, &mut again);
        assert!(
            again.len() > limit,
            "{framing:?}: {} bytes fit",
            again.len()
        );
    }
}

#[test]
fn headers_go_when_even_an_empty_value_does_not_fit() {
    let codec = codec(crate::wire::Framing::Confluent);
    let letter = big_letter(5_000);
    let mut buf = Vec::new();
    let fitted = encode_fitted(&codec, &letter, 400, &mut buf);
    assert!(fitted.cut_from.is_some());
    assert!(buf.len() <= 400, "{} bytes", buf.len());
    let cut = codec.decode_dead_letter(&buf).unwrap();
    assert_eq!(cut.headers[0].value, None, "header values left out first");
    assert!(
        cut.error.contains("header values left out"),
        "{}",
        cut.error
    );
    assert_eq!(
        (cut.source_partition, cut.source_offset),
        (2, 9),
        "the source stays named"
    );
}
