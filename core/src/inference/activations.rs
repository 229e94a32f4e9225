//! How much working memory one row of a batch costs a session: the growth of ONNX Runtime's
//! arena peak (`MaxInUse` of the session's arena allocator, the activations and scratch buffers
//! of a run) between the largest warm-up batch and a batch of `MEASURE_ROWS` rows, per extra row.
//! The `memory` batching strategy counts it against `max_batch_memory_mb`.
//!
//! Invariant: a figure is reported only when the arena keeps statistics (an arena allocator on
//! the session's device) and the measuring batch ran; otherwise `None`, never a guess.

use std::ffi::CStr;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::AsPointer;

use crate::config::Device;

/// Rows of the measuring batch: twice the largest warm-up batch, so the arena must grow past
/// what the warm-up sized it for.
pub const MEASURE_ROWS: usize = 64;

/// The peak bytes in use of the session's arena on `device` since the session was made, if the
/// arena keeps statistics.
pub fn arena_peak(session: &Session, device: Device, device_id: i32) -> Option<u64> {
    let (where_, id) = match device {
        Device::Cuda => (AllocationDevice::CUDA, device_id),
        _ => (AllocationDevice::CPU, 0),
    };
    let info = MemoryInfo::new(where_, id, AllocatorType::Arena, MemoryType::Default).ok()?;
    let allocator = Allocator::new(session, info).ok()?;
    let api = ort::api();
    let mut pairs = std::ptr::null_mut();
    // SAFETY: `allocator` is a live allocator of `session`; on success ORT hands over `pairs`,
    // released below after its value is copied out; an error status is released here.
    unsafe {
        let status = (api.AllocatorGetStats)(allocator.ptr(), &mut pairs);
        if !status.0.is_null() {
            (api.ReleaseStatus)(status.0);
            return None;
        }
        if pairs.is_null() {
            return None;
        }
        let value = (api.GetKeyValue)(pairs, c"MaxInUse".as_ptr());
        let peak = (!value.is_null())
            .then(|| CStr::from_ptr(value).to_str().ok()?.parse().ok())
            .flatten();
        (api.ReleaseKeyValuePairs)(pairs);
        peak
    }
}

/// Bytes per row from two arena peaks: `before` after batches of at most `warmed_rows`, `after`
/// once a batch of `rows` ran. `None` when no row was added.
pub fn per_row(before: u64, after: u64, warmed_rows: usize, rows: usize) -> Option<u64> {
    let extra = rows.checked_sub(warmed_rows).filter(|&n| n > 0)?;
    Some(after.saturating_sub(before).div_ceil(extra as u64))
}

#[cfg(test)]
#[path = "activations_tests.rs"]
mod tests;
