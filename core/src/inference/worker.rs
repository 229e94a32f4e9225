//! Inference workers: dedicated OS threads that take batches from the batcher, run each on a
//! session of the model version it was routed to (borrowed from `ServedModel` for the batch), and
//! turn every request of a batch into one outcome. The threads are the inference thread budget
//! every model shares; which model runs next is the batcher's choice.
//!
//! Invariants: a version holds one session per worker, so a worker with a batch always finds one; a batch is never empty when it reaches `Backend::infer` (the batcher never forms
//! one and `check_input` rejects one); a failed batch fails only its own requests (each one
//! that fails alone gets MODEL_ERROR and a dead-letter copy), the worker keeps serving; the batch's permit is released only after its outcomes
//! are handed on, so "worker idle" really means idle; every batch is reported back to the batcher
//! (`BatchDone`) before its permit is released, so the batcher never forms the next batch on a
//! stale latency or misses a deduplicated result.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, Semaphore};

use super::isolate::{guarded, isolate, RetryPolicy};
use super::{Backend, InferenceError, ModelInfo};
use crate::pipeline::{
    micros, now_ms, Admitted, Batch, BatchDone, LeaderResult, Outcome, WorkerPool,
};
use crate::telemetry::Alive;
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
pub fn spawn_workers(
    alive: Vec<Alive>,
    outputs: &WorkerOutputs,
    policy: RetryPolicy,
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
            policy,
            report: WorkerReport::default(),
            input: Vec::new(),
            output: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("kbatch-infer-{i}"))
            .spawn(move || worker.run(&rx))?;
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
    policy: RetryPolicy,
    report: WorkerReport,
    /// The batch's rows back to back (reused across batches).
    input: Vec<f32>,
    /// The model's outputs for the batch (reused across batches).
    output: Vec<f32>,
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
        let rows = self.infer(session.as_mut(), &batch.requests);
        self.alive.busy(false);
        let inference_us = micros(started.elapsed());
        self.report.batches += 1;
        self.report.requests += batch.requests.len() as u64;
        self.report.inference_us += inference_us as u64;
        let ran = Ran {
            rows: &rows,
            output: &self.output,
            started,
            inference_us,
        };
        let done = hand_on(&mut batch, session.info(), &ran, &self.outputs.outcomes);
        model.put_back(session);
        // The batcher stops reading only after the last worker is gone; an error here means it
        // ended early (a failed stage), and the outcomes above are already on their way.
        if self.outputs.feedback.blocking_send(done).is_err() {
            tracing::debug!("batcher is gone; batch feedback dropped");
        }
        drop(permit);
    }

    /// Runs `requests` as one batch; if that fails, re-runs them in parts to find the ones that
    /// fail alone (after their retries).
    fn infer(&mut self, backend: &mut dyn Backend, requests: &[Admitted]) -> Rows {
        let input = &mut self.input;
        let first = guarded(
            &mut |_, out| run_batch(backend, requests, input, out),
            &[],
            &mut self.output,
        );
        let error = match first {
            Ok(()) => return Rows::Batch,
            Err(error) => error,
        };
        self.report.failed_batches += 1;
        tracing::warn!(error = %error, size = requests.len(), "batch failed; re-running it in parts");
        let out_size = backend.info().output_size;
        let isolated = isolate(
            requests.len(),
            out_size,
            self.policy,
            error,
            &mut |rows, out| run_rows(backend, requests, rows, input, out),
            &mut std::thread::sleep,
        );
        self.report.retry_calls += u64::from(isolated.calls);
        self.report.isolated += isolated.rows.iter().filter(|r| r.is_err()).count() as u64;
        Rows::Each(isolated.rows)
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

/// How the requests of a batch turned out.
enum Rows {
    /// The whole batch ran: request `i`'s output is row `i` of the output buffer.
    Batch,
    /// The batch failed and was re-run in parts: each request's own result.
    Each(Vec<Result<Vec<f32>, InferenceError>>),
}

/// Runs the requests at `rows` (indices into `requests`) as one batch.
fn run_rows(
    backend: &mut dyn Backend,
    requests: &[Admitted],
    rows: &[usize],
    input: &mut Vec<f32>,
    output: &mut Vec<f32>,
) -> Result<(), InferenceError> {
    input.clear();
    for &i in rows {
        input.extend_from_slice(&requests[i].request.data);
    }
    backend.infer(input, rows.len(), output)
}

/// Copies the batch's rows into one contiguous input buffer (reused across batches) and runs it.
fn run_batch(
    backend: &mut dyn Backend,
    requests: &[Admitted],
    input: &mut Vec<f32>,
    output: &mut Vec<f32>,
) -> Result<(), InferenceError> {
    input.clear();
    for a in requests {
        input.extend_from_slice(&a.request.data);
    }
    backend.infer(input, requests.len(), output)
}

/// A batch that ran: how its rows turned out, when it started and how long the model took.
struct Ran<'a> {
    rows: &'a Rows,
    /// The model's outputs, row after row (meaningful for `Rows::Batch`).
    output: &'a [f32],
    started: tokio::time::Instant,
    inference_us: i64,
}

/// Turns every request of the finished `batch` into its outcome and sends it on; returns what
/// the batcher is told about the batch.
fn hand_on(
    batch: &mut Batch,
    info: &ModelInfo,
    ran: &Ran<'_>,
    outcomes: &mpsc::Sender<Outcome>,
) -> BatchDone {
    let size = batch.requests.len();
    let mut done = BatchDone {
        model: batch.model.clone(),
        size,
        inference: std::time::Duration::from_micros(ran.inference_us.max(0) as u64),
        ok: matches!(ran.rows, Rows::Batch),
        results: Vec::new(),
    };
    for (i, admitted) in batch.requests.drain(..).enumerate() {
        let result = match ran.rows {
            Rows::Batch => Ok(&ran.output[i * info.output_size..(i + 1) * info.output_size]),
            Rows::Each(each) => each[i].as_ref().map(Vec::as_slice),
        };
        let outcome = match result {
            Ok(row) => {
                if let Some(key) = admitted.dedup_key {
                    done.results.push(LeaderResult {
                        key,
                        outputs: Some(row.into()),
                    });
                }
                let timings = Timings {
                    queue_wait_us: micros(
                        ran.started.saturating_duration_since(admitted.admitted_at),
                    ),
                    batch_size: size as i32,
                    inference_us: ran.inference_us,
                    end_to_end_us: 0,
                };
                Outcome::ok(admitted, row.to_vec(), timings, now_ms())
            }
            Err(error) => {
                if let Some(key) = admitted.dedup_key {
                    done.results.push(LeaderResult { key, outputs: None });
                }
                let run = BatchRun {
                    size: size as i32,
                    inference_us: ran.inference_us,
                };
                model_error(admitted, error, run)
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
