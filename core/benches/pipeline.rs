//! The serving path without the broker, against the model alone, in one run: how close kbatch
//! comes to what ONNX Runtime can do with the same model and threads (issue 7).
//!
//! `raw/batch_N`: `Backend::infer` on N-row batches cut from one contiguous buffer — no copies,
//! no queues: the ceiling. `serve/defaults`: encoded request records (Confluent framing, 4 tiers)
//! through admission (decode, validate, reply routing — the consumer thread's work), the tier
//! channels, the real batcher task (default policy, adaptive sizing on), the real inference
//! worker thread and its poison-isolation wrapper, and reply encoding with the replier's codec
//! (the replier's work up to handing bytes to librdkafka). Everything Kafka itself costs is
//! left out: `scripts/bench.sh` measures that.
//!
//! Invariant: both use one ONNX Runtime session with 1 intra-op thread (what `kbatch serve`
//! runs on 2 cores: the other core is for Kafka and the pipeline) and the same inputs, and
//! count items, so their elements/s compare directly: serve / best raw is the pipeline's share
//! of the model's throughput.
//!
//! Needs vendor/onnxruntime/ (scripts/install-onnxruntime.sh). `cargo bench --bench pipeline`
//! (~1 min).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kbatch_core::batcher::adaptive::AdaptiveParams;
use kbatch_core::batcher::dedup::DedupParams;
use kbatch_core::batcher::{run_batcher, BatchPolicy, BatcherParts};
use kbatch_core::config::{Config, Framing};
use kbatch_core::inference::{load_backend, spawn_workers, Backend, LoadSpec, WorkerOutputs};
use kbatch_core::kafka::{Admission, Decision, RecordParts};
use kbatch_core::model::{BatchTensor, ServedModel};
use kbatch_core::pipeline::{now_ms, Admitted, Origin, Outcome};
use kbatch_core::registry::{default_model_file, Routes, RoutingTable};
use kbatch_core::telemetry::Telemetry;
use kbatch_core::tensor::TensorData;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Request, WireCodec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

/// Requests per measured round.
const N: usize = 4096;
/// Values per request of the bundled default model (64 time steps x 16 features).
const ROW: usize = 64 * 16;
const SEED: u64 = 0x6b62_6174_6368;

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.model_registry.path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    cfg.model.intra_op_threads = 1;
    // `KBATCH_BENCH_DEVICE=cuda` (or `auto`) runs the same benchmark on the GPU.
    if let Ok(device) = std::env::var("KBATCH_BENCH_DEVICE") {
        cfg.model.device = serde_yaml::from_str(&device)
            .unwrap_or_else(|e| panic!("KBATCH_BENCH_DEVICE={device}: {e}"));
    }
    cfg
}

fn backend(cfg: &Config) -> Box<dyn Backend> {
    let (id, path) = default_model_file(cfg).expect("the bundled registry");
    load_backend(&LoadSpec::new(&cfg.model, id, path)).unwrap_or_else(|e| {
        panic!("cannot build backend ({e}); run scripts/install-onnxruntime.sh first")
    })
}

fn rows(n: usize, row: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..n * row).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `N` encoded request records over 64 different inputs.
fn records(cfg: &Config, row: usize) -> Vec<Vec<u8>> {
    let codec = WireCodec::new(&cfg.wire);
    let data = rows(64, row);
    (0..N)
        .map(|i| {
            let req = Request {
                request_id: format!("bench-{i}"),
                created_at_ms: now_ms(),
                deadline_ms: None,
                timeout_ms: Some(60_000),
                model_name: None,
                model_version: None,
                priority: None,
                reply_topic: None,
                client_id: Some("bench".into()),
                inputs: Inputs::v1(
                    vec![64, 16],
                    data[(i % 64) * row..(i % 64 + 1) * row].to_vec(),
                ),
            };
            let mut buf = Vec::new();
            codec.encode_request(&req, Framing::Confluent, &mut buf);
            buf
        })
        .collect()
}

fn raw(c: &mut Criterion) {
    let cfg = config();
    let mut backend = backend(&cfg);
    let row_shape = vec![64, 16];
    let row: usize = row_shape.iter().product();
    let input = rows(N, row);
    let mut out = Vec::new();
    let mut group = c.benchmark_group("pipeline");
    group
        .throughput(Throughput::Elements(N as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for batch in [8usize, 16, 32, 64] {
        // The batches as the workers hand them over: built before the clock runs.
        let batches: Vec<[BatchTensor; 1]> = input
            .chunks(batch * row)
            .map(|chunk| {
                [BatchTensor {
                    row_shape: row_shape.clone(),
                    data: TensorData::F32(chunk.to_vec()),
                }]
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("raw", batch), &batch, |b, _| {
            b.iter(|| {
                for inputs in &batches {
                    let rows = inputs[0].data.len() / row;
                    backend
                        .infer(black_box(inputs), rows, &mut out)
                        .expect("inference");
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// A running pipeline: tier senders in, a count of encoded replies out.
struct Pipeline {
    admission: Admission,
    tiers: Vec<mpsc::Sender<Admitted>>,
    replies: std::sync::mpsc::Receiver<usize>,
    topics: [String; 4],
}

fn start(rt: &tokio::runtime::Runtime, cfg: &Config) -> Pipeline {
    let model = Arc::new(ServedModel::new(vec![backend(cfg)], Default::default()).expect("model"));
    let telemetry = Telemetry::new(cfg).expect("telemetry");
    let policy = BatchPolicy::from_config(cfg);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| mpsc::channel::<Admitted>(policy.tier_capacity))
        .unzip();
    let (otx, mut orx) = mpsc::channel::<Outcome>(4 * 256);
    let (ftx, frx) = mpsc::channel(16);
    let _guard = rt.enter();
    let outputs = WorkerOutputs {
        outcomes: otx.clone(),
        feedback: ftx,
    };
    let alive = vec![telemetry.health.register("inference-0")];
    let (pool, _workers) = spawn_workers(alive, &outputs, None).expect("workers");
    drop(outputs);
    rt.spawn(run_batcher(BatcherParts {
        policy,
        adaptive: AdaptiveParams::from_config(cfg),
        dedup: DedupParams::from_config(cfg),
        tiers: rxs.try_into().unwrap_or_else(|_| unreachable!()),
        pool,
        outcomes: otx,
        feedback: frx,
        utilization: tokio::sync::watch::channel(Default::default()).1,
        telemetry,
        config: tokio::sync::watch::channel(Arc::new(cfg.clone())).1,
    }));
    // The replier's encoding, up to the bytes it would hand to librdkafka.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let codec = WireCodec::new(&cfg.wire);
    rt.spawn(async move {
        let mut buf = Vec::with_capacity(8 * 1024);
        let mut n = 0usize;
        while let Some(o) = orx.recv().await {
            if let Outcome::Reply { reply, .. } = &o {
                buf.clear();
                codec.encode_reply(reply, &mut buf);
                black_box(&buf);
            }
            n += 1;
            if n.is_multiple_of(N) && done_tx.send(n).is_err() {
                break;
            }
        }
    });
    Pipeline {
        admission: Admission::new(cfg, Routes::fixed(RoutingTable::single(model))),
        tiers: txs,
        replies: done_rx,
        topics: Tier::ALL.map(|t| cfg.kafka.topics.topic(t).to_owned()),
    }
}

impl Pipeline {
    /// Admits every record on this thread (as the consumer thread does) and waits for all replies.
    fn round(&self, records: &[Vec<u8>], offset: i64) {
        for (i, value) in records.iter().enumerate() {
            let tier = Tier::ALL[i % 4];
            let rec = RecordParts {
                topic: &self.topics[tier.index()],
                partition: 0,
                offset: offset + i as i64,
                key: None,
                value: Some(value),
                headers: &[],
                timestamp_ms: Some(now_ms()),
            };
            let origin = Origin {
                topic_tier: tier,
                partition: 0,
                offset: offset + i as i64,
                epoch: 1,
            };
            match self
                .admission
                .decide(&rec, origin, tokio::time::Instant::now(), now_ms())
            {
                Decision::Admit(a) => self.tiers[a.tier.index()]
                    .blocking_send(a)
                    .expect("batcher running"),
                other => panic!("every bench record is valid: {other:?}"),
            }
        }
        self.replies.recv().expect("replies");
    }
}

fn serve(c: &mut Criterion) {
    let cfg = config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let pipeline = start(&rt, &cfg);
    let row = ROW;
    let records = records(&cfg, row);
    let mut group = c.benchmark_group("pipeline");
    group
        .throughput(Throughput::Elements(N as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let mut offset = 0i64;
    group.bench_function("serve/defaults", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                pipeline.round(&records, offset);
                offset += N as i64;
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, raw, serve);
criterion_main!(benches);
