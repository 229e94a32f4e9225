//! Inference: the ONNX Runtime backend (`model::Backend` over an ONNX Runtime session) and the
//! worker threads that run batches on the sessions of the model each batch was routed to.
//!
//! Invariant: a backend only ever sees batches that passed `ModelInfo::check_input`; a failed
//! batch fails only its own requests.

pub mod activations;
pub mod cuda;
pub mod isolate;
mod ort_backend;
pub mod runtime;
mod worker;

pub use self::ort_backend::{LoadSpec, OrtBackend};
pub use self::worker::{spawn_workers, WorkerOutputs, WorkerReport};
pub use crate::model::{Backend, InferenceError, ModelInfo};

/// Builds the backend `spec` asks for.
pub fn load_backend(spec: &LoadSpec) -> Result<Box<dyn Backend>, InferenceError> {
    Ok(Box::new(OrtBackend::new(spec)?))
}
