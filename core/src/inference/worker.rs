//! Inference workers: each owns one backend (one ONNX Runtime session) on a dedicated OS thread,
//! takes batches from the batcher, and turns every request of a batch into one outcome.
//!
//! Invariants: a batch is never empty when it reaches `Backend::infer` (the batcher never forms
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
use crate::batcher::WorkerPool;
use crate::pipeline::{micros, now_ms, Admitted, Batch, BatchDone, Outcome};
use crate::telemetry::{Alive, Health};
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

/// Starts one thread per backend. Returns the pool the batcher feeds and the threads' handles;
/// the threads end when the pool's last sender is dropped and the queue is empty.
pub fn spawn_workers(
    backends: Vec<Box<dyn Backend>>,
    outcomes: mpsc::Sender<Outcome>,
    feedback: mpsc::Sender<BatchDone>,
    (health, policy): (&Arc<Health>, RetryPolicy),
) -> std::io::Result<(WorkerPool, Vec<JoinHandle<WorkerReport>>)> {
    let n = backends.len();
    // Capacity n: permits already bound what is in flight; the channel never holds more.
    let (tx, rx) = mpsc::channel::<Batch>(n.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let mut handles = Vec::with_capacity(n);
    for (i, backend) in backends.into_iter().enumerate() {
        let rx = Arc::clone(&rx);
        let outcomes = outcomes.clone();
        let feedback = feedback.clone();
        let alive = health.register(format!("inference-{i}"));
        let handle = std::thread::Builder::new()
            .name(format!("kbatch-infer-{i}"))
            .spawn(move || worker_loop(backend, &rx, (&outcomes, &feedback), (&alive, policy)))?;
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

fn worker_loop(
    mut backend: Box<dyn Backend>,
    rx: &Mutex<mpsc::Receiver<Batch>>,
    (outcomes, feedback): (&mpsc::Sender<Outcome>, &mpsc::Sender<BatchDone>),
    (alive, policy): (&Alive, RetryPolicy),
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut input = Vec::new();
    let mut output = Vec::new();
    loop {
        // Holding the lock while blocked is fine: the other idle workers would only wait for
        // the same next batch.
        let batch = match rx.lock() {
            Ok(mut guard) => guard.blocking_recv(),
            Err(poisoned) => poisoned.into_inner().blocking_recv(),
        };
        let Some(mut batch) = batch else { break };
        let permit = batch.permit.take();
        let span = tracing::info_span!(
            "batch",
            seq = report.batches,
            size = batch.requests.len(),
            flush_reason = batch.flush_reason
        );
        let _entered = span.enter();
        log_links(&batch.requests);
        let started = tokio::time::Instant::now();
        alive.busy(true);
        let requests = &batch.requests;
        let first = guarded(
            &mut |_, out| run_batch(backend.as_mut(), requests, &mut input, out),
            &[],
            &mut output,
        );
        let rows = match first {
            Ok(()) => Rows::Batch,
            Err(e) => {
                report.failed_batches += 1;
                tracing::warn!(error = %e, size = requests.len(), "batch failed; re-running it in parts");
                let out_size = backend.info().output_size;
                let iso = isolate(
                    requests.len(),
                    out_size,
                    policy,
                    e,
                    &mut |rows, out| run_rows(backend.as_mut(), requests, rows, &mut input, out),
                    &mut std::thread::sleep,
                );
                report.retry_calls += u64::from(iso.calls);
                report.isolated += iso.rows.iter().filter(|r| r.is_err()).count() as u64;
                Rows::Each(iso.rows)
            }
        };
        alive.busy(false);
        let inference_us = micros(started.elapsed());
        report.batches += 1;
        report.requests += batch.requests.len() as u64;
        report.inference_us += inference_us as u64;
        let done = hand_on(
            &mut batch,
            backend.info(),
            (&rows, &output),
            (started, inference_us),
            outcomes,
        );
        // The batcher stops reading only after the last worker is gone; an error here means it
        // ended early (a failed stage), and the outcomes above are already on their way.
        if feedback.blocking_send(done).is_err() {
            tracing::debug!("batcher is gone; batch feedback dropped");
        }
        drop(permit);
    }
    report
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

/// Turns every request of the finished `batch` into its outcome and sends it on; returns what
/// the batcher is told about the batch. `run` is (when it started, its inference time in µs).
fn hand_on(
    batch: &mut Batch,
    info: &ModelInfo,
    (rows, output): (&Rows, &[f32]),
    run: (tokio::time::Instant, i64),
    outcomes: &mpsc::Sender<Outcome>,
) -> BatchDone {
    let (started, inference_us) = run;
    let size = batch.requests.len();
    let mut done = BatchDone {
        size,
        inference: std::time::Duration::from_micros(inference_us.max(0) as u64),
        ok: matches!(rows, Rows::Batch),
        results: Vec::new(),
    };
    for (i, a) in batch.requests.drain(..).enumerate() {
        let result = match rows {
            Rows::Batch => Ok(&output[i * info.output_size..(i + 1) * info.output_size]),
            Rows::Each(each) => each[i].as_ref().map(Vec::as_slice),
        };
        let outcome = match result {
            Ok(row) => {
                if let Some(key) = a.dedup_key {
                    done.results.push((key, Some(row.into())));
                }
                let timings = Timings {
                    queue_wait_us: micros(started.saturating_duration_since(a.admitted_at)),
                    batch_size: size as i32,
                    inference_us,
                    end_to_end_us: 0,
                };
                Outcome::ok(
                    a,
                    (&info.name, &info.version),
                    row.to_vec(),
                    timings,
                    now_ms(),
                )
            }
            Err(e) => {
                if let Some(key) = a.dedup_key {
                    done.results.push((key, None));
                }
                model_error(a, info, e, (size as i32, inference_us))
            }
        };
        if outcomes.blocking_send(outcome).is_err() {
            tracing::error!("replier is gone; an outcome was not sent");
        }
    }
    done
}

/// A request that failed on its own: MODEL_ERROR to the requester, its copy to the dead letters.
fn model_error(a: Admitted, info: &ModelInfo, e: &InferenceError, run: (i32, i64)) -> Outcome {
    let mut outcome = Outcome::poison(a, e.to_string(), (&info.name, &info.version), now_ms());
    if let Outcome::Poison { reply, .. } = &mut outcome {
        (reply.timings.batch_size, reply.timings.inference_us) = run;
    }
    outcome
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
