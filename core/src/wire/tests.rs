//! Codec tests: round trips in every framing, interop with the reference Avro implementation
//! (apache-avro), and every kind of bad input ending in a typed error.

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum, GenericSingleObjectWriter, Schema};
use proptest::prelude::*;

use super::*;
use crate::tensor::{DType, Dim, Tensor, TensorData, TensorSpec};

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
        inputs: Inputs::v1(
            vec![64, 16],
            (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
        ),
    }
}

fn reply() -> Reply {
    Reply {
        request_id: "req-42".into(),
        status: Status::Ok,
        error: None,
        model_name: "cnn_lstm".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.2, 0.3, 0.5],
        },
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

/// A three-input version-2 request (float32, int64, and a dynamic float64 dimension).
fn request_v2() -> Request {
    Request {
        inputs: Inputs::V2(vec![
            Tensor::new("features", vec![2], TensorData::F32(vec![0.5, -1.25])),
            Tensor::new("merchant", vec![1], TensorData::I64(vec![i64::MAX - 3])),
            Tensor::new(
                "history",
                vec![3, 1],
                TensorData::F64(vec![1e-300, 2.5, -0.0]),
            ),
        ]),
        ..request(0)
    }
}

fn reply_v2() -> Reply {
    Reply {
        outputs: Outputs::V2(vec![
            Tensor::new("score", vec![2], TensorData::F32(vec![0.25, 0.75])),
            Tensor::new("label", vec![1], TensorData::I64(vec![1])),
        ]),
        ..reply()
    }
}

/// A tensor as the reference Avro implementation models `io.kbatch.v2.Tensor`.
fn tensor_as_avro_value(t: &Tensor) -> Value {
    let symbol = format!("{:?}", t.dtype()).to_uppercase();
    let mut bytes = Vec::new();
    t.data.write_le_bytes(&mut bytes);
    Value::Record(vec![
        ("name".into(), Value::String(t.name.clone())),
        (
            "dtype".into(),
            Value::Enum(t.dtype().index() as u32, symbol),
        ),
        (
            "shape".into(),
            Value::Array(t.shape.iter().map(|&d| Value::Int(d)).collect()),
        ),
        ("data".into(), Value::Bytes(bytes)),
    ])
}

fn request_as_avro_value(r: &Request) -> Value {
    let opt = |v: Option<Value>| match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    };
    let fields = Value::Record(vec![
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
    ]);
    let Value::Record(mut fields) = fields else {
        unreachable!()
    };
    match &r.inputs {
        Inputs::V1(t) => {
            let TensorData::F32(values) = &t.data else {
                panic!("a version-1 input is float32")
            };
            fields.push((
                "shape".into(),
                Value::Array(t.shape.iter().map(|&d| Value::Int(d)).collect()),
            ));
            fields.push((
                "data".into(),
                Value::Array(values.iter().map(|&f| Value::Float(f)).collect()),
            ));
        }
        Inputs::V2(ts) => fields.push((
            "inputs".into(),
            Value::Array(ts.iter().map(tensor_as_avro_value).collect()),
        )),
    }
    Value::Record(fields)
}

#[test]
fn request_round_trips_in_every_framing() {
    let c = codec();
    for framing in [Framing::Confluent, Framing::SingleObject, Framing::Json] {
        for req in [request(1024), request_v2()] {
            let mut buf = Vec::new();
            c.encode_request(&req, framing, &mut buf);
            assert_eq!(c.decode_request(&buf).unwrap(), req, "{framing:?}");
        }
    }
}

#[test]
fn each_version_travels_under_its_own_schema_id_and_fingerprint() {
    let c = codec();
    let mut v1 = Vec::new();
    c.encode_request(&request(4), Framing::Confluent, &mut v1);
    let mut v2 = Vec::new();
    c.encode_request(&request_v2(), Framing::Confluent, &mut v2);
    assert_eq!(
        (&v1[..5], &v2[..5]),
        (&[0, 0, 0, 0, 1][..], &[0, 0, 0, 0, 4][..])
    );
    let mut so = Vec::new();
    c.encode_request(&request_v2(), Framing::SingleObject, &mut so);
    assert_eq!(so[2..10], FINGERPRINTS.request_v2.to_le_bytes());
    // A reply answers in its request's version.
    let reply_codec = WireCodec::new(&WireConfig {
        reply_format: Framing::Confluent,
        ..WireConfig::default()
    });
    let mut r = Vec::new();
    reply_codec.encode_reply(&reply_v2(), &mut r);
    assert_eq!(&r[..5], &[0, 0, 0, 0, 5]);
    assert_eq!(reply_codec.decode_reply(&r).unwrap(), reply_v2());
    // JSON tells the versions apart by their fields, and refuses a mix of both.
    let mixed = br#"{"request_id":"m","created_at_ms":1,"shape":[1],"data":[1.0],"inputs":[]}"#;
    let err = c.decode_request(mixed).unwrap_err();
    assert!(
        err.to_string().contains("either `shape` and `data`"),
        "{err}"
    );
}

#[test]
fn a_v2_byte_length_that_is_not_whole_elements_is_malformed() {
    let c = codec();
    let mut req = request_v2();
    let Inputs::V2(ts) = &mut req.inputs else {
        unreachable!()
    };
    ts.truncate(1);
    let mut buf = Vec::new();
    c.encode_request(&req, Framing::Confluent, &mut buf);
    // The last tensor's data is its last 8 bytes (two float32), preceded by their length, 8,
    // zig-zag encoded as 16; then the array's end. Claim 7 bytes instead, and drop one.
    let len_at = buf.len() - 1 - 8 - 1;
    assert_eq!(buf[len_at], 16);
    buf[len_at] = 14;
    buf.remove(len_at + 1);
    assert_eq!(
        c.decode_request(&buf),
        Err(WireError::Malformed {
            field: "data",
            reason: "byte length is not a whole number of elements of its dtype"
        })
    );
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
        c.encode_reply(&reply_v2(), &mut buf);
        assert_eq!(c.decode_reply(&buf).unwrap(), reply_v2(), "{framing:?}");
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

    let schema = Schema::parse_str(REQUEST_V2_SCHEMA).unwrap();
    let req = request_v2();
    let mut framed = Vec::new();
    GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
        .unwrap()
        .write_value(request_as_avro_value(&req), &mut framed)
        .unwrap();
    assert_eq!(codec().decode_request(&framed).unwrap(), req);
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

    let mut buf = Vec::new();
    codec().encode_request(&request_v2(), Framing::Confluent, &mut buf);
    let schema = Schema::parse_str(REQUEST_V2_SCHEMA).unwrap();
    let value = from_avro_datum(&schema, &mut &buf[5..], None).unwrap();
    assert_eq!(value, request_as_avro_value(&request_v2()));

    let mut buf = Vec::new();
    WireCodec::new(&WireConfig {
        reply_format: Framing::Confluent,
        ..WireConfig::default()
    })
    .encode_reply(&reply_v2(), &mut buf);
    let schema = Schema::parse_str(REPLY_V2_SCHEMA).unwrap();
    let Value::Record(fields) = from_avro_datum(&schema, &mut &buf[5..], None).unwrap() else {
        panic!("not a record")
    };
    let Outputs::V2(outputs) = reply_v2().outputs else {
        unreachable!()
    };
    assert_eq!(fields[5].0, "outputs");
    assert_eq!(
        fields[5].1,
        Value::Array(outputs.iter().map(tensor_as_avro_value).collect())
    );
}

#[test]
fn every_bundled_schema_parses_and_fingerprints_differ() {
    let fp = &*FINGERPRINTS;
    let all = [
        fp.request,
        fp.request_v2,
        fp.reply,
        fp.reply_v2,
        fp.dead_letter,
    ];
    let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len());
    let schemas = [
        REQUEST_SCHEMA,
        REQUEST_V2_SCHEMA,
        REPLY_SCHEMA,
        REPLY_V2_SCHEMA,
        DEAD_LETTER_SCHEMA,
    ];
    for s in schemas {
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

/// cnn_lstm's signature: `input: float32[64, 16] -> output: float32[3]`.
fn cnn() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        vec![TensorSpec::fixed("input", DType::Float32, &[64, 16])],
        vec![TensorSpec::fixed("output", DType::Float32, &[3])],
    )
}

/// A three-input signature like txn_scorer's, with a dynamic dimension.
fn three() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        vec![
            TensorSpec::fixed("features", DType::Float32, &[2]),
            TensorSpec::fixed("merchant", DType::Int64, &[1]),
            TensorSpec::new("history", DType::Float64, vec![Dim::Dynamic, Dim::Fixed(1)]),
        ],
        vec![
            TensorSpec::fixed("score", DType::Float32, &[2]),
            TensorSpec::fixed("label", DType::Int64, &[1]),
        ],
    )
}

fn check(
    mut r: Request,
    (inputs, outputs): &(Vec<TensorSpec>, Vec<TensorSpec>),
) -> Result<Request, WireError> {
    validate(&mut r, inputs, outputs).map(|()| r)
}

fn with_v1(shape: Vec<i32>, values: Vec<f32>) -> Request {
    Request {
        inputs: Inputs::v1(shape, values),
        ..request(0)
    }
}

#[test]
fn validation_rejects_bad_tensors_with_the_reason() {
    let sig = cnn();
    assert!(check(request(1024), &sig).is_ok());
    let mut r = request(1024);
    r.inputs.v1_mut().unwrap().values[17] = f32::NAN;
    assert!(matches!(
        check(r.clone(), &sig),
        Err(WireError::NonFinite { index: 17, .. })
    ));
    r.inputs.v1_mut().unwrap().values[17] = f32::NEG_INFINITY;
    let err = check(r, &sig).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input \"input\": data[17] is -inf: every value must be finite"
    );
    assert!(matches!(
        check(request(1023), &sig),
        Err(WireError::DataLength {
            expected: 1024,
            got: 1023,
            ..
        })
    ));
    let err = check(with_v1(vec![16, 64], vec![0.0; 1024]), &sig).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input \"input\": shape [16, 64] does not match the model's input shape [64, 16]"
    );
    assert!(matches!(
        check(with_v1(vec![64, -16], vec![0.0; 1024]), &sig),
        Err(WireError::InvalidShape { .. })
    ));
    assert!(matches!(
        check(with_v1(vec![], vec![]), &sig),
        Err(WireError::InvalidShape { .. })
    ));
    let r = Request {
        request_id: String::new(),
        ..request(1024)
    };
    assert!(matches!(
        check(r, &sig),
        Err(WireError::InvalidRequestId(_))
    ));
    let r = Request {
        timeout_ms: Some(-1),
        ..request(1024)
    };
    assert_eq!(check(r, &sig).unwrap_err(), WireError::NegativeTimeout(-1));
    assert!(WireError::NonFinite {
        input: "input".into(),
        index: 0,
        value: f64::NAN
    }
    .is_validation());
    assert!(!WireError::Truncated { field: "data" }.is_validation());
}

#[test]
fn version_2_inputs_are_checked_by_name_type_and_shape_and_put_in_the_models_order() {
    let sig = three();
    let ok = check(request_v2(), &sig).expect("valid");
    let names: Vec<&str> = ok
        .inputs
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["features", "merchant", "history"]);
    // Any order on the wire, and any length of the dynamic dimension.
    let mut shuffled = request_v2();
    let Inputs::V2(ts) = &mut shuffled.inputs else {
        unreachable!()
    };
    ts.reverse();
    ts[0] = Tensor::new("history", vec![5, 1], TensorData::F64(vec![0.5; 5]));
    let ok = check(shuffled, &sig).expect("valid in any order");
    assert_eq!(ok.inputs.tensors()[0].name, "features");
    assert_eq!(ok.inputs.tensors()[2].shape, vec![5, 1]);

    let edit = |f: &dyn Fn(&mut Vec<Tensor>)| {
        let mut r = request_v2();
        let Inputs::V2(ts) = &mut r.inputs else {
            unreachable!()
        };
        f(ts);
        check(r, &sig).unwrap_err().to_string()
    };
    assert_eq!(
        edit(&|ts| ts[1].data = TensorData::F32(vec![3.0])),
        "input \"merchant\" is float32, the model takes int64"
    );
    assert_eq!(
        edit(&|ts| ts.truncate(2)),
        "missing input history: float64[batch, ?, 1]"
    );
    assert_eq!(
        edit(&|ts| ts.push(ts[0].clone())),
        "input \"features\" is given twice"
    );
    assert_eq!(
        edit(&|ts| ts[0].name = "feature".into()),
        "input \"feature\" is not an input of the model (its inputs: features, merchant, history)"
    );
    assert_eq!(
        edit(&|ts| ts[2].shape = vec![3, 2]),
        "input \"history\": shape [3, 2] does not match the model's input shape [?, 1]"
    );
    assert_eq!(
        edit(&|ts| ts[2].data = TensorData::F64(vec![f64::NAN; 3])),
        "input \"history\": data[0] is NaN: every value must be finite"
    );
    // Integers have no non-finite values to refuse: the extremes pass.
    assert!(check(request_v2(), &sig).is_ok());
}

#[test]
fn a_version_1_request_for_a_model_it_cannot_describe_is_told_to_use_version_2() {
    let err = check(request(0), &three()).unwrap_err();
    assert!(matches!(err, WireError::NeedsVersion2 { .. }));
    assert!(err.is_validation());
    assert_eq!(
        err.to_string(),
        "the model's signature is (features: float32[batch, 2], merchant: int64[batch, 1], \
         history: float64[batch, ?, 1]) -> (score: float32[batch, 2], label: int64[batch, 1]); \
         a version-1 request carries one float32 input and gets one float32 output: send an \
         io.kbatch.v2.InferenceRequest"
    );
    // And a version-2 request for a one-input model is fine.
    let v2 = Request {
        inputs: Inputs::V2(vec![Tensor::new(
            "input",
            vec![64, 16],
            TensorData::F32(vec![0.0; 1024]),
        )]),
        ..request(0)
    };
    assert!(check(v2, &cnn()).is_ok());
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
        let mut framed = match magic {
            0 => vec![0, 0, 0, 0, 1 + 3 * (bytes.len() as u8 % 2)],
            1 => {
                let mut v = vec![0xc3, 1];
                let fp = if bytes.len() % 2 == 0 { FINGERPRINTS.request } else { FINGERPRINTS.request_v2 };
                v.extend(fp.to_le_bytes());
                v
            }
            _ => vec![],
        };
        framed.extend(bytes);
        let _ = codec().decode_request(&framed);
        let _ = codec().decode_reply(&framed);
        let _ = codec().decode_dead_letter(&framed);
    }

    #[test]
    fn arbitrary_requests_round_trip(id in "[a-z0-9-]{1,40}", created in any::<i64>(), timeout in proptest::option::of(any::<i32>()),
                                     data in proptest::collection::vec(-1e6f32..1e6, 0..300), tier in proptest::option::of(0usize..4)) {
        let req = Request { request_id: id, created_at_ms: created, timeout_ms: timeout, priority: tier.and_then(Tier::from_index),
                            inputs: Inputs::v1(vec![data.len() as i32], data), ..request(0) };
        for framing in [Framing::Confluent, Framing::SingleObject] {
            let mut buf = Vec::new();
            codec().encode_request(&req, framing, &mut buf);
            prop_assert_eq!(codec().decode_request(&buf).unwrap(), req.clone());
        }
    }
}
