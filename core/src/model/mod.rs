//! Models as the pipeline sees them: a model's identity, its signature, the `Backend` seam to a
//! runtime, and `ServedModel`, a loaded version with the sessions that run it.
//!
//! Invariant: nothing here knows ONNX Runtime or Kafka; the inference layer implements
//! `Backend`, the registry decides which `ServedModel`s take traffic, and every admitted request
//! carries the one it was routed to, so batches, replies and metrics name the version that ran.

mod backend;
mod error;
mod id;
mod info;
mod served;
mod warmup;

pub use backend::{stack_rows, Backend, BatchTensor};
pub use error::InferenceError;
pub use id::ModelId;
pub use info::{ModelInfo, Signature};
pub use served::{ModelBatching, ServedModel, TierWaits};
pub use warmup::{parse_samples, zeros as zero_sample, WarmupSample};
