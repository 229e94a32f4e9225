//! `kbatch bench-model`: the raw ONNX Runtime throughput of the configured model, per batch size,
//! with no Kafka, no batcher and no copies: the ceiling the serving pipeline is measured against
//! (scripts/bench.sh `ratio` runs it beside a drain).
//!
//! Invariant: every batch size runs on the same fixed-seed input for the same wall time after a
//! warm-up, one backend at a time, so figures of one run are comparable with each other.

use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::BenchError;
use crate::source::ConfigSource;
use kbatch_core::inference::load_backend;

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
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One batch size's result.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPoint {
    pub batch: usize,
    pub calls: u64,
    pub items_per_s: f64,
    pub median_batch_us: f64,
}

/// Measures every batch size; prints a table and returns the points.
pub fn run_model_bench(args: &ModelBenchArgs) -> Result<Vec<ModelPoint>, BenchError> {
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
    let mut backend =
        load_backend(&model).map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
    let row = backend.info().input_len();
    let max = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(SEED);
    let input: Vec<f32> = (0..max * row)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut out = Vec::new();
    let mut points = Vec::with_capacity(args.batch_sizes.len());
    println!(
        "raw ONNX Runtime, {} intra-op thread(s), {} ({:?})",
        model.intra_op_threads, model.file, model.device
    );
    println!(
        "{:>6} {:>10} {:>12} {:>14}",
        "batch", "calls", "items/s", "median µs"
    );
    for &batch in &args.batch_sizes {
        let rows = &input[..batch * row];
        let mut infer = |out: &mut Vec<f32>| {
            backend
                .infer(rows, batch, out)
                .map_err(|e| BenchError::InvalidArgument(e.to_string()))
        };
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
        };
        println!(
            "{:>6} {:>10} {:>12.0} {:>14.1}",
            p.batch, p.calls, p.items_per_s, p.median_batch_us
        );
        points.push(p);
    }
    if let Some(best) = points
        .iter()
        .max_by(|a, b| a.items_per_s.total_cmp(&b.items_per_s))
    {
        println!(
            "best: batch {} at {:.0} items/s",
            best.batch, best.items_per_s
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&points)
            .map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| BenchError::InvalidArgument(format!("{}: {e}", path.display())))?;
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(batch_sizes: Vec<usize>) -> ModelBenchArgs {
        ModelBenchArgs {
            source: ConfigSource {
                overrides: vec![format!(
                    "model.registry_path={}/models",
                    env!("CARGO_MANIFEST_DIR")
                )],
                ..ConfigSource::default()
            },
            batch_sizes,
            threads: Some(1),
            seconds: 0.05,
            json: None,
        }
    }

    #[test]
    fn every_batch_size_runs_the_real_model_and_reports_its_rate() {
        let points = run_model_bench(&args(vec![1, 4])).expect("bench");
        assert_eq!(points.iter().map(|p| p.batch).collect::<Vec<_>>(), [1, 4]);
        for p in &points {
            assert!(p.calls > 0 && p.items_per_s > 0.0, "{p:?}");
            // items/s is calls x batch over the measured time, which covers the median call.
            let bound = 1e6 / p.median_batch_us * p.batch as f64;
            assert!(p.items_per_s <= bound * 1.05, "{p:?} vs {bound}");
        }
    }

    #[test]
    fn a_zero_batch_is_refused_before_the_model_loads() {
        let err = run_model_bench(&args(vec![8, 0])).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
