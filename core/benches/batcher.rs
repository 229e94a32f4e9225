//! The batcher alone, no model: cost per request of queueing and batch formation.
//! Issue 4's bound: ≤ 2 µs median per request at 100k requests/s.
//!
//! `state`: the pure state (push + next_batch), 4 tiers, half the requests with deadlines.
//! `task`: requests through the tier channels, the batcher task and a stand-in worker that
//! returns each batch at once (with its feedback), on one tokio thread — the whole per-request
//! path of the batcher, with deduplication off and on (distinct inputs). With deduplication on,
//! the keys are hashed in setup, as the consumer thread's admission does in the service.
//! `dedup_key`: that hash alone, per 1,024-float input (consumer-thread cost, not batcher's).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kbatch_core::batcher::adaptive::AdaptiveParams;
use kbatch_core::batcher::dedup::DedupParams;
use kbatch_core::batcher::{run_batcher, BatchPolicy, BatcherParts, State};
use kbatch_core::config::Config;
use kbatch_core::model::{ModelInfo, ServedModel, Signature};
use kbatch_core::pipeline::{
    dedup_key, Admitted, BatchDone, LeaderResult, ModelId, Origin, ReplyTo, WorkerPool,
};
use kbatch_core::tensor::{Tensor, TensorData};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Request};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

const N: usize = 10_000;

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.batch_processing.max_batch_size = 32;
    cfg.batch_processing.max_queue_size = 4 * N;
    cfg
}

/// The model every request is routed to (the bench's worker never runs it).
fn model() -> Arc<ServedModel> {
    Arc::new(ServedModel::unloaded(ModelInfo {
        id: ModelId::new("m", "1"),
        signature: Signature::float32("input", &[64, 16], "output", 3),
        device: kbatch_core::config::Device::Cpu,
        library_path: Default::default(),
    }))
}

fn requests(n: usize, now: Instant) -> Vec<Admitted> {
    let model = model();
    (0..n)
        .map(|i| {
            let tier = Tier::ALL[i % 4];
            Admitted {
                request: Request {
                    request_id: format!("r{i}"),
                    created_at_ms: 0,
                    deadline_ms: None,
                    timeout_ms: None,
                    model_name: None,
                    model_version: None,
                    priority: None,
                    reply_topic: None,
                    client_id: None,
                    inputs: Inputs::v1(vec![64, 16], vec![i as f32; 1024]),
                },
                tier,
                origin: Origin {
                    topic_tier: tier,
                    partition: 0,
                    offset: i as i64,
                    epoch: 1,
                },
                reply_to: ReplyTo {
                    topic: "replies".into(),
                    key: None,
                    correlation_id: None,
                    trace: None,
                },
                record_timestamp_ms: 0,
                admitted_at: now,
                deadline: (i % 2 == 0).then(|| now + Duration::from_secs(60 + i as u64 % 7)),
                dedup_key: None,
                model: model.clone(),
            }
        })
        .collect()
}

fn state(c: &mut Criterion) {
    let policy = BatchPolicy::from_config(&config());
    let mut group = c.benchmark_group("batcher");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("state/push+next_batch", |b| {
        b.iter_batched(
            || requests(N, Instant::now()),
            |reqs| {
                let mut s = State::new(policy.clone());
                let now = Instant::now();
                for a in reqs {
                    s.push(a);
                }
                while !s.is_empty() {
                    black_box(s.next_batch(now));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Sends `reqs` through a fresh batcher task and a stand-in worker; returns when all are batched.
async fn through_task(cfg: &Config, reqs: Vec<Admitted>) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel(1024)).unzip();
    let (btx, mut brx) = mpsc::channel::<kbatch_core::pipeline::Batch>(1);
    let (otx, mut orx) = mpsc::channel(1024);
    let (ftx, frx) = mpsc::channel(16);
    let parts = BatcherParts {
        policy: BatchPolicy::from_config(cfg),
        adaptive: AdaptiveParams::from_config(cfg),
        dedup: DedupParams::from_config(cfg),
        tiers: rxs.try_into().unwrap_or_else(|_| unreachable!()),
        pool: WorkerPool {
            idle: Arc::new(Semaphore::new(1)),
            batches: btx,
        },
        outcomes: otx,
        feedback: frx,
        utilization: tokio::sync::watch::channel(Default::default()).1,
        telemetry: kbatch_core::telemetry::Telemetry::new(cfg).expect("telemetry"),
        config: tokio::sync::watch::channel(Arc::new(cfg.clone())).1,
    };
    let task = tokio::spawn(run_batcher(parts));
    let worker = tokio::spawn(async move {
        let mut n = 0;
        while let Some(mut b) = brx.recv().await {
            n += b.requests.len();
            let outputs: Arc<[Tensor]> = vec![Tensor::new(
                "output",
                vec![3],
                TensorData::F32(vec![0.5; 3]),
            )]
            .into();
            let done = BatchDone {
                model: b.model.clone(),
                size: b.requests.len(),
                inference: Duration::from_micros(100),
                ok: true,
                results: b
                    .requests
                    .iter()
                    .filter_map(|a| {
                        a.dedup_key.map(|key| LeaderResult {
                            key,
                            outputs: Some(outputs.clone()),
                        })
                    })
                    .collect(),
            };
            b.permit.take();
            if ftx.send(done).await.is_err() {
                break;
            }
        }
        n
    });
    tokio::spawn(async move { while orx.recv().await.is_some() {} });
    let txs: Vec<mpsc::Sender<Admitted>> = txs;
    for a in reqs {
        let tx = &txs[a.tier.index()];
        if tx.send(a).await.is_err() {
            break;
        }
    }
    drop(txs);
    black_box(task.await.ok());
    black_box(worker.await.ok());
}

/// Keys every request as admission does when deduplication is on.
fn keyed(mut reqs: Vec<Admitted>, dedup: bool) -> Vec<Admitted> {
    if dedup {
        for a in &mut reqs {
            let inputs = a.request.inputs.tensors();
            a.dedup_key = Some(dedup_key(&ModelId::new("m", "1"), inputs));
        }
    }
    reqs
}

fn hashing(c: &mut Criterion) {
    let data: Vec<f32> = (0..1024).map(|i| i as f32 * 0.5).collect();
    let inputs = Inputs::v1(vec![64, 16], data);
    let mut group = c.benchmark_group("batcher");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dedup_key/1024_floats", |b| {
        let model = ModelId::new("m", "1");
        b.iter(|| dedup_key(black_box(&model), black_box(inputs.tensors())))
    });
    group.finish();
}

fn task(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("batcher");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for dedup in [false, true] {
        let mut cfg = config();
        cfg.deduplication.enable_deduplication = dedup;
        let name = if dedup {
            "task/dedup_on"
        } else {
            "task/dedup_off"
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || keyed(requests(N, Instant::now()), dedup),
                |reqs| rt.block_on(through_task(&cfg, reqs)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, state, task, hashing);
criterion_main!(benches);
