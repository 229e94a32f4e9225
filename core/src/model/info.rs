//! What a loaded model looks like to the rest of the service: its identity and its signature as
//! read from the ONNX file.
//!
//! Invariant: `input_shape` and `output_size` are per-row (no batch dimension), every dimension
//! static and non-zero; a backend's `info()` describes the session it runs, never a configured
//! guess.

use std::path::PathBuf;

use super::{InferenceError, ModelId};
use crate::config::Device;

/// A loaded model's identity, signature and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name (what requests refer to) and version (the registry directory, reported in replies).
    pub id: ModelId,
    /// Name of the model's input tensor, as declared in the ONNX file.
    pub input_name: String,
    /// Name of the model's output tensor, as declared in the ONNX file.
    pub output_name: String,
    /// Shape of one request's tensor, without the batch dimension, from the ONNX file.
    pub input_shape: Vec<usize>,
    /// Number of output values per request, from the ONNX file.
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

    /// The input/output contract two versions must share to serve the same requests.
    pub fn signature(&self) -> Signature {
        Signature {
            input_name: self.input_name.clone(),
            input_shape: self.input_shape.clone(),
            output_name: self.output_name.clone(),
            output_size: self.output_size,
        }
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

/// A model's request contract: one float32 input of a fixed per-row shape, and the float32
/// output whose per-row values a reply carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub input_name: String,
    /// Per-row input dimensions (no batch dimension).
    pub input_shape: Vec<usize>,
    pub output_name: String,
    /// Output values per row.
    pub output_size: usize,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self.input_shape.iter().map(usize::to_string).collect();
        write!(
            f,
            "{}: float32[batch, {}] -> {}: float32[batch, {}]",
            self.input_name,
            dims.join(", "),
            self.output_name,
            self.output_size
        )
    }
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
