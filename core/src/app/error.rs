//! Why `serve` could not start or stopped early.

use thiserror::Error;

use crate::inference::InferenceError;
use crate::kafka::KafkaError;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("cannot load the model: {0}")]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("cannot start inference threads: {0}")]
    Threads(#[from] std::io::Error),
    #[error("a pipeline task failed: {0}")]
    Task(String),
    #[error("cannot build the metrics registry: {0}")]
    Metrics(String),
    #[error("HTTP endpoint: {0}")]
    Http(String),
}
