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
pub use crate::pipeline::RetryPolicy;

/// Runs the rows at the given indices of the batch; on success returns one result per index,
/// in the same order (what a row's result is, the caller decides: its output tensors).
pub type RunRows<'a, R> = dyn FnMut(&[usize]) -> Result<Vec<R>, InferenceError> + 'a;

/// What the re-runs found.
#[derive(Debug)]
pub struct Isolation<R> {
    /// Per request of the batch: its result, or why it failed alone.
    pub rows: Vec<Result<R, InferenceError>>,
    /// Model calls made (the first, failed, call not included).
    pub calls: u32,
}

/// Runs `rows` of the batch (indices into it) through `run`. A panic inside `run`, or a result
/// count that does not match the rows, is a failure.
pub fn guarded<R>(run: &mut RunRows<'_, R>, rows: &[usize]) -> Result<Vec<R>, InferenceError> {
    match catch_unwind(AssertUnwindSafe(|| run(rows))) {
        Ok(Ok(results)) if results.len() == rows.len() => Ok(results),
        Ok(Ok(results)) => Err(InferenceError::OutputShape(format!(
            "{} results for {} rows",
            results.len(),
            rows.len()
        ))),
        Ok(Err(e)) => Err(e),
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
pub fn isolate<R>(
    n: usize,
    policy: RetryPolicy,
    first: InferenceError,
    run: &mut RunRows<'_, R>,
    sleep: &mut dyn FnMut(Duration),
) -> Isolation<R> {
    let mut rows: Vec<Option<Result<R, InferenceError>>> = (0..n).map(|_| None).collect();
    let mut calls = 0;
    // (indices, attempts already made by this group as a whole, last error)
    let mut work: Vec<(Vec<usize>, u32, InferenceError)> = vec![((0..n).collect(), 1, first)];
    while let Some((group, attempts, err)) = work.pop() {
        if group.len() > 1 {
            // Halving is not a retry of the same input: no delay, no attempt counted.
            let (a, b) = group.split_at(group.len() / 2);
            for half in [b, a] {
                calls += 1;
                match guarded(run, half) {
                    Ok(results) => fill(&mut rows, half, results),
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
        match guarded(run, &group) {
            Ok(results) => fill(&mut rows, &group, results),
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

fn fill<R>(rows: &mut [Option<Result<R, InferenceError>>], group: &[usize], results: Vec<R>) {
    for (&i, r) in group.iter().zip(results) {
        rows[i] = Some(Ok(r));
    }
}

#[cfg(test)]
#[path = "isolate_tests.rs"]
mod tests;
