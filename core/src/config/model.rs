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
    /// libonnxruntime); falls back to CPU with a warning when it cannot be registered. `gpu`
    /// (the predecessor's spelling) means the same.
    #[serde(alias = "gpu")]
    Cuda,
    /// CUDA when its execution provider initialises, else CPU; the choice is logged and each
    /// version reports the device it runs on.
    Auto,
}

impl Device {
    /// The name the configuration, `/models` and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

/// The `model` configuration section: the default model and how sessions run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The default model: requests whose `model_name` is null are routed to it.
    pub name: String,
    /// Single-file form (a registry of one): the ONNX file served as `name` at `version`,
    /// resolved inside `registry_path` (or `model_registry.path`). Unset: the registry is
    /// scanned.
    pub file: Option<String>,
    /// Version of `file` in the single-file form.
    pub version: String,
    /// Directory of `file` in the single-file form (the pre-registry key; `model_registry.path`
    /// when unset).
    pub registry_path: Option<PathBuf>,
    /// Per-row input shape `file` must declare (checked at load; the shape served is always the
    /// file's own).
    pub input_shape: Option<Vec<usize>>,
    /// Output values per row `file` must declare (checked at load).
    pub output_size: Option<usize>,
    /// Execution device (also set by the `DEVICE` variable).
    pub device: Device,
    /// CUDA device ordinal when `device = cuda`.
    pub cuda_device_id: i32,
    /// Path of `libonnxruntime.so`; when unset the backend searches `ORT_DYLIB_PATH`, then
    /// `vendor/onnxruntime/`, then the directory of the executable.
    pub ort_library_path: Option<PathBuf>,
    /// Intra-op threads of each ONNX Runtime session.
    pub intra_op_threads: usize,
    /// Number of warm-up batches each version runs before it takes traffic.
    pub warmup_batches: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "cnn_lstm".into(),
            file: None,
            version: "1".into(),
            registry_path: None,
            input_shape: None,
            output_size: None,
            device: Device::Cpu,
            cuda_device_id: 0,
            ort_library_path: None,
            intra_op_threads: 2,
            warmup_batches: 2,
        }
    }
}

/// Where model versions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistryType {
    /// `<path>/<model_name>/<version>/model.onnx` on a local (or mounted) file system.
    #[default]
    Filesystem,
}

/// The `model_registry` section: the repository of models and versions served at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRegistryConfig {
    #[serde(rename = "type")]
    pub kind: RegistryType,
    /// The repository's root (also set by `MODEL_REGISTRY_PATH`).
    pub path: PathBuf,
    /// Seconds between rescans of the repository (SIGHUP rescans at once).
    pub sync_interval_s: f64,
    /// A new version takes traffic only if its signature matches its `model.yaml` or the
    /// version it supersedes.
    pub validation_enabled: bool,
}

impl Default for ModelRegistryConfig {
    fn default() -> Self {
        Self {
            kind: RegistryType::Filesystem,
            path: PathBuf::from("models"),
            sync_interval_s: 300.0,
            validation_enabled: true,
        }
    }
}

/// The one file the single-file form serves.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleFile {
    pub path: PathBuf,
    pub version: String,
    /// The declared per-row input shape and output size, when the configuration states them.
    pub input_shape: Option<Vec<usize>>,
    pub output_size: Option<usize>,
}

impl ModelConfig {
    /// The single-file form, when `file` is set: its path is resolved in `registry_path`, else
    /// in `registry`.
    pub fn single_file(&self, registry: &ModelRegistryConfig) -> Option<SingleFile> {
        let file = self.file.as_ref()?;
        let dir = self.registry_path.as_ref().unwrap_or(&registry.path);
        Some(SingleFile {
            path: dir.join(file),
            version: self.version.clone(),
            input_shape: self.input_shape.clone(),
            output_size: self.output_size,
        })
    }
}
