//! The ONNX Runtime backend.
//!
//! Invariant: a constructed `OrtBackend` holds a session whose single f32 input and first f32
//! output agree with the configured per-row shapes, has already run its warm-up batches, and is
//! never handed a batch that `ModelInfo::check_input` rejects (in particular never an empty one:
//! ORT's CPU LSTM kernel aborts the process on batch 0 instead of returning an error).

use std::fmt;
use std::path::Path;

use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::runtime::{self, Runtime};
use super::{Backend, InferenceError, ModelInfo};
use crate::config::{Device, ModelConfig};
use crate::pipeline::ModelId;

/// Batch sizes used for warm-up grow up to this, so ORT's arena and per-shape caches are sized
/// for realistic batches before live traffic rather than during the first large batch.
const MAX_WARMUP_BATCH: usize = 32;

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
    /// Loads ONNX Runtime (once per process), opens the model, checks its signature against the
    /// configuration and runs `config.warmup_batches` warm-up batches.
    ///
    /// `device = cuda` falls back to CPU with a warning when CUDA cannot be used;
    /// `info().device` says which one was picked.
    pub fn new(config: &ModelConfig) -> Result<Self, InferenceError> {
        check_config(config)?;
        let runtime = runtime::load(config.ort_library_path.as_deref())?;
        let model_path = config.model_path();
        if !model_path.is_file() {
            return Err(InferenceError::ModelLoad {
                path: model_path,
                message: "no such file".into(),
            });
        }
        let (session, device) = open_session(&runtime, config, &model_path)?;
        let tensors = check_signature(&session, config)?;

        let info = ModelInfo {
            id: ModelId::new(&config.name, &config.version),
            input_name: tensors.input,
            output_name: tensors.output,
            input_shape: config.input_shape.clone(),
            output_size: config.output_size,
            device,
            library_path: runtime.library_path.clone(),
        };
        let input_dims = std::iter::once(0)
            .chain(config.input_shape.iter().map(|&d| d as i64))
            .collect();
        let mut backend = Self {
            session,
            info,
            input_dims,
        };
        backend.warm_up(config.warmup_batches)?;
        tracing::info!(
            model = %backend.info.id.name,
            version = %backend.info.id.version,
            path = %model_path.display(),
            device = ?backend.info.device,
            intra_op_threads = config.intra_op_threads,
            "model loaded"
        );
        Ok(backend)
    }

    fn warm_up(&mut self, batches: usize) -> Result<(), InferenceError> {
        let mut output = Vec::new();
        let mut input = Vec::new();
        for i in 0..batches {
            let batch = (1usize << i.min(usize::BITS as usize - 1)).min(MAX_WARMUP_BATCH);
            input.resize(batch * self.info.input_len(), 0.0);
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

fn check_config(config: &ModelConfig) -> Result<(), InferenceError> {
    if config.input_shape.is_empty() || config.input_len() == 0 || config.output_size == 0 {
        return Err(InferenceError::ModelMismatch(format!(
            "configured input_shape {:?} and output_size {} must be non-empty and non-zero",
            config.input_shape, config.output_size
        )));
    }
    Ok(())
}

/// Builds the session on the configured device; CUDA trouble degrades to CPU instead of failing,
/// because a slower service beats no service and the warning says why.
fn open_session(
    runtime: &Runtime,
    config: &ModelConfig,
    path: &Path,
) -> Result<(Session, Device), InferenceError> {
    if config.device == Device::Cuda {
        match build_session(runtime, config, path, true) {
            Ok(session) => return Ok((session, Device::Cuda)),
            Err(e) => tracing::warn!(
                error = %e,
                cuda_device_id = config.cuda_device_id,
                "CUDA execution provider unavailable; falling back to CPU"
            ),
        }
    }
    Ok((build_session(runtime, config, path, false)?, Device::Cpu))
}

fn build_session(
    runtime: &Runtime,
    config: &ModelConfig,
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
        .with_intra_threads(config.intra_op_threads)
        .map_err(|e| load_error(e.to_string()))?;
    if cuda {
        builder = with_cuda(builder, config.cuda_device_id).map_err(load_error)?;
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

/// The names of a model's input and output tensors, as its ONNX file declares them.
struct TensorNames {
    input: String,
    output: String,
}

/// Finds the input/output names and checks element types and per-row dims against the
/// configuration; symbolic (dynamic) dims in the model match anything.
fn check_signature(session: &Session, config: &ModelConfig) -> Result<TensorNames, InferenceError> {
    let [input] = session.inputs() else {
        return Err(InferenceError::ModelMismatch(format!(
            "expected exactly one model input, found {}",
            session.inputs().len()
        )));
    };
    let Some(output) = session.outputs().first() else {
        return Err(InferenceError::ModelMismatch("model has no outputs".into()));
    };
    check_tensor("input", input.name(), input.dtype(), &config.input_shape)?;
    check_tensor(
        "output",
        output.name(),
        output.dtype(),
        &[config.output_size],
    )?;
    Ok(TensorNames {
        input: input.name().to_owned(),
        output: output.name().to_owned(),
    })
}

fn check_tensor(
    role: &str,
    name: &str,
    dtype: &ValueType,
    per_row: &[usize],
) -> Result<(), InferenceError> {
    let mismatch = |what: String| InferenceError::ModelMismatch(format!("{role} {name:?}: {what}"));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(mismatch(format!("expected a tensor, found {dtype}")));
    };
    if *ty != TensorElementType::Float32 {
        return Err(mismatch(format!("expected f32 elements, found {ty}")));
    }
    let dims_match = shape.len() == per_row.len() + 1
        && shape[1..]
            .iter()
            .zip(per_row)
            .all(|(&declared, &wanted)| declared < 0 || declared as usize == wanted);
    if !dims_match {
        return Err(mismatch(format!(
            "model declares shape {shape:?}, configuration expects [batch, {}]",
            per_row
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "ort_backend_tests.rs"]
mod tests;
