//! Fuzzing the request decoder (issue 6, "bad input"): arbitrary bytes and mutations of valid
//! encodings, in every framing, end in `Ok` or a typed decode error, never a panic; `validate`
//! on every `Ok` ends in `Ok` or a typed validation error; a forged length or count is refused
//! with a size-limit (or truncation) error before anything is reserved for it.
//!
//! Case counts are fixed per property (see `fast`) so the whole file stays within a few seconds
//! in a debug build; `PROPTEST_CASES=300000` runs a long fuzz (done once: no failure). A forged length of 2^60 that reached an allocation
//! would abort the test binary (capacity overflow or out of memory), so "thousands of cases ran"
//! is itself the bound on allocation; the forged-length properties also assert the error variant.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::*;
use crate::tensor::{DType, Dim, Tensor, TensorData, TensorSpec};
use crate::wire::avro::{Reader, Writer};

/// The bundled models' signatures: cnn_lstm (one float32 input) and txn_scorer (three inputs,
/// one of them int64 and one with a dynamic dimension).
fn signatures() -> [(Vec<TensorSpec>, Vec<TensorSpec>); 2] {
    let cnn = (
        vec![TensorSpec::fixed("input", DType::Float32, &[64, 16])],
        vec![TensorSpec::fixed("output", DType::Float32, &[3])],
    );
    let txn = (
        vec![
            TensorSpec::fixed("features", DType::Float32, &[8]),
            TensorSpec::fixed("merchant", DType::Int64, &[1]),
            TensorSpec::new("history", DType::Float32, vec![Dim::Dynamic, Dim::Fixed(4)]),
        ],
        vec![
            TensorSpec::fixed("score", DType::Float32, &[2]),
            TensorSpec::fixed("label", DType::Int64, &[1]),
        ],
    );
    [cnn, txn]
}

const FRAMINGS: [Framing; 3] = [Framing::Confluent, Framing::SingleObject, Framing::Json];

/// The `error_kind`s a decode failure may have (README "Dead letter").
const DECODE_KINDS: [&str; 9] = [
    "empty",
    "unknown_framing",
    "unknown_schema_id",
    "unknown_fingerprint",
    "truncated",
    "malformed",
    "too_large",
    "trailing_bytes",
    "json",
];

fn default_codec() -> WireCodec {
    WireCodec::new(&WireConfig::default())
}

/// Limits small enough that fuzzed records hit every one of them.
fn tight_codec() -> WireCodec {
    WireCodec::new(&WireConfig {
        max_request_bytes: 1024,
        max_tensor_elements: 16,
        max_shape_rank: 2,
        max_string_bytes: 8,
        ..WireConfig::default()
    })
}

fn any_codec() -> impl Strategy<Value = WireCodec> {
    prop_oneof![3 => Just(default_codec()), 1 => Just(tight_codec())]
}

/// Decodes `value` as admission does and validates whatever decodes; panics (a property failure)
/// on anything but a typed outcome that respects the codec's limits.
fn check(codec: &WireCodec, value: &[u8]) -> Result<Request, WireError> {
    let decoded = codec.decode_request(value);
    match &decoded {
        Ok(req) => {
            assert_within_limits(codec.config(), value, req);
            for (inputs, outputs) in signatures() {
                let mut req = req.clone();
                match validate(&mut req, &inputs, &outputs) {
                    Err(e) => {
                        assert!(e.is_validation(), "validate gave a decode error: {e:?}");
                        assert!(!e.to_string().is_empty());
                    }
                    // What passes is in the model's order, each input where the model wants it.
                    Ok(()) => {
                        let names: Vec<&str> = match &req.inputs {
                            Inputs::V1(_) => vec![inputs[0].name.as_str()],
                            Inputs::V2(ts) => ts.iter().map(|t| t.name.as_str()).collect(),
                        };
                        let want: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
                        assert_eq!(names, want);
                    }
                }
            }
        }
        Err(e) => {
            assert!(!e.is_validation(), "decode gave a validation error: {e:?}");
            assert!(DECODE_KINDS.contains(&e.kind()), "undocumented kind {e:?}");
            assert!(!e.to_string().is_empty());
        }
    }
    decoded
}

/// A decoded request is within every configured limit, and what it holds is bounded by the
/// record's own size (Avro: by construction; JSON: the record limit bounds serde's growth).
fn assert_within_limits(cfg: &WireConfig, value: &[u8], req: &Request) {
    assert!(value.len() <= cfg.max_request_bytes);
    let tensors = req.inputs.tensors();
    assert!(
        tensors.len() <= cfg.max_tensors,
        "{} tensors",
        tensors.len()
    );
    let elements = req.inputs.element_count();
    assert!(elements <= cfg.max_tensor_elements, "{elements}");
    for t in tensors {
        assert!(t.shape.len() <= cfg.max_shape_rank, "{:?}", t.shape);
        assert!(t.name.len() <= cfg.max_string_bytes, "{:?}", t.name);
    }
    let strings = [
        Some(&req.request_id),
        req.model_name.as_ref(),
        req.model_version.as_ref(),
        req.reply_topic.as_ref(),
        req.client_id.as_ref(),
    ];
    for s in strings.into_iter().flatten() {
        assert!(s.len() <= cfg.max_string_bytes, "{s:?}");
    }
    // Avro reserves per block (at most doubling); every value took 4 bytes of the record.
    // serde_json grows by doubling; every value took at least 2 bytes ("0,").
    let bound = match value.first() {
        Some(0x00 | 0xc3) => value.len() / 2,
        _ => value.len(),
    };
    for t in tensors {
        assert!(
            t.data.capacity() <= bound.max(4),
            "data capacity {} for a {}-byte record",
            t.data.capacity(),
            value.len()
        );
        assert!(t.shape.capacity() <= value.len().max(4));
    }
}

/// `cases` cases (or `PROPTEST_CASES`, for a long run) with the XorShift generator: ChaCha, the
/// default, is most of the run time of an unoptimised build, and these properties want many
/// cases, not cryptographic randomness.
fn fast(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// Floats including every class the validator must catch.
fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -1e3f32..1e3,
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
    ]
}

prop_compose! {
    /// A request with arbitrary (often invalid) content but encodable in every framing.
    fn small_request()(
        request_id in "[a-z0-9-]{0,12}",
        created_at_ms in any::<i64>(),
        deadline_ms in option::of(any::<i64>()),
        timeout_ms in option::of(any::<i32>()),
        model_name in option::of("[a-z_]{0,10}"),
        model_version in option::of("[0-9]{0,3}"),
        priority in option::of(0usize..4),
        reply_topic in option::of("[a-z.]{0,10}"),
        client_id in option::of("\\PC{0,4}"),
        shape in vec(-2i32..80, 0..4),
        data in vec(any_f32(), 0..40),
        v2 in option::of(vec(any_tensor(), 0..5)),
    ) -> Request {
        Request {
            request_id,
            created_at_ms,
            deadline_ms,
            timeout_ms,
            model_name,
            model_version,
            priority: priority.and_then(Tier::from_index),
            reply_topic,
            client_id,
            inputs: v2.map_or_else(|| Inputs::v1(shape, data), Inputs::V2),
        }
    }
}

/// Values of any element type, floats including the classes the validator must catch.
fn any_data() -> impl Strategy<Value = TensorData> {
    prop_oneof![
        3 => vec(any_f32(), 0..24).prop_map(TensorData::F32),
        1 => vec(any::<f64>(), 0..12).prop_map(TensorData::F64),
        1 => vec(any::<i32>(), 0..12).prop_map(TensorData::I32),
        2 => vec(any::<i64>(), 0..12).prop_map(TensorData::I64),
    ]
}

prop_compose! {
    /// A named tensor, named like a bundled model's input more often than not.
    fn any_tensor()(
        name in prop_oneof![
            Just("input".to_owned()),
            Just("features".to_owned()),
            Just("merchant".to_owned()),
            Just("history".to_owned()),
            "[a-z]{0,6}",
        ],
        shape in vec(-2i32..10, 0..4),
        data in any_data(),
    ) -> Tensor {
        Tensor::new(name, shape, data)
    }
}

prop_compose! {
    /// A version-2 request txn_scorer accepts (in a shuffled order), so mutations also reach
    /// version-2 validation's success path.
    fn txn_request()(seed in any::<u32>(), steps in 1i32..6, rotate in 0usize..3) -> Request {
        let features = Tensor::new("features", vec![8], TensorData::F32(vec![seed as f32 * 1e-6; 8]));
        let merchant = Tensor::new("merchant", vec![1], TensorData::I64(vec![i64::from(seed % 50)]));
        let history = Tensor::new("history", vec![steps, 4], TensorData::F32(vec![0.5; steps as usize * 4]));
        let mut inputs = vec![features, merchant, history];
        inputs.rotate_left(rotate);
        Request {
            request_id: format!("t-{seed}"),
            created_at_ms: 1_700_000_000_000,
            deadline_ms: None,
            timeout_ms: None,
            model_name: Some("txn_scorer".into()),
            model_version: None,
            priority: None,
            reply_topic: None,
            client_id: None,
            inputs: Inputs::V2(inputs),
        }
    }
}

prop_compose! {
    /// A request the bundled model accepts, so mutations also reach validation's success path.
    fn model_request()(seed in any::<u32>(), tier in option::of(0usize..4)) -> Request {
        Request {
            request_id: format!("r-{seed}"),
            created_at_ms: 1_700_000_000_000,
            deadline_ms: None,
            timeout_ms: Some(500),
            model_name: Some("cnn_lstm".into()),
            model_version: None,
            priority: tier.and_then(Tier::from_index),
            reply_topic: None,
            client_id: None,
            inputs: Inputs::v1(vec![64, 16], (0..1024u32).map(|i| (i ^ seed) as f32 * 1e-3).collect()),
        }
    }
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![8 => small_request(), 1 => model_request(), 1 => txn_request()]
}

fn encoded(codec: &WireCodec, req: &Request, framing: Framing) -> Vec<u8> {
    let mut buf = Vec::new();
    codec.encode_request(req, framing, &mut buf);
    buf
}

/// Lengths and counts a forger would write: huge, at the edges of i64, negative.
fn forged_varint() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(1i64 << 60),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(-1i64),
        Just(i64::from(i32::MAX) + 1),
        (-(1i64 << 40))..0,
        0i64..600,
        any::<i64>(),
    ]
}

/// One edit of a valid encoding. Positions are taken modulo the current length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Writes the zig-zag varint of `value` at `at`, replacing as many bytes or inserting.
    Varint {
        at: usize,
        value: i64,
        replace: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, vec(any::<u8>(), 1..12)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        2 => (at, forged_varint(), any::<bool>())
            .prop_map(|(at, value, replace)| Mutation::Varint { at, value, replace }),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len();
    match *m {
        Mutation::FlipBit { at, bit } if len > 0 => buf[at % len] ^= 1 << bit,
        Mutation::SetByte { at, byte } if len > 0 => buf[at % len] = byte,
        Mutation::Truncate { at } => buf.truncate(at % (len + 1)),
        Mutation::Insert { at, ref bytes } => {
            let at = at % (len + 1);
            buf.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { at, len: n } if len > 0 => {
            let at = at % len;
            buf.drain(at..(at + n).min(len));
        }
        Mutation::Varint { at, value, replace } => {
            let mut v = Vec::new();
            Writer { out: &mut v }.long(value);
            let at = at % (len + 1);
            let end = if replace { (at + v.len()).min(len) } else { at };
            buf.splice(at..end, v);
        }
        _ => {}
    }
}

/// A header for arbitrary bytes: the accepted ones reach the Avro reader, the others exercise
/// the framing checks.
fn any_header() -> impl Strategy<Value = Vec<u8>> {
    let mut single_object = vec![0xc3, 0x01];
    single_object.extend(FINGERPRINTS.request.to_le_bytes());
    prop_oneof![
        3 => Just(vec![0, 0, 0, 0, 1]),
        3 => Just(single_object),
        2 => Just(b"{".to_vec()),
        1 => any::<[u8; 5]>().prop_map(|id| vec![0, id[1], id[2], id[3], id[4]]),
        1 => any::<u64>().prop_map(|fp| {
            let mut v = vec![0xc3, 0x01];
            v.extend(fp.to_le_bytes());
            v
        }),
        1 => Just(Vec::new()),
    ]
}

proptest! {
    #![proptest_config(fast(4000))]

    /// Arbitrary bytes (up to 4 KiB) behind every header: a typed outcome, in all three readers.
    #[test]
    fn arbitrary_bytes_in_every_framing_are_a_typed_outcome(
        codec in any_codec(),
        header in any_header(),
        // Mostly short (where the headers and first fields are), some up to 4 KiB.
        body in prop_oneof![3 => vec(any::<u8>(), 0..256), 1 => vec(any::<u8>(), 0..4096)],
    ) {
        let mut value = header;
        value.extend(body);
        check(&codec, &value).ok();
        // Replies and dead letters share the reader: same guarantee (checked by type only).
        codec.decode_reply(&value).ok();
        codec.decode_dead_letter(&value).ok();
    }
}

proptest! {
    #![proptest_config(fast(8000))]

    /// Up to four edits (bit flips, truncation, inserted or deleted bytes, forged varints) of a
    /// valid encoding in any framing.
    #[test]
    fn mutated_valid_encodings_are_a_typed_outcome(
        codec in any_codec(),
        req in any_request(),
        framing in prop::sample::select(FRAMINGS.to_vec()),
        edits in vec(mutation(), 1..5),
    ) {
        let mut value = encoded(&codec, &req, framing);
        for m in &edits {
            apply(&mut value, m);
        }
        check(&codec, &value).ok();
    }
}

proptest! {
    #![proptest_config(fast(300))]

    /// Every strict prefix of a valid encoding, in every framing, is a decode error; the whole
    /// record decodes to what was encoded (validation may still refuse its content).
    #[test]
    fn every_truncation_of_a_valid_encoding_is_a_decode_error(req in small_request()) {
        let codec = default_codec();
        for framing in FRAMINGS {
            let value = encoded(&codec, &req, framing);
            for cut in 0..value.len() {
                let got = check(&codec, &value[..cut]);
                prop_assert!(got.is_err(), "{framing:?} cut at {cut} decoded: {got:?}");
            }
            // serde_json writes non-finite floats as null, so only finite data round-trips as JSON.
            let finite = req.inputs.tensors().iter().all(|t| t.data.first_non_finite().is_none());
            if framing != Framing::Json || finite {
                let whole = check(&codec, &value).expect("the whole record decodes");
                assert_same(&whole, &req, framing);
            }
        }
    }
}

/// `got` is `want`, comparing floats by bits (NaN included); JSON may move a float by one ulp
/// (serde_json parses through f64 and narrows).
fn assert_same(got: &Request, want: &Request, framing: Framing) {
    let without_data = |r: &Request| {
        let mut r = r.clone();
        r.inputs = Inputs::V2(Vec::new());
        r
    };
    assert_eq!(without_data(got), without_data(want), "{framing:?}");
    assert_eq!(got.inputs.version(), want.inputs.version(), "{framing:?}");
    let (got, want) = (got.inputs.tensors(), want.inputs.tensors());
    assert_eq!(got.len(), want.len(), "{framing:?}");
    let ulps = if framing == Framing::Json { 1 } else { 0 };
    for (g, w) in got.iter().zip(want) {
        assert_eq!((&g.name, &g.shape), (&w.name, &w.shape), "{framing:?}");
        match (&g.data, &w.data) {
            (TensorData::F32(g), TensorData::F32(w)) => {
                assert_eq!(g.len(), w.len(), "{framing:?}");
                for (g, w) in g.iter().zip(w) {
                    let d = i64::from(g.to_bits()) - i64::from(w.to_bits());
                    assert!(d.abs() <= ulps, "{framing:?}: {g:e} != {w:e}");
                }
            }
            (TensorData::F64(g), TensorData::F64(w)) => {
                assert_eq!(g.len(), w.len(), "{framing:?}");
                // serde_json's fast float parser may miss the nearest double by a few ulps
                // (README: JSON is for debugging; Avro carries float64 exactly).
                let ulps = if framing == Framing::Json { 4 } else { 0 };
                for (g, w) in g.iter().zip(w) {
                    let d = i128::from(g.to_bits()) - i128::from(w.to_bits());
                    assert!(d.abs() <= ulps, "{framing:?}: {g:e} != {w:e}");
                }
            }
            (g, w) => assert_eq!(g, w, "{framing:?}"),
        }
    }
}

/// A length- or count-carrying field of the request schema, in schema order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    RequestId,
    ModelName,
    ModelVersion,
    ReplyTopic,
    ClientId,
    Shape,
    Data,
}

impl Field {
    const ALL: [Field; 7] = [
        Field::RequestId,
        Field::ModelName,
        Field::ModelVersion,
        Field::ReplyTopic,
        Field::ClientId,
        Field::Shape,
        Field::Data,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::RequestId => "request_id",
            Field::ModelName => "model_name",
            Field::ModelVersion => "model_version",
            Field::ReplyTopic => "reply_topic",
            Field::ClientId => "client_id",
            Field::Shape => "shape",
            Field::Data => "data",
        }
    }

    fn limit(self, cfg: &WireConfig) -> usize {
        match self {
            Field::Shape => cfg.max_shape_rank,
            Field::Data => cfg.max_tensor_elements,
            _ => cfg.max_string_bytes,
        }
    }

    fn is_array(self) -> bool {
        matches!(self, Field::Shape | Field::Data)
    }
}

/// An Avro request body that is valid up to `field`, whose length (or first block count) is
/// then `forged`; a negative block count is followed by a block byte size, as the spec says.
/// `rest` is whatever follows.
fn forged_body(field: Field, forged: i64, block_bytes: i64, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer { out: &mut out };
    let reached = |f: Field| f == field;
    let string = |w: &mut Writer<'_>, f: Field, optional: bool| -> bool {
        if optional {
            w.long(1);
        }
        if reached(f) {
            w.long(forged);
            return true;
        }
        w.string("ok");
        false
    };
    'fields: {
        if string(&mut w, Field::RequestId, false) {
            break 'fields;
        }
        w.long(1_700_000_000_000); // created_at_ms
        w.opt_long(Some(1_700_000_000_500)); // deadline_ms
        w.opt_long(Some(250)); // timeout_ms
        for f in [Field::ModelName, Field::ModelVersion] {
            if string(&mut w, f, true) {
                break 'fields;
            }
        }
        w.opt_long(Some(2)); // priority
        for f in [Field::ReplyTopic, Field::ClientId] {
            if string(&mut w, f, true) {
                break 'fields;
            }
        }
        if field == Field::Shape {
            w.long(forged);
        } else {
            w.int_array(&[64, 16]);
            w.long(forged);
        }
        if forged < 0 {
            w.long(block_bytes);
        }
    }
    out.extend_from_slice(rest);
    out
}

proptest! {
    #![proptest_config(fast(10_000))]

    /// A length or count larger than its limit (up to 2^63) is refused as `TooLarge`, naming the
    /// field and the forged size, in both Avro framings and whatever follows it; a negative
    /// string length is `Malformed`. Nothing is reserved first: a 2^60 reservation would abort.
    #[test]
    fn forged_lengths_are_refused_by_the_size_limit(
        codec in any_codec(),
        field in prop::sample::select(Field::ALL.to_vec()),
        magnitude in prop_oneof![
            Just(1u64 << 60),
            Just(1u64 << 63),
            Just(u64::from(u32::MAX) + 1),
            300u64..(1 << 20),
            any::<u64>(),
        ],
        negative in any::<bool>(),
        block_bytes in any::<i64>(),
        framing in prop::sample::select(vec![Framing::Confluent, Framing::SingleObject]),
        rest in vec(any::<u8>(), 0..64),
    ) {
        let limit = field.limit(codec.config());
        let magnitude = magnitude.max(limit as u64 + 1);
        // i64::MIN is the only value of magnitude 2^63.
        let forged = match (negative, i64::try_from(magnitude)) {
            (false, Ok(m)) => m,
            (true, Ok(m)) => -m,
            (_, Err(_)) => i64::MIN,
        };
        let mut value = Vec::new();
        framing::write_header(framing, 1, FINGERPRINTS.request, &mut value);
        value.extend(forged_body(field, forged, block_bytes, &rest));
        if value.len() > codec.config().max_request_bytes {
            return Ok(());
        }
        let err = check(&codec, &value).expect_err("a forged length decoded");
        let name = field.name();
        if forged < 0 && !field.is_array() {
            prop_assert_eq!(err, WireError::Malformed { field: name, reason: "negative length" });
        } else {
            let expected_size = usize::try_from(forged.unsigned_abs()).unwrap();
            prop_assert!(
                matches!(err, WireError::TooLarge { what, size, limit: l }
                    if what == name && size == expected_size && l == limit),
                "{:?}: forged {} gave {:?}", field, forged, err
            );
        }
    }

    /// Below its limit but beyond the bytes left, a count is a truncation, still with nothing
    /// reserved for it: the tensor buffer stays unallocated.
    #[test]
    fn counts_beyond_the_input_reserve_nothing(
        count in 1i64..(1 << 18),
        negative in any::<bool>(),
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut buf = Vec::new();
        let mut w = Writer { out: &mut buf };
        w.long(if negative { -count } else { count });
        if negative {
            w.long(count * 4);
        }
        buf.extend_from_slice(&rest);
        let mut out = Vec::new();
        let got = Reader::new(&buf).float_array_into("data", 1 << 18, &mut out);
        if count as usize * 4 > rest.len() {
            prop_assert_eq!(got, Err(WireError::Truncated { field: "data" }));
            prop_assert_eq!(out.capacity(), 0);
        } else {
            prop_assert!(out.capacity() <= rest.len() / 2 + 4);
        }
    }
}

/// JSON values of every type and extreme magnitude, for the JSON reader's field types.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e39".to_owned()),
        Just("1e39".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| serde_json::to_string(&v).unwrap()),
        "[a-zA-Z0-9 ]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"CRITICAL\"".to_owned()),
        Just("\"LOWEST\"".to_owned()),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        vec(inner, 0..6).prop_map(|items| format!("[{}]", items.join(",")))
    })
}

const JSON_FIELDS: [&str; 12] = [
    "request_id",
    "created_at_ms",
    "deadline_ms",
    "timeout_ms",
    "model_name",
    "model_version",
    "priority",
    "reply_topic",
    "client_id",
    "shape",
    "data",
    "unknown",
];

proptest! {
    #![proptest_config(fast(3000))]

    /// JSON objects whose fields hold values of any type and magnitude (overflowing numbers,
    /// lone surrogates, nested arrays, duplicate and unknown keys): a typed outcome.
    #[test]
    fn json_with_wrong_types_and_extreme_numbers_is_a_typed_outcome(
        codec in any_codec(),
        fields in vec((prop::sample::select(JSON_FIELDS.to_vec()), json_value()), 0..14),
    ) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        let value = format!(" {{{}}}", body.join(","));
        check(&codec, value.as_bytes()).ok();
    }
}

#[test]
fn json_float_overflow_decodes_to_infinity_and_validation_refuses_it() {
    // serde reads f32 through f64 and narrows with `as`: 1e39 becomes +inf, not an error. The
    // validator is what keeps it out of a batch.
    let data: Vec<String> = (0..1024)
        .map(|i| if i == 7 { "1e39".into() } else { "0.5".into() })
        .collect();
    let value = format!(
        r#"{{"request_id":"j","created_at_ms":1,"shape":[64,16],"data":[{}]}}"#,
        data.join(",")
    );
    let mut req = check(&default_codec(), value.as_bytes()).expect("decodes");
    assert_eq!(
        req.inputs.tensors()[0].data.first_non_finite(),
        Some((7, f64::INFINITY))
    );
    let [(inputs, outputs), _] = signatures();
    assert!(matches!(
        validate(&mut req, &inputs, &outputs),
        Err(WireError::NonFinite { index: 7, .. })
    ));
}

#[test]
fn a_forged_2_pow_60_length_in_every_field_is_too_large() {
    let codec = default_codec();
    for field in Field::ALL {
        let mut value = vec![0, 0, 0, 0, 1];
        value.extend(forged_body(field, 1 << 60, 0, &[]));
        let err = codec.decode_request(&value).unwrap_err();
        assert_eq!(
            err,
            WireError::TooLarge {
                what: field.name(),
                size: 1 << 60,
                limit: field.limit(codec.config()),
            }
        );
        assert_eq!(err.kind(), "too_large");
    }
}
