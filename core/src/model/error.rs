//! Errors of the inference layer.
//!
//! Invariant: `InferenceError` is `Clone` and owns only plain data (messages as `String`s, paths),
//! so one failed batch can hand the same error to every request that was in it.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong between "load ONNX Runtime" and "values in the output buffer".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InferenceError {
    /// No ONNX Runtime shared library exists at any of the searched paths.
    #[error(
        "ONNX Runtime library not found; searched: {}; run scripts/install-onnxruntime.sh or set \
         model.ort_library_path / ORT_DYLIB_PATH",
        display_paths(.searched)
    )]
    LibraryNotFound {
        /// Every path that was tried, in search order.
        searched: Vec<PathBuf>,
    },

    /// A library file exists but ONNX Runtime could not be loaded from it, or its environment
    /// could not be created.
    #[error("cannot load ONNX Runtime from {}: {message}", path.display())]
    LibraryLoad {
        /// The library that was tried.
        path: PathBuf,
        /// ONNX Runtime's or the loader's explanation.
        message: String,
    },

    /// The model file is missing, unreadable, or rejected by ONNX Runtime.
    #[error("cannot load model {}: {message}", path.display())]
    ModelLoad {
        /// The model that was tried.
        path: PathBuf,
        /// ONNX Runtime's explanation.
        message: String,
    },

    /// The model's declared inputs/outputs do not fit what the configuration promises.
    #[error("model does not match configuration: {0}")]
    ModelMismatch(String),

    /// A batch with zero rows; never sent to ONNX Runtime because its CPU LSTM kernel aborts the
    /// whole process on a zero-sized batch.
    #[error("empty batch: at least one row is required")]
    EmptyBatch,

    /// An input does not hold exactly `batch_size` rows.
    #[error("input {input} has {got} values, expected {expected}")]
    InputLength {
        /// Which input.
        input: String,
        /// `batch_size` times the per-row input length.
        expected: usize,
        /// Length of the slice that was passed.
        got: usize,
    },

    /// ONNX Runtime failed while running the model.
    #[error("inference run failed: {0}")]
    Run(String),

    /// ONNX Runtime returned an output whose shape or type is not what the model declares for
    /// a batch of this size.
    #[error("unexpected model output: {0}")]
    OutputShape(String),
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no candidates)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
