//! CPU affinity (`resource_management.cpu_affinity_enabled`): the inference threads run on cores
//! of their own and everything else (the async runtime, the Kafka clients' threads, the loader)
//! on the rest, so a batch in flight never competes with the poll loop, the batcher or the
//! replies for a core, and neither side migrates across the other's caches.
//!
//! Invariant: a plan is made only when both sides get at least one core, from the cores this
//! process may use (its affinity mask: a cgroup cpuset or `taskset` is respected); the two sets
//! never overlap. Without a plan nothing is pinned.
//!
//! Who lands where: `pin_process` moves every thread that exists when serving starts (the async
//! runtime's workers, the main thread) onto the I/O cores; threads created later inherit their
//! creator's mask, so the Kafka clients' threads and the async runtime's blocking threads stay
//! there too. Each inference worker thread pins itself to the inference cores as it starts, and
//! ONNX Runtime's own intra-op threads are placed there by the session option
//! `session.intra_op_thread_affinities` (`ort_intra_op_affinities`).

use std::fmt;

/// Which cores each side runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorePlan {
    /// Inference worker threads and ONNX Runtime's intra-op threads.
    pub inference: Vec<usize>,
    /// Everything else.
    pub io: Vec<usize>,
}

/// Why no plan was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AffinityError {
    #[error("{0} usable core(s): pinning needs one for inference and one for Kafka I/O")]
    TooFewCores(usize),
    #[error("reading this process's CPU affinity failed: {0}")]
    Read(String),
    #[error("setting CPU affinity of thread {tid} failed: {reason}")]
    Set { tid: i32, reason: String },
}

impl CorePlan {
    /// Splits `allowed` (ascending core ids): the first `inference_threads` cores, but at most
    /// all but one, go to inference; the rest to I/O.
    pub fn split(allowed: &[usize], inference_threads: usize) -> Result<Self, AffinityError> {
        if allowed.len() < 2 {
            return Err(AffinityError::TooFewCores(allowed.len()));
        }
        let n = inference_threads.clamp(1, allowed.len() - 1);
        Ok(Self {
            inference: allowed[..n].to_vec(),
            io: allowed[n..].to_vec(),
        })
    }

    /// The value of ONNX Runtime's `session.intra_op_thread_affinities` for a session of
    /// `intra_op_threads`: one entry per thread ORT creates (the caller's thread is the
    /// remaining one), each the inference cores, as 1-based processor ids.
    pub fn ort_intra_op_affinities(&self, intra_op_threads: usize) -> Option<String> {
        let extra = intra_op_threads.checked_sub(1).filter(|&n| n > 0)?;
        let one: Vec<String> = self.inference.iter().map(|c| (c + 1).to_string()).collect();
        Some(vec![one.join(","); extra].join(";"))
    }
}

impl fmt::Display for CorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inference on cores {:?}, Kafka I/O and the rest on {:?}",
            self.inference, self.io
        )
    }
}

/// The cores the calling thread may run on, ascending (at start: the process's mask).
pub fn allowed_cores() -> Result<Vec<usize>, AffinityError> {
    // SAFETY: `set` is a plain bit set owned here; sched_getaffinity writes at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(AffinityError::Read(
                std::io::Error::last_os_error().to_string(),
            ));
        }
        set
    };
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the set's size in bits.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the thread `tid` (0: the calling thread) to `cores`.
fn pin(tid: i32, cores: &[usize]) -> Result<(), AffinityError> {
    // SAFETY: `set` is a plain bit set owned here; every core id comes from `allowed_cores`,
    // below CPU_SETSIZE.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(AffinityError::Set {
            tid,
            reason: std::io::Error::last_os_error().to_string(),
        })
    }
}

/// Pins the calling thread to `cores`.
pub fn pin_current_thread(cores: &[usize]) -> Result<(), AffinityError> {
    pin(0, cores)
}

/// Pins every thread of this process that exists now to `cores` (threads they create later
/// inherit it). A thread that ends meanwhile is skipped. Returns how many were pinned.
pub fn pin_process(cores: &[usize]) -> Result<usize, AffinityError> {
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|e| AffinityError::Read(format!("/proc/self/task: {e}")))?;
    let mut pinned = 0;
    for entry in tasks.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        match pin(tid, cores) {
            Ok(()) => pinned += 1,
            // ESRCH: the thread ended between the listing and the call.
            Err(_) if !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pinned)
}

#[cfg(test)]
#[path = "affinity_tests.rs"]
mod tests;
