//! Codec tests: round trips in every framing, interop with the reference Avro implementation
//! (apache-avro), and every kind of bad input ending in a typed error.

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum, GenericSingleObjectWriter, Schema};
use proptest::prelude::*;

use super::*;

/// Every input, however hostile, ends in a value or a typed error.
mod fuzz;

fn codec() -> WireCodec {
    WireCodec::new(&WireConfig::default())
}

fn request(n: usize) -> Request {
    Request {
        request_id: "req-42".into(),
        created_at_ms: 1_700_000_000_123,
        deadline_ms: Some(1_700_000_000_623),
        timeout_ms: Some(250),
        model_name: Some("cnn_lstm".into()),
        model_version: None,
        priority: Some(Tier::Low),
        reply_topic: Some("replies.svc-a".into()),
        client_id: Some("svc-a".into()),
        shape: vec![64, 16],
        data: (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
    }
}

fn reply() -> Reply {
    Reply {
        request_id: "req-42".into(),
        status: Status::Ok,
        error: None,
        model_name: "cnn_lstm".into(),
        model_version: "1".into(),
        output_shape: vec![3],
        outputs: vec![0.2, 0.3, 0.5],
        tier: Tier::High,
        timings: Timings {
            queue_wait_us: 1200,
            batch_size: 32,
            inference_us: 2400,
            end_to_end_us: 5000,
        },
        completed_at_ms: 1_700_000_000_200,
    }
}

fn request_as_avro_value(r: &Request) -> Value {
    let opt = |v: Option<Value>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    };
    Value::Record(vec![
        ("request_id".into(), Value::String(r.request_id.clone())),
        (
            "created_at_ms".into(),
            Value::TimestampMillis(r.created_at_ms),
        ),
        (
            "deadline_ms".into(),
            opt(r.deadline_ms.map(Value::TimestampMillis)),
        ),
        ("timeout_ms".into(), opt(r.timeout_ms.map(Value::Int))),
        (
            "model_name".into(),
            opt(r.model_name.clone().map(Value::String)),
        ),
        (
            "model_version".into(),
            opt(r.model_version.clone().map(Value::String)),
        ),
        (
            "priority".into(),
            opt(r
                .priority
                .map(|p| Value::Enum(p.index() as u32, format!("{p:?}").to_uppercase()))),
        ),
        (
            "reply_topic".into(),
            opt(r.reply_topic.clone().map(Value::String)),
        ),
        (
            "client_id".into(),
            opt(r.client_id.clone().map(Value::String)),
        ),
        (
            "shape".into(),
            Value::Array(r.shape.iter().map(|&d| Value::Int(d)).collect()),
        ),
        (
            "data".into(),
            Value::Array(r.data.iter().map(|&f| Value::Float(f)).collect()),
        ),
    ])
}

#[test]
fn request_round_trips_in_every_framing() {
    let c = codec();
    for framing in [Framing::Confluent, Framing::SingleObject, Framing::Json] {
        let mut buf = Vec::new();
        c.encode_request(&request(1024), framing, &mut buf);
        assert_eq!(
            c.decode_request(&buf).unwrap(),
            request(1024),
            "{framing:?}"
        );
    }
}

#[test]
fn reply_and_dead_letter_round_trip_in_every_framing() {
    let dl = DeadLetter {
        source_topic: "inference.requests.low".into(),
        source_partition: 3,
        source_offset: 99,
        key: Some(b"k".to_vec()),
        value: Some(vec![0xde, 0xad]),
        headers: vec![
            Header::new("correlation-id", Some(b"c1".to_vec())),
            Header::new("empty", None),
        ],
        error_kind: "truncated".into(),
        error: "record truncated".into(),
        failed_at_ms: 5,
        processor: "kbatch-1".into(),
    };
    for framing in [Framing::Confluent, Framing::SingleObject, Framing::Json] {
        let c = WireCodec::new(&WireConfig {
            reply_format: framing,
            ..WireConfig::default()
        });
        let mut buf = Vec::new();
        c.encode_reply(&reply(), &mut buf);
        assert_eq!(c.decode_reply(&buf).unwrap(), reply(), "{framing:?}");
        buf.clear();
        c.encode_dead_letter(&dl, &mut buf);
        assert_eq!(c.decode_dead_letter(&buf).unwrap(), dl, "{framing:?}");
    }
}

#[test]
fn reads_what_the_reference_avro_implementation_writes() {
    let schema = Schema::parse_str(REQUEST_SCHEMA).unwrap();
    let req = request(64 * 16);
    let mut framed = Vec::new();
    GenericSingleObjectWriter::new_with_capacity(&schema, 8192)
        .unwrap()
        .write_value(request_as_avro_value(&req), &mut framed)
        .unwrap();
    assert_eq!(codec().decode_request(&framed).unwrap(), req);

    let mut confluent = vec![0, 0, 0, 0, 1];
    confluent.extend(to_avro_datum(&schema, request_as_avro_value(&req)).unwrap());
    assert_eq!(codec().decode_request(&confluent).unwrap(), req);
}

#[test]
fn the_reference_avro_implementation_reads_what_we_write() {
    let req = Request {
        priority: None,
        deadline_ms: None,
        ..request(10)
    };
    let mut buf = Vec::new();
    codec().encode_request(&req, Framing::Confluent, &mut buf);
    let schema = Schema::parse_str(REQUEST_SCHEMA).unwrap();
    let value = from_avro_datum(&schema, &mut &buf[5..], None).unwrap();
    assert_eq!(value, request_as_avro_value(&req));

    let mut buf = Vec::new();
    WireCodec::new(&WireConfig {
        reply_format: Framing::Confluent,
        ..WireConfig::default()
    })
    .encode_reply(&reply(), &mut buf);
    let schema = Schema::parse_str(REPLY_SCHEMA).unwrap();
    let Value::Record(fields) = from_avro_datum(&schema, &mut &buf[5..], None).unwrap() else {
        panic!("not a record")
    };
    assert_eq!(fields[0].1, Value::String("req-42".into()));
    assert_eq!(fields[1].1, Value::Enum(0, "OK".into()));
    assert_eq!(
        fields[6].1,
        Value::Array(vec![
            Value::Float(0.2),
            Value::Float(0.3),
            Value::Float(0.5)
        ])
    );
}

#[test]
fn every_bundled_schema_parses_and_fingerprints_differ() {
    let fp = &*FINGERPRINTS;
    assert_ne!(fp.request, fp.reply);
    assert_ne!(fp.reply, fp.dead_letter);
    for s in [REQUEST_SCHEMA, REPLY_SCHEMA, DEAD_LETTER_SCHEMA] {
        Schema::parse_str(s).unwrap();
    }
}

#[test]
fn wrong_schema_id_and_wrong_fingerprint_are_typed_errors() {
    let c = codec();
    let mut buf = Vec::new();
    c.encode_request(&request(4), Framing::Confluent, &mut buf);
    buf[4] = 7;
    assert!(matches!(
        c.decode_request(&buf),
        Err(WireError::UnknownSchemaId { id: 7, .. })
    ));

    let mut buf = Vec::new();
    c.encode_request(&request(4), Framing::SingleObject, &mut buf);
    buf[2] ^= 0xff;
    assert!(matches!(
        c.decode_request(&buf),
        Err(WireError::UnknownFingerprint { .. })
    ));

    // A reply is not a request, even in a well-formed frame.
    let mut buf = Vec::new();
    c.encode_reply(&reply(), &mut buf);
    assert!(matches!(
        c.decode_request(&buf),
        Err(WireError::UnknownFingerprint { .. })
    ));
}

#[test]
fn every_truncation_of_a_valid_request_is_an_error() {
    let c = codec();
    for framing in [Framing::Confluent, Framing::SingleObject] {
        let mut buf = Vec::new();
        c.encode_request(&request(8), framing, &mut buf);
        for cut in 0..buf.len() {
            let err = c.decode_request(&buf[..cut]).unwrap_err();
            assert!(!err.is_validation(), "cut {cut}: {err:?}");
        }
    }
}

#[test]
fn empty_trailing_oversized_and_unknown_framing() {
    let c = WireCodec::new(&WireConfig {
        max_request_bytes: 100,
        ..WireConfig::default()
    });
    assert_eq!(c.decode_request(&[]), Err(WireError::Empty));
    assert!(matches!(
        c.decode_request(b"hello"),
        Err(WireError::UnknownFraming { first_byte: b'h' })
    ));
    let mut buf = Vec::new();
    c.encode_request(&request(2), Framing::Confluent, &mut buf);
    buf.push(0);
    assert_eq!(
        c.decode_request(&buf),
        Err(WireError::TrailingBytes { count: 1 })
    );
    let mut big = Vec::new();
    c.encode_request(&request(64), Framing::Confluent, &mut big);
    assert!(matches!(
        c.decode_request(&big),
        Err(WireError::TooLarge { what: "record", .. })
    ));
}

#[test]
fn tensor_and_string_limits_hold_in_avro_and_json() {
    let c = WireCodec::new(&WireConfig {
        max_tensor_elements: 16,
        max_string_bytes: 8,
        ..WireConfig::default()
    });
    for framing in [Framing::Confluent, Framing::Json] {
        let mut buf = Vec::new();
        c.encode_request(
            &Request {
                request_id: "r".into(),
                reply_topic: None,
                client_id: None,
                model_name: None,
                ..request(17)
            },
            framing,
            &mut buf,
        );
        assert!(
            matches!(c.decode_request(&buf), Err(WireError::TooLarge { .. })),
            "{framing:?}"
        );
        buf.clear();
        c.encode_request(
            &Request {
                request_id: "123456789".into(),
                ..request(4)
            },
            framing,
            &mut buf,
        );
        assert!(
            matches!(c.decode_request(&buf), Err(WireError::TooLarge { .. })),
            "{framing:?}"
        );
    }
}

#[test]
fn validation_rejects_bad_tensors_with_the_reason() {
    let shape = [64usize, 16];
    assert_eq!(validate(&request(1024), &shape), Ok(()));
    let mut r = request(1024);
    r.data[17] = f32::NAN;
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::NonFinite { index: 17, .. })
    ));
    r.data[17] = f32::NEG_INFINITY;
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::NonFinite { index: 17, .. })
    ));
    assert!(matches!(
        validate(&request(1023), &shape),
        Err(WireError::DataLength {
            expected: 1024,
            got: 1023
        })
    ));
    let r = Request {
        shape: vec![16, 64],
        ..request(1024)
    };
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::ShapeMismatch { .. })
    ));
    let r = Request {
        shape: vec![64, -16],
        ..request(1024)
    };
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::InvalidShape { .. })
    ));
    let r = Request {
        shape: vec![],
        ..request(0)
    };
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::InvalidShape { .. })
    ));
    let r = Request {
        request_id: String::new(),
        ..request(1024)
    };
    assert!(matches!(
        validate(&r, &shape),
        Err(WireError::InvalidRequestId(_))
    ));
    let r = Request {
        timeout_ms: Some(-1),
        ..request(1024)
    };
    assert_eq!(validate(&r, &shape), Err(WireError::NegativeTimeout(-1)));
    assert!(WireError::NonFinite {
        index: 0,
        value: f32::NAN
    }
    .is_validation());
    assert!(!WireError::Truncated { field: "data" }.is_validation());
}

#[test]
fn effective_deadline_is_the_earlier_bound() {
    let r = request(0);
    assert_eq!(r.effective_deadline_ms(), Some(1_700_000_000_373));
    let r = Request {
        timeout_ms: None,
        ..request(0)
    };
    assert_eq!(r.effective_deadline_ms(), Some(1_700_000_000_623));
    let r = Request {
        timeout_ms: None,
        deadline_ms: None,
        ..request(0)
    };
    assert_eq!(r.effective_deadline_ms(), None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in 0u8..3) {
        let mut framed = match magic { 0 => vec![0, 0, 0, 0, 1], 1 => { let mut v = vec![0xc3, 1]; v.extend(FINGERPRINTS.request.to_le_bytes()); v }, _ => vec![] };
        framed.extend(bytes);
        let _ = codec().decode_request(&framed);
        let _ = codec().decode_reply(&framed);
        let _ = codec().decode_dead_letter(&framed);
    }

    #[test]
    fn arbitrary_requests_round_trip(id in "[a-z0-9-]{1,40}", created in any::<i64>(), timeout in proptest::option::of(any::<i32>()),
                                     data in proptest::collection::vec(-1e6f32..1e6, 0..300), tier in proptest::option::of(0usize..4)) {
        let req = Request { request_id: id, created_at_ms: created, timeout_ms: timeout, priority: tier.and_then(Tier::from_index),
                            shape: vec![data.len() as i32], data, ..request(0) };
        for framing in [Framing::Confluent, Framing::SingleObject] {
            let mut buf = Vec::new();
            codec().encode_request(&req, framing, &mut buf);
            prop_assert_eq!(codec().decode_request(&buf).unwrap(), req.clone());
        }
    }
}
