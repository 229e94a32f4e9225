//! Resource readings for the adaptive controller (and later the metrics): host memory in use as a
//! fraction of the limit that binds this process (its cgroup v2 `memory.max` when one is set,
//! else the machine's total), the process's resident set, and on a CUDA model the GPU's
//! utilization and memory from `nvidia-smi`.
//!
//! Invariants: a reading that cannot be taken is `None`, never a guess (the controller then
//! ignores it); the sampler never blocks the runtime (procfs reads are tiny, `nvidia-smi` runs as
//! a child process under a timeout); a GPU probe that fails once is not retried, so a host
//! without the tool pays for one failed spawn, not one per period.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

/// One reading; fractions are in 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Utilization {
    /// Host memory used / the binding limit (cgroup or machine).
    pub host_memory: Option<f64>,
    /// GPU memory used / total.
    pub gpu_memory: Option<f64>,
    /// GPU compute utilization (`utilization.gpu`).
    pub gpu: Option<f64>,
    /// This process's resident set.
    pub rss_bytes: Option<u64>,
}

impl Utilization {
    /// What bounds batch size: the fuller of host and GPU memory (a batch's tensors live in the
    /// GPU's memory on CUDA, in the host's on CPU).
    pub fn memory(&self) -> Option<f64> {
        match (self.host_memory, self.gpu_memory) {
            (Some(h), Some(g)) => Some(h.max(g)),
            (h, g) => h.or(g),
        }
    }
}

/// `(MemTotal, MemAvailable)` in bytes, from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kb| kb * 1024.0)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Where this process's memory cgroup lives, from `/proc/self/cgroup`: the v2 path (`0::`)
/// when there is one, else the v1 `memory` controller's. `true` means v2.
pub fn parse_cgroup_path(text: &str) -> Option<(&str, bool)> {
    let v1 = text.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    match v1 {
        Some(path) => Some((path, false)),
        None => text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| (p, true)),
    }
}

/// `(usage, limit)` in bytes from a cgroup's two files; `None` without a limit (v2's `max`).
pub fn cgroup_usage(current: &str, limit: &str) -> Option<(f64, f64)> {
    let current: f64 = current.trim().parse().ok()?;
    let limit: f64 = limit.trim().parse().ok()?;
    (limit > 0.0).then_some((current, limit))
}

/// The fraction of the binding limit in use: the cgroup's when it is below the machine's memory
/// (v1 writes "no limit" as a huge number), else the machine's.
pub fn memory_fraction(machine: Option<(f64, f64)>, cgroup: Option<(f64, f64)>) -> Option<f64> {
    let total = machine.map(|(t, _)| t).unwrap_or(f64::INFINITY);
    match (cgroup, machine) {
        (Some((used, limit)), _) if limit < total => Some(used / limit),
        (_, Some((t, available))) if t > 0.0 => Some((t - available) / t),
        _ => None,
    }
    .map(|f| f.clamp(0.0, 1.0))
}

/// `VmRSS` from `/proc/self/status`, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// One line of `nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total
/// --format=csv,noheader,nounits`: (utilization, memory fraction).
pub fn parse_nvidia_smi(line: &str) -> Option<(f64, f64)> {
    let mut fields = line.trim().split(',').map(|f| f.trim().parse::<f64>().ok());
    let util = fields.next()??;
    let used = fields.next()??;
    let total = fields.next()??;
    (total > 0.0).then(|| {
        (
            (util / 100.0).clamp(0.0, 1.0),
            (used / total).clamp(0.0, 1.0),
        )
    })
}

/// Which CUDA device the served models run on now (`None`: none runs on a GPU, for instance
/// after a fallback to CPU), asked at every sample.
#[derive(Clone)]
pub struct GpuInUse(Arc<dyn Fn() -> Option<i32> + Send + Sync>);

impl GpuInUse {
    pub fn new(probe: impl Fn() -> Option<i32> + Send + Sync + 'static) -> Self {
        Self(Arc::new(probe))
    }

    /// No GPU, ever.
    pub fn none() -> Self {
        Self::new(|| None)
    }

    fn device(&self) -> Option<i32> {
        (self.0)()
    }
}

impl std::fmt::Debug for GpuInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GpuInUse").field(&self.device()).finish()
    }
}

/// Where the readings come from; the roots are parameters so tests can point them at fixtures.
#[derive(Debug, Clone)]
pub struct Sources {
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    /// The CUDA device to query: the one the served models actually run on, not the configured
    /// `model.device` (a CUDA fallback to CPU stops the GPU readings).
    pub gpu: GpuInUse,
}

impl Sources {
    /// The host's procfs and cgroup files, and the GPU `gpu` names.
    pub fn host_with(gpu: GpuInUse) -> Self {
        Self {
            proc_root: "/proc".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            gpu,
        }
    }

    /// Host memory fraction and resident set, from procfs and the cgroup files.
    pub fn host(&self) -> (Option<f64>, Option<u64>) {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let rss = read(&self.proc_root.join("self/status")).and_then(|s| parse_rss(&s));
        let cgroup = read(&self.proc_root.join("self/cgroup")).and_then(|text| {
            let (path, v2) = parse_cgroup_path(&text)?;
            let (root, files) = match v2 {
                true => (self.cgroup_root.clone(), ["memory.current", "memory.max"]),
                false => (
                    self.cgroup_root.join("memory"),
                    ["memory.usage_in_bytes", "memory.limit_in_bytes"],
                ),
            };
            // Without a cgroup namespace the listed path is the host's, and the container
            // sees its own cgroup mounted at the root instead.
            [root.join(path.trim_start_matches('/')), root]
                .iter()
                .find_map(|dir| {
                    cgroup_usage(&read(&dir.join(files[0]))?, &read(&dir.join(files[1]))?)
                })
        });
        let machine = read(&self.proc_root.join("meminfo")).and_then(|s| parse_meminfo(&s));
        (memory_fraction(machine, cgroup), rss)
    }
}

/// Asks `nvidia-smi` about `device`; `Err` says why it cannot answer.
async fn query_gpu(device: i32) -> Result<(f64, f64), String> {
    let run = Command::new("nvidia-smi")
        .args([
            "--query-gpu=utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
            &format!("--id={device}"),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| "nvidia-smi took over 5 s".to_owned())?
        .map_err(|e| format!("nvidia-smi: {e}"))?;
    if !out.status.success() {
        return Err(format!("nvidia-smi exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(parse_nvidia_smi)
        .ok_or_else(|| format!("nvidia-smi printed {text:?}"))
}

/// Publishes a reading every `period` until `cancel`; the first one at once.
pub async fn run_sampler(
    sources: Sources,
    mut period: watch::Receiver<Duration>,
    tx: watch::Sender<Utilization>,
    cancel: CancellationToken,
) {
    const FLOOR: Duration = Duration::from_millis(100);
    // A device nvidia-smi could not answer for is not asked again (one warning, not one per tick).
    let mut unanswered: Option<i32> = None;
    let mut tick = crate::config::reload::ticker(*period.borrow_and_update(), FLOOR);
    let mut reloads = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = period.changed(), if reloads => {
                match changed {
                    Ok(()) => {
                        let every = *period.borrow_and_update();
                        tick = crate::config::reload::ticker(every, FLOOR);
                        tracing::info!(?every, "resource sampling period reloaded");
                    }
                    Err(_) => reloads = false,
                }
                continue;
            }
        }
        let (host_memory, rss_bytes) = sources.host();
        let mut reading = Utilization {
            host_memory,
            rss_bytes,
            ..Utilization::default()
        };
        if let Some(device) = sources.gpu.device().filter(|d| Some(*d) != unanswered) {
            match query_gpu(device).await {
                Ok((util, mem)) => {
                    reading.gpu = Some(util);
                    reading.gpu_memory = Some(mem);
                }
                Err(why) => {
                    tracing::warn!(%why, device, "GPU utilization unavailable; adapting without it");
                    unanswered = Some(device);
                }
            }
        }
        if tx.send(reading).is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
