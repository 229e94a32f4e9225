//! Request decode and reply encode cost for the bundled model's request size ([64, 16] floats).
//! The figure to watch is ns per decoded request: decoding must not allocate per float.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kbatch_core::wire::{
    validate, Framing, Reply, Request, Status, Tier, Timings, WireCodec, WireConfig,
};

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
        shape: vec![64, 16],
        data: (0..1024).map(|i| (i as f32).sin()).collect(),
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
    group.bench_function("Confluent+validate", |b| {
        b.iter(|| {
            let r = codec.decode_request(black_box(&buf)).unwrap();
            validate(&r, &[64, 16]).unwrap();
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
        output_shape: vec![3],
        outputs: vec![0.1, 0.2, 0.7],
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).sample_size(50);
    targets = decode, encode
}
criterion_main!(benches);
