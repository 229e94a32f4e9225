//! Inference backends: turn a batch of request tensors into a batch of model outputs.
//!
//! Invariant: a backend only ever sees batches that passed `ModelInfo::check_input` (at least one
//! row, exactly `batch_size * input_len` values), and on success leaves exactly
//! `batch_size * output_size` values in the caller's output buffer, row `i` belonging to input
//! row `i`. Errors are `Clone` so the batcher can answer every request of a failed batch.

mod error;
pub mod isolate;
mod ort_backend;
pub mod runtime;
mod worker;

use std::path::PathBuf;

pub use self::error::InferenceError;
pub use self::ort_backend::OrtBackend;
pub use self::worker::{spawn_workers, WorkerOutputs, WorkerReport};
use crate::config::{Device, ModelConfig};
use crate::pipeline::ModelId;

/// What a loaded model looks like, as the rest of the service needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name (what requests refer to) and version (reported in replies), from the configuration.
    pub id: ModelId,
    /// Name of the model's input tensor, as declared in the ONNX file.
    pub input_name: String,
    /// Name of the model's output tensor, as declared in the ONNX file.
    pub output_name: String,
    /// Shape of one request's tensor, without the batch dimension.
    pub input_shape: Vec<usize>,
    /// Number of output values per request.
    pub output_size: usize,
    /// Device the session actually runs on (CPU after a CUDA fallback).
    pub device: Device,
    /// ONNX Runtime library the session was built with.
    pub library_path: PathBuf,
}

impl ModelInfo {
    /// Number of f32 values in one request's tensor.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Checks that `input` is a non-empty batch of `batch_size` whole rows.
    pub fn check_input(&self, input: &[f32], batch_size: usize) -> Result<(), InferenceError> {
        if batch_size == 0 {
            return Err(InferenceError::EmptyBatch);
        }
        let expected =
            batch_size
                .checked_mul(self.input_len())
                .ok_or(InferenceError::InputLength {
                    expected: usize::MAX,
                    got: input.len(),
                })?;
        if input.len() != expected {
            return Err(InferenceError::InputLength {
                expected,
                got: input.len(),
            });
        }
        Ok(())
    }
}

/// A loaded model that runs batches.
///
/// `Send` so a backend can live on a dedicated inference thread; not `Sync` because a session run
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

/// Builds the backend the configuration asks for.
pub fn load_backend(config: &ModelConfig) -> Result<Box<dyn Backend>, InferenceError> {
    Ok(Box::new(OrtBackend::new(config)?))
}

#[cfg(test)]
mod tests;
