//! `kbatch bench-model`: the raw ONNX Runtime throughput of the configured model, per batch size,
//! with no Kafka, no batcher and no copies: the ceiling the serving pipeline is measured against
//! (scripts/bench.sh `ratio` runs it beside a drain and reads its `--json` report).
//!
//! Invariant: every batch size runs on the same fixed-seed input for the same wall time after a
//! warm-up, one backend at a time, so figures of one run are comparable with each other.

use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::BenchError;
use crate::output::ReportArgs;
use crate::source::ConfigSource;
use kbatch_core::config::Device;
use kbatch_core::inference::{load_backend, LoadSpec};
use kbatch_core::model::{stack_rows, zero_sample, BatchTensor, Signature};
use kbatch_core::registry::default_model_file;
use kbatch_core::telemetry::table::{Grid, Table};
use kbatch_core::tensor::{Tensor, TensorData};

const SEED: u64 = 0x6b62_6174_6368;

/// `kbatch bench-model` arguments.
#[derive(Debug, Clone, Args)]
pub struct ModelBenchArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Batch sizes to run, comma-separated.
    #[arg(long, default_value = "1,8,16,32,64,128,256", value_delimiter = ',')]
    pub batch_sizes: Vec<usize>,
    /// Intra-op threads (default: `model.intra_op_threads` from the configuration).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds of measurement per batch size (after a warm-up as long, at most one second).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// The final report: a table on stdout, or JSON (`--json`), and a JSON file (`--report`).
    #[command(flatten)]
    pub output: ReportArgs,
}

/// One batch size's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPoint {
    pub batch: usize,
    pub calls: u64,
    pub items_per_s: f64,
    pub median_batch_us: f64,
    /// The first call at this batch size, before any other: includes what ONNX Runtime does once
    /// per input shape (on CUDA, cuDNN's convolution-algorithm search).
    pub first_call_us: f64,
}

/// What `kbatch bench-model` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelBenchReport {
    /// The model file.
    pub model: String,
    /// The device the session runs on (after a CUDA fallback: CPU, whatever was configured).
    pub device: Device,
    /// Working memory one more row takes (ONNX Runtime's arena growth per row, measured at
    /// load; what the `memory` batching strategy counts), when the arena reports it.
    pub activation_bytes_per_row: Option<u64>,
    pub intra_op_threads: usize,
    /// `resource_management.enable_model_compilation` as run.
    pub compiled: bool,
    /// Time to load the model: session creation (graph optimization, or reading the cached
    /// optimized graph) and its warm-up batches, in milliseconds.
    pub load_ms: f64,
    /// Measured seconds per batch size (after as long a warm-up, at most one second).
    pub seconds: f64,
    /// One point per batch size, in the order asked.
    pub points: Vec<ModelPoint>,
    /// The point with the most items per second.
    pub best: Option<ModelPoint>,
}

impl ModelBenchReport {
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.section("raw ONNX Runtime")
            .row("model", &self.model)
            .row("device", self.device.as_str())
            .row("intra-op threads", self.intra_op_threads)
            .row(
                "graph optimization",
                if self.compiled {
                    "full, cached on disk"
                } else {
                    "off"
                },
            )
            .row(
                "load (session + warm-up)",
                format!("{:.0} ms", self.load_ms),
            )
            .row(
                "working memory per row",
                self.activation_bytes_per_row
                    .map_or_else(|| "not measured".to_string(), |b| format!("{b} bytes")),
            )
            .row("seconds per batch size", self.seconds);
        let mut g = Grid::new(["batch", "calls", "items/s", "median µs", "first call µs"]);
        for p in &self.points {
            g.row([
                p.batch.to_string(),
                p.calls.to_string(),
                format!("{:.0}", p.items_per_s),
                format!("{:.1}", p.median_batch_us),
                format!("{:.1}", p.first_call_us),
            ]);
        }
        t.section("per batch size").grid(g);
        if let Some(b) = &self.best {
            t.section("best")
                .row("batch", b.batch)
                .row("items/s", format!("{:.0}", b.items_per_s));
        }
        t
    }
}

/// Measures every batch size (a progress line per size on stderr) and returns the report.
pub fn run_model_bench(args: &ModelBenchArgs) -> Result<ModelBenchReport, BenchError> {
    let loaded = kbatch_core::config::load(&args.source.load_options())?;
    let mut model = loaded.config.model.clone();
    if let Some(t) = args.threads {
        model.intra_op_threads = t;
    }
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        return Err(BenchError::InvalidArgument(
            "batch sizes must be positive".into(),
        ));
    }
    let (id, path) = default_model_file(&loaded.config)
        .map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
    let mut spec = LoadSpec::new(&model, id.clone(), path.clone());
    spec.compile = loaded.config.resource_management.enable_model_compilation;
    spec.gpu_optimization = loaded.config.resource_management.enable_gpu_optimization;
    spec.cleanup_interval = loaded.config.resource_management.cleanup_interval();
    let load_started = Instant::now();
    let mut backend =
        load_backend(&spec).map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let max = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let requests = random_requests(&backend.info().signature, max);
    let mut out = Vec::new();
    let mut inputs = Vec::new();
    let mut points = Vec::with_capacity(args.batch_sizes.len());
    for &batch in &args.batch_sizes {
        let rows = stack_rows(requests[..batch].iter().map(Vec::as_slice), &mut inputs);
        let mut infer = |out: &mut Vec<BatchTensor>| {
            backend
                .infer(&inputs, rows, out)
                .map_err(|e| BenchError::InvalidArgument(e.to_string()))
        };
        let first = Instant::now();
        infer(&mut out)?;
        let first_call_us = first.elapsed().as_secs_f64() * 1e6;
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_secs_f64(args.seconds.min(1.0)) {
            infer(&mut out)?;
        }
        let mut times = Vec::new();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < args.seconds {
            let t = Instant::now();
            infer(&mut out)?;
            times.push(t.elapsed());
        }
        let total = start.elapsed().as_secs_f64();
        times.sort_unstable();
        let p = ModelPoint {
            batch,
            calls: times.len() as u64,
            items_per_s: (times.len() * batch) as f64 / total,
            median_batch_us: times[times.len() / 2].as_secs_f64() * 1e6,
            first_call_us,
        };
        eprintln!("batch {:>4}: {:.0} items/s", p.batch, p.items_per_s);
        points.push(p);
    }
    let best = points
        .iter()
        .max_by(|a, b| a.items_per_s.total_cmp(&b.items_per_s))
        .cloned();
    Ok(ModelBenchReport {
        model: format!("{id} ({})", path.display()),
        device: backend.info().device,
        activation_bytes_per_row: backend.activation_bytes_per_row(),
        intra_op_threads: model.intra_op_threads,
        compiled: spec.compile,
        load_ms,
        seconds: args.seconds,
        points,
        best,
    })
}

/// `n` requests for a model of `signature`: float inputs uniform in [-1, 1), integer inputs 0
/// (an index every embedding table has), dynamic dimensions 1.
fn random_requests(signature: &Signature, n: usize) -> Vec<Vec<Tensor>> {
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..n)
        .map(|_| {
            let mut tensors = zero_sample(signature);
            for t in &mut tensors {
                match &mut t.data {
                    TensorData::F32(v) => {
                        v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0))
                    }
                    TensorData::F64(v) => {
                        v.iter_mut().for_each(|x| *x = rng.random_range(-1.0..1.0))
                    }
                    TensorData::I32(_) | TensorData::I64(_) => {}
                }
            }
            tensors
        })
        .collect()
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
