//! What a loaded model looks like to the rest of the service: its identity and its signature as
//! read from the ONNX file.
//!
//! Invariant: a signature's specs are per row (no batch dimension), every dimension fixed and
//! non-zero or dynamic; a backend's `info()` describes the session it runs, never a configured
//! guess.

use std::path::PathBuf;

use super::{BatchTensor, InferenceError, ModelId};
use crate::config::Device;
use crate::tensor::{DType, TensorSpec};

/// A loaded model's identity, signature and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name (what requests refer to) and version (the registry directory, reported in replies).
    pub id: ModelId,
    /// Inputs and outputs, as declared in the ONNX file.
    pub signature: Signature,
    /// Device the session actually runs on (CPU after a CUDA fallback).
    pub device: Device,
    /// ONNX Runtime library the session was built with.
    pub library_path: PathBuf,
}

impl ModelInfo {
    /// Checks that `inputs` is a non-empty batch of `rows` whole rows of every model input, in
    /// the model's order and element types.
    pub fn check_input(&self, inputs: &[BatchTensor], rows: usize) -> Result<(), InferenceError> {
        if rows == 0 {
            return Err(InferenceError::EmptyBatch);
        }
        let specs = &self.signature.inputs;
        if inputs.len() != specs.len() {
            return Err(InferenceError::ModelMismatch(format!(
                "a batch of {} inputs for a model of {}",
                inputs.len(),
                specs.len()
            )));
        }
        for (t, spec) in inputs.iter().zip(specs) {
            let wrong =
                |what: String| InferenceError::ModelMismatch(format!("{}: {what}", spec.name));
            if t.data.dtype() != spec.dtype {
                return Err(wrong(format!(
                    "{} values for a {} input",
                    t.data.dtype(),
                    spec.dtype
                )));
            }
            if !spec.accepts(&t.row_shape) {
                return Err(wrong(format!("rows of shape {:?}", t.row_shape)));
            }
            let expected = rows
                .checked_mul(t.row_len())
                .ok_or(InferenceError::InputLength {
                    input: spec.name.clone(),
                    expected: usize::MAX,
                    got: t.data.len(),
                })?;
            if t.data.len() != expected {
                return Err(InferenceError::InputLength {
                    input: spec.name.clone(),
                    expected,
                    got: t.data.len(),
                });
            }
        }
        Ok(())
    }
}

/// A model's request contract: its inputs and outputs in the ONNX file's order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// One float32 input of fixed per-row `input_shape` and one float32 output of
    /// `output_size` values per row: the signature version-1 requests were made for.
    pub fn float32(
        input_name: &str,
        input_shape: &[usize],
        output_name: &str,
        output_size: usize,
    ) -> Self {
        Self {
            inputs: vec![TensorSpec::fixed(input_name, DType::Float32, input_shape)],
            outputs: vec![TensorSpec::fixed(
                output_name,
                DType::Float32,
                &[output_size],
            )],
        }
    }

    /// Whether version-1 requests (one float32 tensor in, one float32 tensor out) can use it.
    pub fn serves_version_1(&self) -> bool {
        matches!(self.inputs.as_slice(), [i] if i.dtype == DType::Float32)
            && self.outputs.first().map(|o| o.dtype) == Some(DType::Float32)
    }

    /// Whether any input has a dynamic dimension (rows of one batch may then differ in shape).
    pub fn has_dynamic_inputs(&self) -> bool {
        self.inputs.iter().any(TensorSpec::is_dynamic)
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(TensorSpec::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "{} -> {}", list(&self.inputs), list(&self.outputs))
    }
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
