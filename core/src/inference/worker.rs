//! Inference workers: dedicated OS threads that take batches from the batcher, run each on a
//! session of the model version it was routed to (borrowed from `ServedModel` for the batch), and
//! turn every request of a batch into one outcome. The threads are the inference thread budget
//! every model shares; which model runs next is the batcher's choice.
//!
//! Invariants: a version holds one session per worker, so a worker with a batch always finds one;
//! a batch is never empty when it reaches `Backend::infer` (the batcher never forms one and
//! `check_input` rejects one); rows of one model call share their input shapes (a model with
//! dynamic dimensions runs a batch as one call per shape); a failed batch fails only its own
//! requests (each one
//! that fails alone gets MODEL_ERROR and a dead-letter copy), the worker keeps serving; the batch's permit is released only after its outcomes
//! are handed on, so "worker idle" really means idle; every batch is reported back to the batcher
//! (`BatchDone`) before its permit is released, so the batcher never forms the next batch on a
//! stale latency or misses a deduplicated result.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, Semaphore};

use super::isolate::{guarded, isolate, RetryPolicy};
use super::{Backend, InferenceError};
use crate::model::{stack_rows, BatchTensor};
use crate::pipeline::{
    micros, now_ms, Admitted, Batch, BatchDone, LeaderResult, Outcome, WorkerPool,
};
use crate::telemetry::Alive;
use crate::tensor::Tensor;
use crate::wire::Timings;

/// What one worker did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub batches: u64,
    pub requests: u64,
    /// Batches whose first run failed (and were re-run in parts).
    pub failed_batches: u64,
    /// Requests that failed on their own after their retries (MODEL_ERROR).
    pub isolated: u64,
    /// Model calls made re-running failed batches.
    pub retry_calls: u64,
    pub inference_us: u64,
}

/// Where a worker's results go.
pub struct WorkerOutputs {
    /// Every request's outcome, to the replier.
    pub outcomes: mpsc::Sender<Outcome>,
    /// Every finished batch, to the batcher.
    pub feedback: mpsc::Sender<BatchDone>,
}

/// Starts one thread per liveness handle, the `i`th reporting through `alive[i]` (the caller
/// registers them, with every other stage). Returns the pool the batcher feeds and the threads'
/// handles; the threads end when the pool's last sender is dropped and the queue is empty.
/// With `cores`, each thread pins itself to them first (`resource_management.cpu_affinity_enabled`).
pub fn spawn_workers(
    alive: Vec<Alive>,
    outputs: &WorkerOutputs,
    cores: Option<&[usize]>,
) -> std::io::Result<(WorkerPool, Vec<JoinHandle<WorkerReport>>)> {
    let n = alive.len();
    // Capacity n: permits already bound what is in flight; the channel never holds more.
    let (tx, rx) = mpsc::channel::<Batch>(n.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::with_capacity(n);
    for (i, alive) in alive.into_iter().enumerate() {
        let rx = Arc::clone(&rx);
        let worker = Worker {
            outputs: WorkerOutputs {
                outcomes: outputs.outcomes.clone(),
                feedback: outputs.feedback.clone(),
            },
            alive,
            report: WorkerReport::default(),
            input_bufs: Vec::new(),
            output_bufs: Vec::new(),
        };
        let cores = cores.map(<[usize]>::to_vec);
        let handle = std::thread::Builder::new()
            .name(format!("kbatch-infer-{i}"))
            .spawn(move || {
                if let Some(cores) = cores {
                    if let Err(e) = crate::affinity::pin_current_thread(&cores) {
                        tracing::warn!(error = %e, "inference thread left unpinned");
                    }
                }
                worker.run(&rx)
            })?;
        handles.push(handle);
    }
    Ok((
        WorkerPool {
            idle: Arc::new(Semaphore::new(n)),
            batches: tx,
        },
        handles,
    ))
}

/// One inference thread: where its results go, and the buffers it reuses.
struct Worker {
    outputs: WorkerOutputs,
    alive: Alive,
    report: WorkerReport,
    /// The batch's inputs, rows back to back (buffers reused across batches).
    input_bufs: Vec<BatchTensor>,
    /// The model's outputs for the batch (buffers reused across batches).
    output_bufs: Vec<BatchTensor>,
}

/// One request's outputs (every output of the model, named), or the error that failed it alone.
type RowOutputs = Result<Vec<Tensor>, InferenceError>;

/// What one request of a batch got, and the number of rows of the model call it ran in.
struct RowResult {
    result: RowOutputs,
    ran_with: usize,
}

/// How the requests of one model call turned out.
struct CallOutcome {
    /// Per request of the call, in its order.
    rows: Vec<RowOutputs>,
    /// The call succeeded the first time (no re-runs in parts).
    first_try: bool,
}

impl Worker {
    fn run(mut self, rx: &Mutex<mpsc::Receiver<Batch>>) -> WorkerReport {
        loop {
            // Holding the lock while blocked is fine: the other idle workers would only wait
            // for the same next batch.
            let batch = match rx.lock() {
                Ok(mut guard) => guard.blocking_recv(),
                Err(poisoned) => poisoned.into_inner().blocking_recv(),
            };
            let Some(batch) = batch else { break };
            self.serve(batch);
        }
        self.report
    }

    /// Runs one batch, hands on its outcomes and tells the batcher, then frees the worker.
    fn serve(&mut self, mut batch: Batch) {
        let permit = batch.permit.take();
        let span = tracing::info_span!(
            "batch",
            seq = self.report.batches,
            size = batch.requests.len(),
            flush_reason = batch.flush_reason.as_str()
        );
        let _entered = span.enter();
        log_links(&batch.requests);
        let started = tokio::time::Instant::now();
        let model = batch.model.clone();
        let Some(mut session) = model.take_session() else {
            // Only a model stand-in without sessions gets here (the batcher never routes to
            // one): its requests fail rather than wait for a session that never comes.
            self.no_session(batch);
            drop(permit);
            return;
        };
        self.alive.busy(true);
        let dynamic = session.info().signature.has_dynamic_inputs();
        let mut results: Vec<Option<RowResult>> = batch.requests.iter().map(|_| None).collect();
        let mut ok = true;
        for group in shape_groups(&batch.requests, dynamic) {
            let call = self.infer(session.as_mut(), &batch.requests, &group, batch.retry);
            ok &= call.first_try;
            for (&i, result) in group.iter().zip(call.rows) {
                let ran_with = group.len();
                results[i] = Some(RowResult { result, ran_with });
            }
        }
        self.alive.busy(false);
        let inference_us = micros(started.elapsed());
        self.report.batches += 1;
        self.report.requests += batch.requests.len() as u64;
        self.report.inference_us += inference_us as u64;
        let ran = Ran {
            results,
            ok,
            started,
            inference_us,
        };
        let done = hand_on(&mut batch, ran, &self.outputs.outcomes);
        model.put_back(session);
        // The batcher stops reading only after the last worker is gone; an error here means it
        // ended early (a failed stage), and the outcomes above are already on their way.
        if self.outputs.feedback.blocking_send(done).is_err() {
            tracing::debug!("batcher is gone; batch feedback dropped");
        }
        drop(permit);
    }

    /// Runs the requests at `group` (indices into `requests`, all of one input shape) as one
    /// model call; if it fails, re-runs them in parts to find the ones that fail alone (after
    /// their retries).
    fn infer(
        &mut self,
        backend: &mut dyn Backend,
        requests: &[Admitted],
        group: &[usize],
        retry: RetryPolicy,
    ) -> CallOutcome {
        let (inputs, outputs) = (&mut self.input_bufs, &mut self.output_bufs);
        let mut run = |rows: &[usize]| {
            let picked = rows
                .iter()
                .map(|&r| requests[group[r]].request.inputs.tensors());
            run_rows(backend, picked, inputs, outputs)
        };
        let all: Vec<usize> = (0..group.len()).collect();
        let error = match guarded(&mut run, &all) {
            Ok(rows) => {
                return CallOutcome {
                    rows: rows.into_iter().map(Ok).collect(),
                    first_try: true,
                }
            }
            Err(error) => error,
        };
        self.report.failed_batches += 1;
        tracing::warn!(error = %error, size = group.len(), "batch failed; re-running it in parts");
        let isolated = isolate(group.len(), retry, error, &mut run, &mut std::thread::sleep);
        self.report.retry_calls += u64::from(isolated.calls);
        self.report.isolated += isolated.rows.iter().filter(|r| r.is_err()).count() as u64;
        CallOutcome {
            rows: isolated.rows,
            first_try: false,
        }
    }

    /// Answers every request of a batch whose model has no session with MODEL_ERROR.
    fn no_session(&mut self, mut batch: Batch) {
        let error =
            InferenceError::Run(format!("model {} has no loaded session", batch.model.id()));
        let run = BatchRun {
            size: batch.requests.len() as i32,
            inference_us: 0,
        };
        let mut done = BatchDone {
            model: batch.model.clone(),
            size: batch.requests.len(),
            inference: std::time::Duration::ZERO,
            ok: false,
            results: Vec::new(),
        };
        for a in batch.requests.drain(..) {
            if let Some(key) = a.dedup_key {
                done.results.push(LeaderResult { key, outputs: None });
            }
            let run = BatchRun { ..run };
            if self
                .outputs
                .outcomes
                .blocking_send(model_error(a, &error, run))
                .is_err()
            {
                tracing::error!("replier is gone; an outcome was not sent");
            }
        }
        if self.outputs.feedback.blocking_send(done).is_err() {
            tracing::debug!("batcher is gone; batch feedback dropped");
        }
    }
}

/// The batch span's links to its requests' spans (W3C trace:span pairs), at debug level: one
/// line per batch, built only when someone reads it.
fn log_links(requests: &[Admitted]) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ids: Vec<&str> = requests
        .iter()
        .map(|a| a.request.request_id.as_str())
        .collect();
    let links: Vec<String> = requests
        .iter()
        .filter_map(|a| a.reply_to.trace.map(|t| t.to_string()))
        .collect();
    tracing::debug!(requests = ?ids, links = ?links, "batch started");
}

/// Groups the requests of a batch by their input shapes (indices, in arrival order): one group
/// for a model whose inputs are all fixed, one per distinct shape when some are dynamic.
fn shape_groups(requests: &[Admitted], dynamic: bool) -> Vec<Vec<usize>> {
    if !dynamic {
        return vec![(0..requests.len()).collect()];
    }
    let shapes = |i: usize| {
        requests[i]
            .request
            .inputs
            .tensors()
            .iter()
            .map(|t| &t.shape)
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..requests.len() {
        match groups.iter_mut().find(|g| shapes(g[0]).eq(shapes(i))) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Stacks the given requests' tensors into the reused input buffers, runs them as one batch and
/// splits the outputs into each row's named tensors.
fn run_rows<'a>(
    backend: &mut dyn Backend,
    requests: impl Iterator<Item = &'a [Tensor]>,
    inputs: &mut Vec<BatchTensor>,
    outputs: &mut Vec<BatchTensor>,
) -> Result<Vec<Vec<Tensor>>, InferenceError> {
    let rows = stack_rows(requests, inputs);
    backend.infer(inputs, rows, outputs)?;
    let specs = &backend.info().signature.outputs;
    (0..rows)
        .map(|r| {
            outputs
                .iter()
                .zip(specs)
                .map(|(o, spec)| o.row(&spec.name, r))
                .collect::<Option<Vec<Tensor>>>()
                .ok_or_else(|| {
                    InferenceError::OutputShape(format!("an output has fewer than {rows} rows"))
                })
        })
        .collect()
}

/// A batch that ran: each request's result, whether every model call succeeded the first time,
/// when it started and how long the model took.
struct Ran {
    results: Vec<Option<RowResult>>,
    ok: bool,
    started: tokio::time::Instant,
    inference_us: i64,
}

/// Turns every request of the finished `batch` into its outcome and sends it on; returns what
/// the batcher is told about the batch.
fn hand_on(batch: &mut Batch, ran: Ran, outcomes: &mpsc::Sender<Outcome>) -> BatchDone {
    let size = batch.requests.len();
    let mut done = BatchDone {
        model: batch.model.clone(),
        size,
        inference: std::time::Duration::from_micros(ran.inference_us.max(0) as u64),
        ok: ran.ok,
        results: Vec::new(),
    };
    for (admitted, row) in batch.requests.drain(..).zip(ran.results) {
        let RowResult { result, ran_with } = row.unwrap_or_else(|| RowResult {
            result: Err(InferenceError::Run("not run".into())),
            ran_with: 0,
        });
        let outcome = match result {
            Ok(outputs) => {
                if let Some(key) = admitted.dedup_key {
                    done.results.push(LeaderResult {
                        key,
                        outputs: Some(outputs.as_slice().into()),
                    });
                }
                let timings = Timings {
                    queue_wait_us: micros(
                        ran.started.saturating_duration_since(admitted.admitted_at),
                    ),
                    batch_size: ran_with as i32,
                    inference_us: ran.inference_us,
                    end_to_end_us: 0,
                };
                Outcome::ok(admitted, outputs, timings, now_ms())
            }
            Err(error) => {
                if let Some(key) = admitted.dedup_key {
                    done.results.push(LeaderResult { key, outputs: None });
                }
                let run = BatchRun {
                    size: ran_with as i32,
                    inference_us: ran.inference_us,
                };
                model_error(admitted, &error, run)
            }
        };
        if outcomes.blocking_send(outcome).is_err() {
            tracing::error!("replier is gone; an outcome was not sent");
        }
    }
    done
}

/// The batch a failed request ran in, as its reply's timings report it.
#[derive(Clone, Copy)]
struct BatchRun {
    size: i32,
    inference_us: i64,
}

/// A request that failed on its own: MODEL_ERROR to the requester, its copy to the dead letters.
fn model_error(admitted: Admitted, error: &InferenceError, run: BatchRun) -> Outcome {
    let mut outcome = Outcome::poison(admitted, error.to_string(), now_ms());
    if let Outcome::Poison { reply, .. } = &mut outcome {
        reply.timings.batch_size = run.size;
        reply.timings.inference_us = run.inference_us;
    }
    outcome
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
