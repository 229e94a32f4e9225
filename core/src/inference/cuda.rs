//! The CUDA execution provider's options (`resource_management.enable_gpu_optimization`): on,
//! what the predecessor's GPU settings named, set explicitly — TF32 matrix math, cuDNN's
//! exhaustive convolution benchmark, an arena that grows by what is asked instead of doubling,
//! and a memory limit of 80 % of the device (its `memory_fraction`); off, ONNX Runtime's own
//! defaults, untouched.
//!
//! Invariant: the options are a pure function of the flag and the device's memory, so they are
//! tested without a GPU; only `register` needs the `cuda` feature and a CUDA build of ONNX
//! Runtime.

use std::process::Command;

/// Share of the device's memory ONNX Runtime's CUDA arena may hold when tuned (the seeds'
/// `gpu_optimization.memory_fraction`).
pub const MEMORY_FRACTION: f64 = 0.8;

/// The CUDA execution provider's settings for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaTuning {
    pub device_id: i32,
    /// Set TF32 on (float32 matrix products and convolutions on tensor cores), cuDNN's
    /// exhaustive convolution search (every algorithm tried once per shape, the fastest kept)
    /// and an arena growing by the requested amount; `false`: ONNX Runtime's defaults.
    pub tuned: bool,
    /// Most bytes the arena may hold (`gpu_mem_limit`); `None`: no limit.
    pub memory_limit: Option<usize>,
}

impl CudaTuning {
    /// The settings for `device_id` with tuning `on`, given the device's memory in bytes when
    /// known.
    pub fn new(device_id: i32, on: bool, device_memory: Option<u64>) -> Self {
        Self {
            device_id,
            tuned: on,
            memory_limit: device_memory
                .filter(|_| on)
                .map(|m| (m as f64 * MEMORY_FRACTION) as usize),
        }
    }
}

/// The device's memory in bytes, from `nvidia-smi` (`None` when it cannot say).
pub fn device_memory(device_id: i32) -> Option<u64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.total",
            "--format=csv,noheader,nounits",
            &format!("--id={device_id}"),
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    parse_mib(&String::from_utf8_lossy(&out.stdout))
}

/// `nvidia-smi`'s `memory.total` in MiB, as bytes.
pub fn parse_mib(text: &str) -> Option<u64> {
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    mib.checked_mul(1024 * 1024)
}

/// Registers the CUDA execution provider with `tuning` on `builder`.
#[cfg(feature = "cuda")]
pub fn register(
    builder: ort::session::builder::SessionBuilder,
    tuning: CudaTuning,
) -> Result<ort::session::builder::SessionBuilder, String> {
    use ort::ep::cuda::ConvAlgorithmSearch;
    use ort::ep::ArenaExtendStrategy;
    let mut cuda = ort::ep::CUDA::default().with_device_id(tuning.device_id);
    if tuning.tuned {
        cuda = cuda
            .with_tf32(true)
            .with_conv_algorithm_search(ConvAlgorithmSearch::Exhaustive)
            .with_arena_extend_strategy(ArenaExtendStrategy::SameAsRequested);
    }
    if let Some(limit) = tuning.memory_limit {
        cuda = cuda.with_memory_limit(limit);
    }
    // error_on_failure: without it ort only logs and silently runs on CPU while we report CUDA.
    builder
        .with_execution_providers([cuda.build().error_on_failure()])
        .map_err(|e| format!("cannot register CUDA execution provider: {e}"))
}

/// Without the `cuda` feature there is no CUDA execution provider to register.
#[cfg(not(feature = "cuda"))]
pub fn register(
    _builder: ort::session::builder::SessionBuilder,
    _tuning: CudaTuning,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err("kbatch was built without the `cuda` cargo feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_follows_the_flag_and_limits_the_arena_to_80_percent() {
        let h200 = parse_mib("143771\n").unwrap();
        assert_eq!(h200, 143_771 * 1024 * 1024);
        let on = CudaTuning::new(0, true, Some(h200));
        assert!(on.tuned);
        assert_eq!(on.memory_limit, Some((h200 as f64 * 0.8) as usize));
        let off = CudaTuning::new(1, false, Some(h200));
        assert_eq!(
            off,
            CudaTuning {
                device_id: 1,
                tuned: false,
                memory_limit: None,
            }
        );
        assert_eq!(CudaTuning::new(0, true, None).memory_limit, None);
        assert_eq!(parse_mib("N/A"), None);
    }
}
