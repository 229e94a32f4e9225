//! Throughput of the ONNX Runtime backend on the committed CNN+LSTM model, per batch size.
//!
//! Invariant: measures `Backend::infer` alone (no Kafka, no batcher), on fixed-seed random rows,
//! with 2 intra-op threads, so figures are comparable between runs on the same machine. The
//! figure to watch is items/s: how much a bigger batch buys over single-row runs.
//!
//! Needs vendor/onnxruntime/ (scripts/install-onnxruntime.sh). Run: `cargo bench --bench inference`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kbatch_core::config::ModelConfig;
use kbatch_core::inference::{Backend, LoadSpec, OrtBackend};
use kbatch_core::model::{BatchTensor, ModelId};
use kbatch_core::tensor::TensorData;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BATCH_SIZES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const SEED: u64 = 0x6b62_6174_6368;

fn backend() -> OrtBackend {
    let config = ModelConfig {
        intra_op_threads: 2,
        warmup_batches: 6,
        ..ModelConfig::default()
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/cnn_lstm/1/model.onnx");
    let spec = LoadSpec::new(&config, ModelId::new("cnn_lstm", "1"), path);
    OrtBackend::new(&spec).unwrap_or_else(|e| {
        panic!("cannot build backend ({e}); run scripts/install-onnxruntime.sh first")
    })
}

fn bench_batch_sizes(c: &mut Criterion) {
    let mut backend = backend();
    let row_shape = vec![64, 16];
    let row_len: usize = row_shape.iter().product();
    let max_batch = BATCH_SIZES[BATCH_SIZES.len() - 1];
    let mut rng = StdRng::seed_from_u64(SEED);
    let input: Vec<f32> = (0..max_batch * row_len)
        .map(|_| rng.random_range(-3.0..3.0))
        .collect();
    let mut output = Vec::new();

    let mut group = c.benchmark_group("ort_cnn_lstm");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for batch in BATCH_SIZES {
        group.throughput(Throughput::Elements(batch as u64));
        let rows = [BatchTensor {
            row_shape: row_shape.clone(),
            data: TensorData::F32(input[..batch * row_len].to_vec()),
        }];
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                backend
                    .infer(black_box(&rows), batch, &mut output)
                    .expect("inference failed");
                black_box(&output);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_batch_sizes);
criterion_main!(benches);
