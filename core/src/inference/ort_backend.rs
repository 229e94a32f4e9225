//! The ONNX Runtime backend.
//!
//! Invariant: a constructed `OrtBackend` holds a session whose signature (every input and output,
//! float32/float64/int32/int64, per-row dimensions fixed or dynamic) was read from the ONNX file
//! itself; it has already run its warm-up batches, and is never handed a batch that
//! `ModelInfo::check_input` rejects (in particular never an empty one: ORT's CPU LSTM kernel
//! aborts the process on batch 0 instead of returning an error).

use std::fmt;
use std::path::{Path, PathBuf};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use super::activations;
use super::cuda::CudaTuning;
use super::runtime::{self, Runtime};
use super::{Backend, InferenceError, ModelInfo};
use crate::config::{Device, ModelConfig};
use crate::model::{stack_rows, zero_sample, BatchTensor, ModelId, Signature, WarmupSample};
use crate::tensor::{DType, Dim, Tensor, TensorData, TensorSpec};

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
    /// Requests to warm up with; none: zeros.
    pub warmup_samples: Vec<WarmupSample>,
    /// `resource_management.enable_model_compilation`: ONNX Runtime's full graph optimization
    /// (constant folding, node fusions, layout transforms), with the optimized graph kept on disk
    /// beside the model so the next load skips the work; off: no graph optimization at all.
    pub compile: bool,
    /// `resource_management.enable_gpu_optimization`: the tuned CUDA execution provider options
    /// (`inference::cuda`), on CUDA only.
    pub gpu_optimization: bool,
    /// `resource_management.enable_memory_cleanup` with `cleanup_interval_seconds`: at most this
    /// often a run ends by shrinking ONNX Runtime's memory arena (what the run no longer uses
    /// goes back to the system); `None`: never.
    pub cleanup_interval: Option<std::time::Duration>,
    /// `resource_management.cpu_affinity_enabled`: ONNX Runtime's
    /// `session.intra_op_thread_affinities` (`affinity::CorePlan::ort_intra_op_affinities`), so
    /// the threads ORT creates run on the inference cores; `None`: wherever the OS puts them.
    pub intra_op_affinity: Option<String>,
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
            warmup_samples: Vec::new(),
            compile: true,
            gpu_optimization: true,
            cleanup_interval: None,
            intra_op_affinity: None,
        }
    }
}

/// A model served by ONNX Runtime (CPU, or CUDA with the `cuda` feature).
pub struct OrtBackend {
    session: Session,
    info: ModelInfo,
    /// Per input, `[batch, ..row_shape]` of the current batch (kept so a run allocates no shape).
    input_dims: Vec<Vec<i64>>,
    /// Periodic arena shrinking (`LoadSpec::cleanup_interval`).
    cleanup: Option<Cleanup>,
    /// Working memory one more row of a batch takes (`inference::activations`), measured at load.
    activation_bytes_per_row: Option<u64>,
}

/// When the arena was last shrunk, how often it may be, and the run options that ask for it.
struct Cleanup {
    every: std::time::Duration,
    last: std::time::Instant,
    options: ort::session::RunOptions,
    done: u64,
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
            signature,
            device,
            library_path: runtime.library_path.clone(),
        };
        let cleanup = match spec.cleanup_interval {
            Some(every) => Some(cleanup_options(every, device, spec.cuda_device_id)?),
            None => None,
        };
        let mut backend = Self {
            session,
            input_dims: vec![Vec::new(); info.signature.inputs.len()],
            info,
            cleanup: None,
            activation_bytes_per_row: None,
        };
        let requests = warmup_requests(&backend.info.signature, &spec.warmup_samples)?;
        let warmed_rows = backend.warm_up(spec.warmup_batches, &requests)?;
        backend.activation_bytes_per_row =
            backend.measure_activations(&requests, warmed_rows, spec.cuda_device_id)?;
        // After the warm-up, which sizes the arena for real batches: shrinking it then would
        // undo what it is for.
        backend.cleanup = cleanup;
        tracing::info!(
            model = %backend.info.id.name,
            version = %backend.info.id.version,
            path = %spec.path.display(),
            device = ?backend.info.device,
            intra_op_threads = spec.intra_op_threads,
            activation_bytes_per_row = backend.activation_bytes_per_row,
            "model loaded"
        );
        Ok(backend)
    }

    /// Runs batches of 1, 2, 4 ... `MAX_WARMUP_BATCH` rows of `requests` repeated. Requests of
    /// different shapes (dynamic dimensions) warm up in batches of their own, as live traffic
    /// would run them. Returns the most rows one batch had.
    fn warm_up(
        &mut self,
        batches: usize,
        requests: &[Vec<Tensor>],
    ) -> Result<usize, InferenceError> {
        let classes = shape_classes(requests);
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        let mut most = 0;
        for i in 0..batches {
            let rows = (1usize << i.min(usize::BITS as usize - 1)).min(MAX_WARMUP_BATCH);
            for class in &classes {
                let n = stack_rows(class.iter().copied().cycle().take(rows), &mut inputs);
                self.infer(&inputs, n, &mut outputs)?;
                most = most.max(n);
            }
        }
        Ok(most)
    }

    /// The arena's growth per row from a batch of `activations::MEASURE_ROWS` rows of the first
    /// request's shape, past the `warmed_rows` the warm-up ran (`inference::activations`).
    fn measure_activations(
        &mut self,
        requests: &[Vec<Tensor>],
        warmed_rows: usize,
        device_id: i32,
    ) -> Result<Option<u64>, InferenceError> {
        let device = self.info.device;
        let Some(before) = activations::arena_peak(&self.session, device, device_id) else {
            return Ok(None);
        };
        let Some(class) = shape_classes(requests).into_iter().next() else {
            return Ok(None);
        };
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        let rows = class
            .iter()
            .copied()
            .cycle()
            .take(activations::MEASURE_ROWS);
        let n = stack_rows(rows, &mut inputs);
        self.infer(&inputs, n, &mut outputs)?;
        let after = activations::arena_peak(&self.session, device, device_id);
        Ok(after.and_then(|after| activations::per_row(before, after, warmed_rows, n)))
    }
}

/// What the warm-up runs: the model's samples, or zeros when it has none.
fn warmup_requests(
    sig: &Signature,
    samples: &[WarmupSample],
) -> Result<Vec<Vec<Tensor>>, InferenceError> {
    if samples.is_empty() {
        return Ok(vec![zero_sample(sig)]);
    }
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.tensors(sig)
                .map_err(|e| InferenceError::ModelMismatch(format!("warm-up sample {i}: {e}")))
        })
        .collect()
}

/// `requests` grouped by the shapes of their tensors (one model call each), in first-seen order.
fn shape_classes(requests: &[Vec<Tensor>]) -> Vec<Vec<&[Tensor]>> {
    let mut classes: Vec<Vec<&[Tensor]>> = Vec::new();
    for r in requests {
        let same = |c: &Vec<&[Tensor]>| c[0].iter().zip(r).all(|(a, b)| a.shape == b.shape);
        match classes.iter_mut().find(|c| same(c)) {
            Some(c) => c.push(r),
            None => classes.push(vec![r]),
        }
    }
    classes
}

impl Backend for OrtBackend {
    fn infer(
        &mut self,
        inputs: &[BatchTensor],
        rows: usize,
        outputs: &mut Vec<BatchTensor>,
    ) -> Result<(), InferenceError> {
        // Must stay first: an empty batch reaching ORT kills the process.
        self.info.check_input(inputs, rows)?;
        for (dims, input) in self.input_dims.iter_mut().zip(inputs) {
            dims.clear();
            dims.push(rows as i64);
            dims.extend(input.row_shape.iter().map(|&d| d as i64));
        }
        // Borrowed views: ORT reads the caller's buffers in place, no copy of the batch.
        let values = inputs
            .iter()
            .zip(&self.input_dims)
            .map(|(input, dims)| view(dims, &input.data))
            .collect::<Result<Vec<_>, _>>()?;
        let due = self
            .cleanup
            .as_mut()
            .filter(|c| c.last.elapsed() >= c.every);
        let run = match due {
            None => self.session.run(values.as_slice()),
            Some(c) => {
                let before = rss_mb();
                let run = self.session.run_with_options(values.as_slice(), &c.options);
                c.last = std::time::Instant::now();
                c.done += 1;
                tracing::info!(
                    model = %self.info.id,
                    rss_before_mb = before,
                    rss_after_mb = rss_mb(),
                    "memory cleanup: ONNX Runtime arena shrunk after the run"
                );
                run
            }
        }
        .map_err(|e| InferenceError::Run(e.to_string()))?;
        let specs = &self.info.signature.outputs;
        outputs.resize_with(specs.len(), BatchTensor::default);
        for (spec, out) in specs.iter().zip(outputs.iter_mut()) {
            let value = run.get(&spec.name).ok_or_else(|| {
                InferenceError::OutputShape(format!("no output named {:?}", spec.name))
            })?;
            extract(value, spec, rows, out)?;
        }
        Ok(())
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn activation_bytes_per_row(&self) -> Option<u64> {
        self.activation_bytes_per_row
    }
}

/// Run options that shrink the arena of `device` after the run.
fn cleanup_options(
    every: std::time::Duration,
    device: Device,
    cuda_device_id: i32,
) -> Result<Cleanup, InferenceError> {
    let fail = |e: ort::Error| InferenceError::Run(format!("cannot make cleanup run options: {e}"));
    let mut options = ort::session::RunOptions::new().map_err(fail)?;
    let arenas = match device {
        Device::Cuda => format!("cpu:0;gpu:{cuda_device_id}"),
        _ => "cpu:0".to_owned(),
    };
    options
        .set("memory.enable_memory_arena_shrinkage", &arenas)
        .map_err(fail)?;
    Ok(Cleanup {
        every,
        last: std::time::Instant::now(),
        options,
        done: 0,
    })
}

/// The process's resident set in MB, for the cleanup's log line (-1: unreadable).
fn rss_mb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::resources::parse_rss(&s))
        .map_or(-1, |b| (b / (1024 * 1024)) as i64)
}

impl OrtBackend {
    /// Arena shrinks done so far (`LoadSpec::cleanup_interval`).
    pub fn cleanups(&self) -> u64 {
        self.cleanup.as_ref().map_or(0, |c| c.done)
    }
}

/// A borrowed ONNX Runtime tensor over one input of the batch.
fn view<'a>(
    dims: &'a [i64],
    data: &'a TensorData,
) -> Result<SessionInputValue<'a>, InferenceError> {
    let wrap = |e: ort::Error| InferenceError::Run(format!("cannot wrap input: {e}"));
    Ok(match data {
        TensorData::F32(v) => TensorRef::from_array_view((dims, v.as_slice()))
            .map_err(wrap)?
            .into(),
        TensorData::F64(v) => TensorRef::from_array_view((dims, v.as_slice()))
            .map_err(wrap)?
            .into(),
        TensorData::I32(v) => TensorRef::from_array_view((dims, v.as_slice()))
            .map_err(wrap)?
            .into(),
        TensorData::I64(v) => TensorRef::from_array_view((dims, v.as_slice()))
            .map_err(wrap)?
            .into(),
    })
}

/// Copies one output of the run into `out`, checking it holds `rows` rows of a shape the model
/// declares.
fn extract(
    value: &DynValue,
    spec: &TensorSpec,
    rows: usize,
    out: &mut BatchTensor,
) -> Result<(), InferenceError> {
    fn copy<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug>(
        value: &DynValue,
        buf: &mut Vec<T>,
    ) -> Result<Vec<i64>, InferenceError> {
        let (shape, data) = value
            .try_extract_tensor::<T>()
            .map_err(|e| InferenceError::OutputShape(e.to_string()))?;
        buf.extend_from_slice(data);
        Ok(shape.to_vec())
    }
    out.data.clear_as(spec.dtype);
    let shape = match &mut out.data {
        TensorData::F32(v) => copy(value, v)?,
        TensorData::F64(v) => copy(value, v)?,
        TensorData::I32(v) => copy(value, v)?,
        TensorData::I64(v) => copy(value, v)?,
    };
    out.row_shape.clear();
    out.row_shape.extend(
        shape
            .iter()
            .skip(1)
            .map(|&d| usize::try_from(d).unwrap_or(0)),
    );
    let fits = shape.first().copied() == Some(rows as i64)
        && spec.accepts(&out.row_shape)
        && out.data.len() == rows * out.row_len();
    if !fits {
        return Err(InferenceError::OutputShape(format!(
            "{}: got shape {shape:?}, expected {spec} with batch {rows}",
            spec.name
        )));
    }
    Ok(())
}

/// Builds the session on the configured device; CUDA trouble degrades to CPU instead of failing,
/// because a slower service beats no service and the warning says why.
fn open_session(
    runtime: &Runtime,
    spec: &LoadSpec,
    path: &Path,
) -> Result<(Session, Device), InferenceError> {
    match spec.device {
        Device::Cpu => {}
        Device::Cuda | Device::Auto => match build_session(runtime, spec, path, true) {
            Ok(session) => {
                tracing::info!(cuda_device_id = spec.cuda_device_id, "running on CUDA");
                return Ok((session, Device::Cuda));
            }
            // Asked for CUDA outright: a fallback is worth a warning. `auto` expects either.
            Err(e) if spec.device == Device::Cuda => tracing::warn!(
                error = %e,
                cuda_device_id = spec.cuda_device_id,
                "CUDA execution provider unavailable; falling back to CPU"
            ),
            Err(e) => tracing::info!(
                reason = %e,
                "model.device auto: CUDA is not available, running on CPU"
            ),
        },
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
    let builder = || -> Result<SessionBuilder, InferenceError> {
        let mut builder = Session::builder(&runtime.environment)
            .map_err(|e| load_error(e.to_string()))?
            // 0 lets ORT pick one thread per physical core.
            .with_intra_threads(spec.intra_op_threads)
            .map_err(|e| load_error(e.to_string()))?;
        if let Some(cores) = &spec.intra_op_affinity {
            builder = builder
                .with_config_entry("session.intra_op_thread_affinities", cores)
                .map_err(|e| load_error(format!("intra-op thread affinity {cores}: {e}")))?;
        }
        if cuda {
            // The device's memory only matters for the tuned arena limit.
            let memory = spec
                .gpu_optimization
                .then(|| super::cuda::device_memory(spec.cuda_device_id))
                .flatten();
            let tuning = CudaTuning::new(spec.cuda_device_id, spec.gpu_optimization, memory);
            builder = super::cuda::register(builder, tuning).map_err(load_error)?;
        }
        Ok(builder)
    };
    let device = if cuda { Device::Cuda } else { Device::Cpu };
    let plan = compile_plan(spec.compile, path, device);
    match commit(builder()?, &plan).map_err(load_error) {
        // A cached graph that no longer loads (a newer ONNX Runtime, a damaged file) is
        // dropped and the model optimized again.
        Err(e) if plan.read_from != path => {
            tracing::warn!(error = %e, cache = %plan.read_from.display(), "cached optimized model dropped");
            let _ = std::fs::remove_file(&plan.read_from);
            let plan = compile_plan(spec.compile, path, device);
            commit(builder()?, &plan).map_err(load_error)
        }
        other => other,
    }
}

/// Makes the session `plan` describes, and puts its optimized graph in the cache.
fn commit(builder: SessionBuilder, plan: &CompilePlan) -> Result<Session, String> {
    let mut builder = builder
        .with_optimization_level(plan.level)
        .map_err(|e| e.to_string())?;
    if let Some(write) = &plan.write_to {
        builder = builder
            .with_optimized_model_path(write)
            .map_err(|e| e.to_string())?;
    }
    let session = builder.commit_from_file(&plan.read_from).map_err(|e| {
        if let Some(write) = &plan.write_to {
            let _ = std::fs::remove_file(write);
        }
        e.to_string()
    })?;
    if let (Some(write), Some(cache)) = (&plan.write_to, &plan.cache) {
        // Renamed into place only once whole, so another loader never reads half a graph.
        if let Err(e) = std::fs::rename(write, cache) {
            tracing::info!(error = %e, cache = %cache.display(), "optimized model not cached");
        }
    }
    Ok(session)
}

/// Where a session's graph comes from and goes to.
struct CompilePlan {
    level: GraphOptimizationLevel,
    /// The file to load: the model, or its cached optimized graph.
    read_from: PathBuf,
    /// Where ONNX Runtime writes the optimized graph (a temporary name beside the cache).
    write_to: Option<PathBuf>,
    /// The cache file `write_to` becomes.
    cache: Option<PathBuf>,
}

/// Compilation off: no graph optimization. On: the cached optimized graph of this exact file
/// (size and modification time in its name) and device when there is one, loaded without
/// optimizing again; else full optimization, saved for the next load. A cache directory that
/// cannot be made (a read-only registry) only costs the saving.
fn compile_plan(compile: bool, model: &Path, device: Device) -> CompilePlan {
    let plain = |level| CompilePlan {
        level,
        read_from: model.to_path_buf(),
        write_to: None,
        cache: None,
    };
    if !compile {
        return plain(GraphOptimizationLevel::Disable);
    }
    let Some(cache) = cache_path(model, device) else {
        return plain(GraphOptimizationLevel::Level3);
    };
    if cache.is_file() {
        return CompilePlan {
            level: GraphOptimizationLevel::Disable,
            read_from: cache,
            write_to: None,
            cache: None,
        };
    }
    let made = cache
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok());
    if !made {
        return plain(GraphOptimizationLevel::Level3);
    }
    // Unique per load: two registries in one process may optimize the same file at once.
    static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let write_to = cache.with_extension(format!("tmp-{}-{n}", std::process::id()));
    CompilePlan {
        level: GraphOptimizationLevel::Level3,
        read_from: model.to_path_buf(),
        write_to: Some(write_to),
        cache: Some(cache),
    }
}

/// `<dir>/.optimized/<stem>-<size>-<mtime ns>-<device>.onnx`: a changed file or another device
/// never reads an old graph (the hidden directory is invisible to registry scans). A CPU graph
/// with layout optimizations only runs on CPUs with the same vector extensions, so the CPU's
/// widest one is part of the device tag (a registry on a volume shared by unlike nodes).
fn cache_path(model: &Path, device: Device) -> Option<PathBuf> {
    let meta = std::fs::metadata(model).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let stem = model.file_stem()?.to_str()?;
    let tag = match device {
        Device::Cpu => format!("cpu-{}", cpu_extensions()),
        other => other.as_str().to_owned(),
    };
    let name = format!("{stem}-{}-{mtime}-{tag}.onnx", meta.len());
    Some(model.parent()?.join(".optimized").join(name))
}

/// The widest vector extension ONNX Runtime's CPU kernels may have been laid out for.
fn cpu_extensions() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    std::env::consts::ARCH
}

/// Reads the request contract from the ONNX file: every input and output, each a tensor of a
/// supported element type whose first dimension is the batch.
fn read_signature(session: &Session) -> Result<Signature, InferenceError> {
    if session.inputs().is_empty() {
        return Err(InferenceError::ModelMismatch("model has no inputs".into()));
    }
    if session.outputs().is_empty() {
        return Err(InferenceError::ModelMismatch("model has no outputs".into()));
    }
    let inputs = session
        .inputs()
        .iter()
        .map(|i| spec("input", i.name(), i.dtype()))
        .collect::<Result<_, _>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| spec("output", o.name(), o.dtype()))
        .collect::<Result<_, _>>()?;
    Ok(Signature { inputs, outputs })
}

/// One input or output: its element type, and its dimensions after the batch dimension (fixed,
/// or dynamic where the file names a symbol or -1; zero-sized ones are refused).
fn spec(role: &str, name: &str, dtype: &ValueType) -> Result<TensorSpec, InferenceError> {
    let mismatch = |what: String| InferenceError::ModelMismatch(format!("{role} {name:?}: {what}"));
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(mismatch(format!("expected a tensor, found {dtype}")));
    };
    let dtype = match ty {
        TensorElementType::Float32 => DType::Float32,
        TensorElementType::Float64 => DType::Float64,
        TensorElementType::Int32 => DType::Int32,
        TensorElementType::Int64 => DType::Int64,
        other => {
            return Err(mismatch(format!(
                "element type {other} is not served (float32, float64, int32, int64 are)"
            )))
        }
    };
    if shape.len() < 2 {
        return Err(mismatch(format!(
            "declares shape {shape:?}; expected [batch, ...] with at least one dimension per row"
        )));
    }
    let dims = shape[1..]
        .iter()
        .map(|&d| match d {
            d if d < 0 => Ok(Dim::Dynamic),
            0 => Err(mismatch(format!(
                "declares shape {shape:?}; a zero-sized dimension holds no data"
            ))),
            d => Ok(Dim::Fixed(d as usize)),
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorSpec::new(name, dtype, dims))
}

#[cfg(test)]
#[path = "ort_backend_tests.rs"]
mod tests;
