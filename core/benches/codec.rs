//! Request decode and reply encode cost for the bundled model's request size ([64, 16] floats),
//! in both schema versions (version 2 carries the same tensor as little-endian bytes), and for a
//! three-input version-2 request like the bundled txn_scorer's. The figure to watch is ns per
//! decoded request: decoding must not allocate per value.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kbatch_core::tensor::{DType, Tensor, TensorData, TensorSpec};
use kbatch_core::wire::{
    validate, Framing, Inputs, Outputs, Reply, Request, Status, Tier, Timings, WireCodec,
    WireConfig,
};

fn cnn_lstm_values() -> Vec<f32> {
    (0..1024).map(|i| (i as f32).sin()).collect()
}

/// The same request in version 2: one named float32 tensor.
fn request_v2() -> Request {
    let input = Tensor::new("input", vec![64, 16], TensorData::F32(cnn_lstm_values()));
    Request {
        inputs: Inputs::V2(vec![input]),
        ..request()
    }
}

/// A version-2 request with three inputs of two element types (txn_scorer's signature).
fn request_three_inputs() -> Request {
    let features = Tensor::new("features", vec![8], TensorData::F32(vec![0.25; 8]));
    let merchant = Tensor::new("merchant", vec![1], TensorData::I64(vec![42]));
    let history = Tensor::new("history", vec![6, 4], TensorData::F32(vec![0.5; 24]));
    Request {
        model_name: Some("txn_scorer".into()),
        inputs: Inputs::V2(vec![history, features, merchant]),
        ..request()
    }
}

fn request() -> Request {
    Request {
        request_id: "0f6b1c2e-6a4d-4d5e-9a51-6d1c2b3a4f5e".into(),
        created_at_ms: 1_700_000_000_000,
        deadline_ms: None,
        timeout_ms: Some(100),
        model_name: Some("cnn_lstm".into()),
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: Some("bench".into()),
        inputs: Inputs::v1(vec![64, 16], cnn_lstm_values()),
    }
}

fn decode(c: &mut Criterion) {
    let codec = WireCodec::new(&WireConfig::default());
    let mut group = c.benchmark_group("decode_request");
    group.throughput(Throughput::Elements(1));
    for framing in [Framing::Confluent, Framing::SingleObject, Framing::Json] {
        let mut buf = Vec::new();
        codec.encode_request(&request(), framing, &mut buf);
        group.bench_function(format!("{framing:?}"), |b| {
            b.iter(|| codec.decode_request(black_box(&buf)).unwrap())
        });
    }
    let mut buf = Vec::new();
    codec.encode_request(&request(), Framing::Confluent, &mut buf);
    // Peer: the generic apache-avro reader, which builds one `Value` per float.
    let schema = apache_avro::Schema::parse_str(kbatch_core::wire::REQUEST_SCHEMA).unwrap();
    group.bench_function("apache-avro generic Value (peer)", |b| {
        b.iter(|| apache_avro::from_avro_datum(&schema, &mut &black_box(&buf)[5..], None).unwrap())
    });
    let inputs = [TensorSpec::fixed("input", DType::Float32, &[64, 16])];
    let outputs = [TensorSpec::fixed("output", DType::Float32, &[3])];
    group.bench_function("Confluent+validate", |b| {
        b.iter(|| {
            let mut r = codec.decode_request(black_box(&buf)).unwrap();
            validate(&mut r, &inputs, &outputs).unwrap();
            r
        })
    });
    let mut v2 = Vec::new();
    codec.encode_request(&request_v2(), Framing::Confluent, &mut v2);
    group.bench_function("v2 Confluent+validate", |b| {
        b.iter(|| {
            let mut r = codec.decode_request(black_box(&v2)).unwrap();
            validate(&mut r, &inputs, &outputs).unwrap();
            r
        })
    });
    let three = [
        TensorSpec::fixed("features", DType::Float32, &[8]),
        TensorSpec::fixed("merchant", DType::Int64, &[1]),
        TensorSpec::new(
            "history",
            DType::Float32,
            vec![
                kbatch_core::tensor::Dim::Dynamic,
                kbatch_core::tensor::Dim::Fixed(4),
            ],
        ),
    ];
    let mut v2_three = Vec::new();
    codec.encode_request(&request_three_inputs(), Framing::Confluent, &mut v2_three);
    group.bench_function("v2 three inputs Confluent+validate", |b| {
        b.iter(|| {
            let mut r = codec.decode_request(black_box(&v2_three)).unwrap();
            validate(&mut r, &three, &outputs).unwrap();
            r
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let codec = WireCodec::new(&WireConfig::default());
    let reply = Reply {
        request_id: request().request_id,
        status: Status::Ok,
        error: None,
        model_name: "cnn_lstm".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.1, 0.2, 0.7],
        },
        tier: Tier::Normal,
        timings: Timings {
            queue_wait_us: 1000,
            batch_size: 32,
            inference_us: 2000,
            end_to_end_us: 4000,
        },
        completed_at_ms: 1_700_000_000_004,
    };
    let mut buf = Vec::with_capacity(256);
    c.bench_function("encode_reply/SingleObject", |b| {
        b.iter(|| {
            buf.clear();
            codec.encode_reply(black_box(&reply), &mut buf);
            buf.len()
        })
    });
    let reply_v2 = Reply {
        outputs: Outputs::V2(vec![
            Tensor::new("score", vec![2], TensorData::F32(vec![0.3, 0.7])),
            Tensor::new("label", vec![1], TensorData::I64(vec![1])),
        ]),
        ..reply
    };
    c.bench_function("encode_reply/v2 SingleObject", |b| {
        b.iter(|| {
            buf.clear();
            codec.encode_reply(black_box(&reply_v2), &mut buf);
            buf.len()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).sample_size(50);
    targets = decode, encode
}
criterion_main!(benches);
