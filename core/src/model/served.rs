//! One model version that takes traffic: its signature, its per-model batching overrides and the
//! ONNX Runtime sessions the inference workers borrow to run its batches.
//!
//! Invariants: a `ServedModel` holds one session per inference worker, so a worker holding a
//! batch of it always finds a free session (at most one batch per worker is in flight); the
//! sessions are dropped (the version unloaded) only when the last request, batch and routing
//! table that refer to it are gone; a retired version is never routed to again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Backend, ModelId, ModelInfo};

/// Batching settings one model overrides (`model.yaml`'s `batching`); `None` keeps the
/// service-wide value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelBatching {
    /// Largest batch of this model.
    pub max_batch_size: Option<usize>,
    /// How long a partial batch of this model waits, per tier of its oldest request (ms).
    pub tier_wait_ms: TierWaits,
}

/// Per-tier batch waits in milliseconds; a missing tier keeps the service-wide wait.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierWaits {
    pub critical: Option<f64>,
    pub high: Option<f64>,
    pub normal: Option<f64>,
    pub low: Option<f64>,
}

impl TierWaits {
    /// The overrides in tier order (critical first).
    pub fn in_order(&self) -> [Option<f64>; 4] {
        [self.critical, self.high, self.normal, self.low]
    }
}

/// A loaded, warmed-up model version.
pub struct ServedModel {
    info: ModelInfo,
    batching: ModelBatching,
    /// Measured by the first session (`Backend::activation_bytes_per_row`).
    activation_bytes_per_row: Option<u64>,
    /// Idle sessions; a worker takes one for a batch and puts it back after.
    sessions: Mutex<Vec<Box<dyn Backend>>>,
    retired: AtomicBool,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.info.id)
            .field("retired", &self.is_retired())
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    /// A version served by `sessions` (one per inference worker, all of the same file); `None`
    /// when there is none.
    pub fn new(sessions: Vec<Box<dyn Backend>>, batching: ModelBatching) -> Option<Self> {
        let first = sessions.first()?;
        let info = first.info().clone();
        let activation_bytes_per_row = first.activation_bytes_per_row();
        Some(Self {
            info,
            batching,
            activation_bytes_per_row,
            sessions: Mutex::new(sessions),
            retired: AtomicBool::new(false),
        })
    }

    /// A model without sessions: names the model in replies to requests that never run (an
    /// unknown model while nothing else is routable). A worker handed one fails the batch.
    pub fn unloaded(info: ModelInfo) -> Self {
        Self {
            info,
            batching: ModelBatching::default(),
            activation_bytes_per_row: None,
            sessions: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        }
    }

    /// This version with `batching` as its overrides.
    pub fn with_batching(mut self, batching: ModelBatching) -> Self {
        self.batching = batching;
        self
    }

    pub fn id(&self) -> &ModelId {
        &self.info.id
    }

    /// Working memory one more row of a batch takes (measured at load), if known.
    pub fn activation_bytes_per_row(&self) -> Option<u64> {
        self.activation_bytes_per_row
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn batching(&self) -> &ModelBatching {
        &self.batching
    }

    /// An idle session for one batch; give it back with `put_back`.
    pub fn take_session(&self) -> Option<Box<dyn Backend>> {
        self.lock().pop()
    }

    pub fn put_back(&self, session: Box<dyn Backend>) {
        self.lock().push(session);
    }

    /// Stops routing to this version: the registry removed it or a newer file replaced it.
    /// What it already holds still runs.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Backend>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ServedModel {
    fn drop(&mut self) {
        let sessions = self.lock().len();
        if sessions > 0 {
            tracing::info!(model = %self.info.id, sessions, "model version unloaded");
        }
    }
}
