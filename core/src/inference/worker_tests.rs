//! The worker thread with a stand-in model: outcomes per request, poison isolation, feedback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::config::Device;
use crate::model::{ModelId, ModelInfo, ServedModel, Signature};
use crate::pipeline::{fixtures, FlushReason};
use crate::telemetry::Health;
use crate::tensor::{DType, Dim, Tensor, TensorData, TensorSpec};
use crate::tier::Tier;
use crate::wire::{Inputs, Outputs, Status};

/// Output of a row is `[2x]` for input `[x]`; a row holding a negative value fails its batch.
struct Doubler(ModelInfo);

impl Backend for Doubler {
    fn infer(
        &mut self,
        inputs: &[BatchTensor],
        n: usize,
        out: &mut Vec<BatchTensor>,
    ) -> Result<(), InferenceError> {
        self.0.check_input(inputs, n)?;
        let TensorData::F32(input) = &inputs[0].data else {
            unreachable!("check_input passed a float32 input")
        };
        if input.iter().any(|&x| x < 0.0) {
            return Err(InferenceError::Run("negative input".into()));
        }
        *out = vec![BatchTensor {
            row_shape: vec![1],
            data: TensorData::F32(input.iter().map(|x| 2.0 * x).collect()),
        }];
        Ok(())
    }
    fn info(&self) -> &ModelInfo {
        &self.0
    }
}

fn doubler() -> Arc<ServedModel> {
    let backend: Box<dyn Backend> = Box::new(Doubler(ModelInfo {
        id: ModelId::new("double", "1"),
        signature: Signature::float32("x", &[1], "y", 1),
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }));
    Arc::new(ServedModel::new(vec![backend], Default::default()).expect("one session"))
}

fn batch_of(model: &Arc<ServedModel>, values: &[f32], retry: RetryPolicy) -> Batch {
    let requests = values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut a = fixtures::admitted(
                &format!("r{i}"),
                (Tier::Normal, 0, i as i64),
                Tier::Normal,
                Instant::now(),
            );
            a.request.inputs = Inputs::v1(vec![1], vec![x]);
            a.model = model.clone();
            a
        })
        .collect();
    Batch {
        model: model.clone(),
        requests,
        flush_reason: FlushReason::Full,
        formed_at: Instant::now(),
        permit: None,
        retry,
    }
}

/// One inference worker thread and the channels its results arrive on.
struct Started {
    pool: crate::pipeline::WorkerPool,
    handles: Vec<std::thread::JoinHandle<WorkerReport>>,
    health: Arc<Health>,
    outcomes: mpsc::Receiver<Outcome>,
    feedback: mpsc::Receiver<BatchDone>,
}

fn start_one_worker() -> Started {
    let (otx, outcomes) = mpsc::channel(64);
    let (ftx, feedback) = mpsc::channel(4);
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    let outputs = WorkerOutputs {
        outcomes: otx,
        feedback: ftx,
    };
    let alive = vec![health.register("inference-0")];
    let (pool, handles) = spawn_workers(alive, &outputs, None).expect("spawn");
    Started {
        pool,
        handles,
        health,
        outcomes,
        feedback,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_request_fails_alone_and_its_batch_mates_are_answered() {
    let Started {
        pool,
        handles,
        health,
        mut outcomes,
        mut feedback,
    } = start_one_worker();
    let values = [1.0, 2.0, 3.0, -1.0, 5.0, 6.0, 7.0, 8.0];
    let retry = RetryPolicy {
        max_retries: 1,
        retry_delay: Duration::from_millis(1),
    };
    pool.batches
        .send(batch_of(&doubler(), &values, retry))
        .await
        .expect("send");
    let done = feedback.recv().await.expect("feedback");
    assert_eq!(done.size, 8);
    assert!(!done.ok, "the batch as formed failed");
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..8 {
        let (reply, poisoned) = match outcomes.recv().await {
            Some(Outcome::Reply { reply, .. }) => (reply, None),
            Some(Outcome::Poison { reply, request, .. }) => (reply, Some(request)),
            other => panic!("a reply per request, got {other:?}"),
        };
        let i: usize = reply.request_id[1..].parse().expect("id");
        if values[i] < 0.0 {
            assert_eq!(reply.status, Status::ModelError);
            let request = poisoned.expect("the poison request goes to the dead letters too");
            assert_eq!(
                request.inputs,
                Inputs::v1(vec![1], vec![values[i]]),
                "the request itself is kept"
            );
            assert!(reply
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("negative input"));
        } else {
            assert!(poisoned.is_none(), "only the poison request is isolated");
            assert_eq!(reply.status, Status::Ok, "{:?}", reply.error);
            assert_eq!(
                reply.outputs,
                Outputs::V1 {
                    output_shape: vec![1],
                    outputs: vec![2.0 * values[i]]
                }
            );
        }
        statuses.insert(i, reply.status);
    }
    assert_eq!(statuses.len(), 8, "each request answered once");
    assert!(
        health.liveness().is_ok(),
        "the worker thread survived the failure"
    );
    drop(pool);
    let report = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(report[0].failed_batches, 1);
    assert_eq!(report[0].isolated, 1);
    // Halving 8 → 4 → 2 → 1 (two calls per level), then one retry of the poison alone.
    assert_eq!(report[0].retry_calls, 2 * 3 + 1);
}

/// The retry policy travels with each batch, so a reloaded `max_retries` applies from the next
/// batch the same worker runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_is_retried_by_the_policy_it_was_formed_with() {
    let Started {
        pool,
        handles,
        mut outcomes,
        mut feedback,
        ..
    } = start_one_worker();
    for max_retries in [0, 3] {
        let retry = RetryPolicy {
            max_retries,
            retry_delay: Duration::ZERO,
        };
        pool.batches
            .send(batch_of(&doubler(), &[-1.0], retry))
            .await
            .expect("send");
        assert!(!feedback.recv().await.expect("feedback").ok);
        assert!(matches!(
            outcomes.recv().await,
            Some(Outcome::Poison { .. })
        ));
    }
    drop(pool);
    let report = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // A lone failing request: no halving, then its retries: 0 for the first batch, 3 for the
    // second.
    assert_eq!(report[0].failed_batches, 2);
    assert_eq!(report[0].retry_calls, 3);
}

/// `seq: float32[?, 1]` in; `sum: float32[1]` and `len: int64[1]` out. Counts its calls and
/// refuses a batch whose rows differ in length (as ONNX Runtime would: one tensor, one shape).
struct Summer {
    info: ModelInfo,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backend for Summer {
    fn infer(
        &mut self,
        inputs: &[BatchTensor],
        n: usize,
        out: &mut Vec<BatchTensor>,
    ) -> Result<(), InferenceError> {
        self.info.check_input(inputs, n)?;
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let TensorData::F32(values) = &inputs[0].data else {
            unreachable!("check_input passed a float32 input")
        };
        let len = inputs[0].row_len();
        *out = vec![
            BatchTensor {
                row_shape: vec![1],
                data: TensorData::F32(values.chunks(len).map(|r| r.iter().sum()).collect()),
            },
            BatchTensor {
                row_shape: vec![1],
                data: TensorData::I64(vec![len as i64; n]),
            },
        ];
        Ok(())
    }
    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_different_dynamic_shapes_run_as_one_call_per_shape_with_named_outputs() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let summer = Summer {
        info: ModelInfo {
            id: ModelId::new("sum", "1"),
            signature: Signature {
                inputs: vec![TensorSpec::new(
                    "seq",
                    DType::Float32,
                    vec![Dim::Dynamic, Dim::Fixed(1)],
                )],
                outputs: vec![
                    TensorSpec::fixed("sum", DType::Float32, &[1]),
                    TensorSpec::fixed("len", DType::Int64, &[1]),
                ],
            },
            device: Device::Cpu,
            library_path: PathBuf::new(),
        },
        calls: calls.clone(),
    };
    let model = Arc::new(
        ServedModel::new(
            vec![Box::new(summer) as Box<dyn Backend>],
            Default::default(),
        )
        .expect("one session"),
    );
    // Lengths 2, 3, 2, 1, 3: three shapes among five requests.
    let lengths = [2usize, 3, 2, 1, 3];
    let requests = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut a = fixtures::admitted(
                &format!("r{i}"),
                (Tier::Normal, 0, i as i64),
                Tier::Normal,
                Instant::now(),
            );
            let values: Vec<f32> = (0..len).map(|k| (i * 10 + k) as f32).collect();
            let seq = Tensor::new("seq", vec![len as i32, 1], TensorData::F32(values));
            a.request.inputs = Inputs::V2(vec![seq]);
            a.model = model.clone();
            a
        })
        .collect();
    let batch = Batch {
        model: model.clone(),
        requests,
        flush_reason: FlushReason::Full,
        formed_at: Instant::now(),
        permit: None,
        retry: RetryPolicy {
            max_retries: 0,
            retry_delay: Duration::ZERO,
        },
    };
    let Started {
        pool,
        mut outcomes,
        mut feedback,
        ..
    } = start_one_worker();
    pool.batches.send(batch).await.expect("send");
    let done = feedback.recv().await.expect("feedback");
    assert!(done.ok, "every shape ran at the first call");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "one call per shape"
    );
    for _ in 0..lengths.len() {
        let Some(Outcome::Reply { reply, .. }) = outcomes.recv().await else {
            panic!("a reply per request");
        };
        let i: usize = reply.request_id[1..].parse().expect("id");
        let len = lengths[i];
        let sum: f32 = (0..len).map(|k| (i * 10 + k) as f32).sum();
        let same_shape = lengths.iter().filter(|&&l| l == len).count() as i32;
        assert_eq!(reply.status, Status::Ok, "{:?}", reply.error);
        assert_eq!(reply.timings.batch_size, same_shape, "rows of its call");
        assert_eq!(
            reply.outputs,
            Outputs::V2(vec![
                Tensor::new("sum", vec![1], TensorData::F32(vec![sum])),
                Tensor::new("len", vec![1], TensorData::I64(vec![len as i64])),
            ])
        );
    }
}

/// The cores each thread of this process named `name` may run on, from /proc (other tests may
/// run workers of the same name at the same time).
fn cores_of_threads(name: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            comm.trim() == name
        })
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .collect()
}

#[test]
fn workers_given_cores_pin_themselves_to_them() {
    let last = *crate::affinity::allowed_cores().unwrap().last().unwrap();
    let (otx, _outcomes) = mpsc::channel(4);
    let (ftx, _feedback) = mpsc::channel(4);
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    let outputs = WorkerOutputs {
        outcomes: otx,
        feedback: ftx,
    };
    let alive = vec![health.register("inference-0")];
    let (pool, handles) = spawn_workers(alive, &outputs, Some(&[last])).expect("spawn");
    // The thread pins itself as it starts: wait for it (bounded).
    let pinned = (0..200).any(|_| {
        let found = cores_of_threads("kbatch-infer-0").contains(&last.to_string());
        if !found {
            std::thread::sleep(Duration::from_millis(5));
        }
        found
    });
    assert!(pinned, "a kbatch-infer-0 thread on core {last} alone");
    drop(pool);
    for h in handles {
        h.join().unwrap();
    }
}
