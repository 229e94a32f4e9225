//! The `model` section: which ONNX model to serve, where ONNX Runtime lives, and on which device.
//!
//! Invariant: every path here is resolved relative to the process's working directory; nothing in
//! this section is read by the hot path (the backend copies what it needs at start).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (needs the `cuda` cargo feature and a CUDA build of
    /// libonnxruntime); falls back to CPU with a warning when it cannot be registered.
    Cuda,
}

/// The `model` configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Model name that requests may name; a request naming another model is answered UNKNOWN_MODEL.
    pub name: String,
    /// Version string reported in every reply.
    pub version: String,
    /// Directory that holds the model files (also set by the `MODEL_REGISTRY_PATH` variable).
    pub registry_path: PathBuf,
    /// ONNX file inside `registry_path`.
    pub file: String,
    /// Shape of one request's tensor, without the batch dimension.
    pub input_shape: Vec<usize>,
    /// Number of output values per request.
    pub output_size: usize,
    /// Execution device (also set by the `DEVICE` variable).
    pub device: Device,
    /// CUDA device ordinal when `device = cuda`.
    pub cuda_device_id: i32,
    /// Path of `libonnxruntime.so`; when unset the backend searches `ORT_DYLIB_PATH`, then
    /// `vendor/onnxruntime/`, then the directory of the executable.
    pub ort_library_path: Option<PathBuf>,
    /// Intra-op threads of each ONNX Runtime session.
    pub intra_op_threads: usize,
    /// Number of warm-up batches run at start before the model takes traffic.
    pub warmup_batches: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "cnn_lstm".into(),
            version: "1".into(),
            registry_path: PathBuf::from("models"),
            file: "cnn_lstm.onnx".into(),
            input_shape: vec![64, 16],
            output_size: 3,
            device: Device::Cpu,
            cuda_device_id: 0,
            ort_library_path: None,
            intra_op_threads: 2,
            warmup_batches: 2,
        }
    }
}

impl ModelConfig {
    /// Full path of the ONNX file.
    pub fn model_path(&self) -> PathBuf {
        self.registry_path.join(&self.file)
    }

    /// Number of f32 values in one request's tensor.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }
}
