//! The ONNX Runtime backend.
//!
//! Invariant: a constructed `OrtBackend` holds a session with one f32 input whose per-row dims
//! are all static (only the batch dimension may be symbolic) and a first f32 output of static
//! per-row size, read from the ONNX file itself; it has already run its warm-up batches, and is
//! never handed a batch that `ModelInfo::check_input` rejects (in particular never an empty one:
//! ORT's CPU LSTM kernel aborts the process on batch 0 instead of returning an error).

use std::fmt;
use std::path::{Path, PathBuf};

use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::runtime::{self, Runtime};
use super::{Backend, InferenceError, ModelInfo};
use crate::config::{Device, ModelConfig};
use crate::model::{ModelId, Signature};

/// Batch sizes used for warm-up grow up to this, so ORT's arena and per-shape caches are sized
/// for realistic batches before live traffic rather than during the first large batch.
const MAX_WARMUP_BATCH: usize = 32;

/// What to load and how: one ONNX file as one model version.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub id: ModelId,
    pub path: PathBuf,
    pub device: Device,
    pub cuda_device_id: i32,
    pub ort_library_path: Option<PathBuf>,
    pub intra_op_threads: usize,
    pub warmup_batches: usize,
    /// Input rows to warm up with, back to back (each `input_len` values); empty: zeros.
    pub warmup_rows: Vec<f32>,
}

impl LoadSpec {
    /// The file at `path`, served as `id`, with `model`'s runtime settings.
    pub fn new(model: &ModelConfig, id: ModelId, path: PathBuf) -> Self {
        Self {
            id,
            path,
            device: model.device,
            cuda_device_id: model.cuda_device_id,
            ort_library_path: model.ort_library_path.clone(),
            intra_op_threads: model.intra_op_threads,
            warmup_batches: model.warmup_batches,
            warmup_rows: Vec::new(),
        }
    }
}

/// A model served by ONNX Runtime (CPU, or CUDA with the `cuda` feature).
pub struct OrtBackend {
    session: Session,
    info: ModelInfo,
    /// `[batch, ..input_shape]`; only the batch dimension changes between runs, so the shape
    /// is kept here instead of being rebuilt per batch.
    input_dims: Vec<i64>,
}

impl fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtBackend")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl OrtBackend {
    /// Loads ONNX Runtime (once per process), opens the model, reads its signature from the
    /// file and runs `spec.warmup_batches` warm-up batches.
    ///
    /// `device = cuda` falls back to CPU with a warning when CUDA cannot be used;
    /// `info().device` says which one was picked.
    pub fn new(spec: &LoadSpec) -> Result<Self, InferenceError> {
        let runtime = runtime::load(spec.ort_library_path.as_deref())?;
        if !spec.path.is_file() {
            return Err(InferenceError::ModelLoad {
                path: spec.path.clone(),
                message: "no such file".into(),
            });
        }
        let (session, device) = open_session(&runtime, spec, &spec.path)?;
        let signature = read_signature(&session)?;
        let info = ModelInfo {
            id: spec.id.clone(),
            input_name: signature.input_name,
            output_name: signature.output_name,
            input_shape: signature.input_shape,
            output_size: signature.output_size,
            device,
            library_path: runtime.library_path.clone(),
        };
        let input_dims = std::iter::once(0)
            .chain(info.input_shape.iter().map(|&d| d as i64))
            .collect();
        let mut backend = Self {
            session,
            info,
            input_dims,
        };
        backend.warm_up(spec.warmup_batches, &spec.warmup_rows)?;
        tracing::info!(
            model = %backend.info.id.name,
            version = %backend.info.id.version,
            path = %spec.path.display(),
            device = ?backend.info.device,
            intra_op_threads = spec.intra_op_threads,
            "model loaded"
        );
        Ok(backend)
    }

    /// Runs batches of 1, 2, 4 ... `MAX_WARMUP_BATCH` rows: `samples` repeated (whole rows), or
    /// zeros when there are none.
    fn warm_up(&mut self, batches: usize, samples: &[f32]) -> Result<(), InferenceError> {
        let row = self.info.input_len();
        if !samples.is_empty() && !samples.len().is_multiple_of(row) {
            return Err(InferenceError::ModelMismatch(format!(
                "warm-up samples hold {} values, not whole rows of {row}",
                samples.len()
            )));
        }
        let mut output = Vec::new();
        let mut input = Vec::new();
        for i in 0..batches {
            let batch = (1usize << i.min(usize::BITS as usize - 1)).min(MAX_WARMUP_BATCH);
            input.clear();
            if samples.is_empty() {
                input.resize(batch * row, 0.0);
            } else {
                input.extend(samples.iter().copied().cycle().take(batch * row));
            }
            self.infer(&input, batch, &mut output)?;
        }
        Ok(())
    }
}

impl Backend for OrtBackend {
    fn infer(
        &mut self,
        input: &[f32],
        batch_size: usize,
        output: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        // Must stay first: an empty batch reaching ORT kills the process.
        self.info.check_input(input, batch_size)?;
        self.input_dims[0] = batch_size as i64;
        // A borrowed view: ORT reads the caller's slice in place, no copy of the batch.
        let tensor = TensorRef::from_array_view((self.input_dims.as_slice(), input))
            .map_err(|e| InferenceError::Run(format!("cannot wrap input: {e}")))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| InferenceError::Run(e.to_string()))?;
        let value = outputs.get(&self.info.output_name).ok_or_else(|| {
            InferenceError::OutputShape(format!("no output named {:?}", self.info.output_name))
        })?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| InferenceError::OutputShape(e.to_string()))?;
        let expected = batch_size * self.info.output_size;
        if shape.first().copied() != Some(batch_size as i64) || data.len() != expected {
            return Err(InferenceError::OutputShape(format!(
                "got shape {shape:?}, expected [{batch_size}, {}]",
                self.info.output_size
            )));
        }
        output.clear();
        output.extend_from_slice(data);
        Ok(())
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// Builds the session on the configured device; CUDA trouble degrades to CPU instead of failing,
/// because a slower service beats no service and the warning says why.
fn open_session(
    runtime: &Runtime,
    spec: &LoadSpec,
    path: &Path,
) -> Result<(Session, Device), InferenceError> {
    if spec.device == Device::Cuda {
        match build_session(runtime, spec, path, true) {
            Ok(session) => return Ok((session, Device::Cuda)),
            Err(e) => tracing::warn!(
                error = %e,
                cuda_device_id = spec.cuda_device_id,
                "CUDA execution provider unavailable; falling back to CPU"
            ),
        }
    }
    Ok((build_session(runtime, spec, path, false)?, Device::Cpu))
}

fn build_session(
    runtime: &Runtime,
    spec: &LoadSpec,
    path: &Path,
    cuda: bool,
) -> Result<Session, InferenceError> {
    let load_error = |message: String| InferenceError::ModelLoad {
        path: path.to_path_buf(),
        message,
    };
    let mut builder = Session::builder(&runtime.environment)
        .map_err(|e| load_error(e.to_string()))?
        // 0 lets ORT pick one thread per physical core.
        .with_intra_threads(spec.intra_op_threads)
        .map_err(|e| load_error(e.to_string()))?;
    if cuda {
        builder = with_cuda(builder, spec.cuda_device_id).map_err(load_error)?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| load_error(e.to_string()))
}

#[cfg(feature = "cuda")]
fn with_cuda(builder: SessionBuilder, device_id: i32) -> Result<SessionBuilder, String> {
    // error_on_failure: without it ort only logs and silently runs on CPU while we report CUDA.
    let cuda = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure();
    builder
        .with_execution_providers([cuda])
        .map_err(|e| format!("cannot register CUDA execution provider: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_builder: SessionBuilder, _device_id: i32) -> Result<SessionBuilder, String> {
    Err("kbatch was built without the `cuda` cargo feature".into())
}

/// Reads the request contract from the ONNX file: exactly one f32 input whose dims after the
/// batch dimension are all static, and a first output of f32 with static per-row dims.
fn read_signature(session: &Session) -> Result<Signature, InferenceError> {
    let [input] = session.inputs() else {
        return Err(InferenceError::ModelMismatch(format!(
            "expected exactly one model input, found {}",
            session.inputs().len()
        )));
    };
    let Some(output) = session.outputs().first() else {
        return Err(InferenceError::ModelMismatch("model has no outputs".into()));
    };
    let input_shape = per_row_dims("input", input.name(), input.dtype())?;
    let output_dims = per_row_dims("output", output.name(), output.dtype())?;
    Ok(Signature {
        input_name: input.name().to_owned(),
        input_shape,
        output_name: output.name().to_owned(),
        output_size: output_dims.iter().product(),
    })
}

/// The dims after the batch dimension of an f32 tensor; every one must be static and non-zero
/// (requests of one batch are stacked row by row, so a per-row size has to be fixed).
fn per_row_dims(role: &str, name: &str, dtype: &ValueType) -> Result<Vec<usize>, InferenceError> {
    let mismatch = |what: String| InferenceError::ModelMismatch(format!("{role} {name:?}: {what}"));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(mismatch(format!("expected a tensor, found {dtype}")));
    };
    if *ty != TensorElementType::Float32 {
        return Err(mismatch(format!("expected f32 elements, found {ty}")));
    }
    if shape.len() < 2 {
        return Err(mismatch(format!(
            "declares shape {shape:?}; expected [batch, ...] with at least one dimension per row"
        )));
    }
    shape[1..]
        .iter()
        .map(|&d| {
            usize::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
                mismatch(format!(
                    "declares shape {shape:?}; every dimension after the batch must be static \
                     and non-zero"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "ort_backend_tests.rs"]
mod tests;
