//! The worker thread with a stand-in model: outcomes per request, poison isolation, feedback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::config::Device;
use crate::model::{ModelId, ServedModel};
use crate::pipeline::{fixtures, FlushReason};
use crate::telemetry::Health;
use crate::tier::Tier;
use crate::wire::Status;

/// Output of a row is `[2x]` for input `[x]`; a row holding a negative value fails its batch.
struct Doubler(ModelInfo);

impl Backend for Doubler {
    fn infer(&mut self, input: &[f32], n: usize, out: &mut Vec<f32>) -> Result<(), InferenceError> {
        self.0.check_input(input, n)?;
        if input.iter().any(|&x| x < 0.0) {
            return Err(InferenceError::Run("negative input".into()));
        }
        out.clear();
        out.extend(input.iter().map(|x| 2.0 * x));
        Ok(())
    }
    fn info(&self) -> &ModelInfo {
        &self.0
    }
}

fn doubler() -> Arc<ServedModel> {
    let backend: Box<dyn Backend> = Box::new(Doubler(ModelInfo {
        id: ModelId::new("double", "1"),
        input_name: "x".into(),
        output_name: "y".into(),
        input_shape: vec![1],
        output_size: 1,
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }));
    Arc::new(ServedModel::new(vec![backend], Default::default()).expect("one session"))
}

fn batch_of(model: &Arc<ServedModel>, values: &[f32]) -> Batch {
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
            a.request.data = vec![x];
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_request_fails_alone_and_its_batch_mates_are_answered() {
    let (otx, mut orx) = mpsc::channel(64);
    let (ftx, mut frx) = mpsc::channel(4);
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    let policy = RetryPolicy {
        max_retries: 1,
        retry_delay: Duration::from_millis(1),
    };
    let outputs = WorkerOutputs {
        outcomes: otx,
        feedback: ftx,
    };
    let alive = vec![health.register("inference-0")];
    let (pool, handles) = spawn_workers(alive, &outputs, policy).expect("spawn");
    drop(outputs);
    let values = [1.0, 2.0, 3.0, -1.0, 5.0, 6.0, 7.0, 8.0];
    pool.batches
        .send(batch_of(&doubler(), &values))
        .await
        .expect("send");
    let done = frx.recv().await.expect("feedback");
    assert_eq!(done.size, 8);
    assert!(!done.ok, "the batch as formed failed");
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..8 {
        let (reply, poisoned) = match orx.recv().await {
            Some(Outcome::Reply { reply, .. }) => (reply, None),
            Some(Outcome::Poison { reply, request, .. }) => (reply, Some(request)),
            other => panic!("a reply per request, got {other:?}"),
        };
        let i: usize = reply.request_id[1..].parse().expect("id");
        if values[i] < 0.0 {
            assert_eq!(reply.status, Status::ModelError);
            let request = poisoned.expect("the poison request goes to the dead letters too");
            assert_eq!(request.data, vec![values[i]], "the request itself is kept");
            assert!(reply
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("negative input"));
        } else {
            assert!(poisoned.is_none(), "only the poison request is isolated");
            assert_eq!(reply.status, Status::Ok, "{:?}", reply.error);
            assert_eq!(reply.outputs, vec![2.0 * values[i]]);
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
