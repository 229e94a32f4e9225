//! Why `serve` could not start or stopped early.
//!
//! Invariant: each variant wraps the typed error of the layer that failed (or names the stage
//! whose task failed), so callers can tell a bad model from a broker fault without parsing text.

use thiserror::Error;

use crate::inference::InferenceError;
use crate::kafka::KafkaError;
use crate::registry::RegistryError;
use crate::telemetry::TelemetryError;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("cannot load the model: {0}")]
    Inference(#[from] InferenceError),
    #[error("cannot serve the models: {0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("cannot start inference threads: {0}")]
    Threads(#[from] std::io::Error),
    /// A stage's task panicked or was cancelled.
    #[error("the {stage} task failed: {source}")]
    Task {
        stage: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl AppError {
    /// A `map_err` for joining the task of `stage`.
    pub(super) fn task(stage: &'static str) -> impl FnOnce(tokio::task::JoinError) -> AppError {
        move |source| AppError::Task { stage, source }
    }
}
