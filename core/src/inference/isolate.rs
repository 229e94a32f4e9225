//! Poison isolation: when a batch fails, its requests are re-run in halves until every group
//! succeeds or a single request fails on its own `1 + max_retries` times (with `retry_delay`
//! between its attempts). One bad input then fails only itself, not the batch it happened to
//! share, and a transient failure (a hiccup, a batch too large for the device) heals.
//!
//! Invariants: every request of the failed batch ends with exactly one result (its output row or
//! the error that failed it alone); no group is run empty; the number of model calls is bounded
//! by `2n - 1 + n * max_retries` for a batch of `n`, and a panic in the model counts as a failure
//! instead of ending the worker thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::InferenceError;

/// How often, and how far apart, a request that fails alone is retried
/// (`batch_processing.max_retries`, `batch_processing.retry_delay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts of a request failing alone, beyond its first.
    pub max_retries: u32,
    pub retry_delay: Duration,
}

/// Runs the rows at the given indices of the batch, filling the output buffer.
pub type RunRows<'a> = dyn FnMut(&[usize], &mut Vec<f32>) -> Result<(), InferenceError> + 'a;

/// What the re-runs found.
#[derive(Debug)]
pub struct Isolation {
    /// Per request of the batch: its output row, or why it failed alone.
    pub rows: Vec<Result<Vec<f32>, InferenceError>>,
    /// Model calls made (the first, failed, call not included).
    pub calls: u32,
}

/// Runs `rows` of the batch (indices into it) through `run`, which fills `out` with one output
/// row of `out_size` values per index. A panic inside `run` is a failure.
pub fn guarded(
    run: &mut RunRows<'_>,
    rows: &[usize],
    out: &mut Vec<f32>,
) -> Result<(), InferenceError> {
    match catch_unwind(AssertUnwindSafe(|| run(rows, out))) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(InferenceError::Run(format!("the model panicked: {what}")))
        }
    }
}

/// Re-runs a failed batch of `n` requests; `first` is the error of the whole-batch call.
/// `sleep` is how the caller waits `retry_delay` (the worker thread sleeps; tests record).
pub fn isolate(
    n: usize,
    out_size: usize,
    policy: RetryPolicy,
    first: InferenceError,
    run: &mut RunRows<'_>,
    sleep: &mut dyn FnMut(Duration),
) -> Isolation {
    let mut rows: Vec<Option<Result<Vec<f32>, InferenceError>>> = vec![None; n];
    let mut calls = 0;
    let mut out = Vec::new();
    // (indices, attempts already made by this group as a whole, last error)
    let mut work: Vec<(Vec<usize>, u32, InferenceError)> = vec![((0..n).collect(), 1, first)];
    while let Some((group, attempts, err)) = work.pop() {
        if group.len() > 1 {
            // Halving is not a retry of the same input: no delay, no attempt counted.
            let (a, b) = group.split_at(group.len() / 2);
            for half in [b, a] {
                calls += 1;
                match guarded(run, half, &mut out) {
                    Ok(()) => fill(&mut rows, half, &out, out_size),
                    Err(e) => work.push((half.to_vec(), 1, e)),
                }
            }
            continue;
        }
        if attempts > policy.max_retries {
            rows[group[0]] = Some(Err(err));
            continue;
        }
        sleep(policy.retry_delay);
        calls += 1;
        match guarded(run, &group, &mut out) {
            Ok(()) => fill(&mut rows, &group, &out, out_size),
            Err(e) => work.push((group, attempts + 1, e)),
        }
    }
    Isolation {
        rows: rows
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(InferenceError::Run("not run".into()))))
            .collect(),
        calls,
    }
}

fn fill(
    rows: &mut [Option<Result<Vec<f32>, InferenceError>>],
    group: &[usize],
    out: &[f32],
    out_size: usize,
) {
    for (k, &i) in group.iter().enumerate() {
        let row = out.get(k * out_size..(k + 1) * out_size);
        rows[i] = Some(match row {
            Some(r) => Ok(r.to_vec()),
            None => Err(InferenceError::OutputShape(format!(
                "{} values for {} rows of {out_size}",
                out.len(),
                group.len()
            ))),
        });
    }
}

#[cfg(test)]
#[path = "isolate_tests.rs"]
mod tests;
