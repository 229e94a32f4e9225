//! The seam between the serving pipeline and a model runtime.
//!
//! Invariant: a backend only ever sees batches that passed `ModelInfo::check_input` (at least one
//! row, exactly `batch_size * input_len` values), and on success leaves exactly
//! `batch_size * output_size` values in the caller's output buffer, row `i` belonging to input
//! row `i`. Errors are `Clone` so a failed batch can answer every request that was in it.

use super::{InferenceError, ModelInfo};

/// A loaded model that runs batches.
///
/// `Send` so a backend can move between inference threads; not `Sync` because a session run
/// needs `&mut self` (one batch at a time per backend).
pub trait Backend: Send {
    /// Runs one batch. `input` holds `batch_size` rows back to back in row-major order; on
    /// success `output` is cleared and refilled with `batch_size * output_size` values (its
    /// capacity is reused, so a caller that keeps the buffer allocates nothing per batch).
    fn infer(
        &mut self,
        input: &[f32],
        batch_size: usize,
        output: &mut Vec<f32>,
    ) -> Result<(), InferenceError>;

    /// Static facts about the loaded model.
    fn info(&self) -> &ModelInfo;
}
