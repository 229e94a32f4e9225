//! kbatch's configuration: built-in defaults (those of the service kbatch replaces) → YAML/TOML
//! file → profile → environment (`KBATCH_...`, and the plain variables that service's
//! deployments set, such as `BATCH_TIMEOUT_MS`) → command-line overrides.
//!
//! Invariant: a `Config` handed out by [`load`] has passed every range and cross-field rule of
//! [`validate`]; errors name the field and the source (file, variable) that set it.

mod http;
mod kafka;
mod load;
pub mod model;
pub mod reload;
mod sections;
mod security;
#[cfg(test)]
mod tests;
mod validate;
pub mod wire;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use http::HttpConfig;
pub use kafka::{
    AssignmentStrategy, Delivery, GroupProtocol, KafkaConfig, RepliesConfig, TierTopics,
};
pub use load::{load, LoadOptions, Loaded, PROFILES};
pub use model::{Device, ModelConfig, ModelRegistryConfig, RegistryType, SingleFile};
pub use sections::{
    AdaptiveBatching, BatchProcessing, Deduplication, LogFormat, Logging, OptimizationTarget,
    PerformanceMonitoring, PriorityQueueing, QueueFull, ResourceManagement, StrategyKind,
};
pub use security::{
    is_sensitive_property, redacted, resolve_secrets, RateLimit, Secret, SecurityConfig,
    TierAccess, TierAccessConfig, REDACTED,
};
pub use validate::{validate, Issue};
pub use wire::{Framing, WireConfig};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub batch_processing: BatchProcessing,
    pub adaptive_batching: AdaptiveBatching,
    pub priority_queueing: PriorityQueueing,
    pub deduplication: Deduplication,
    pub resource_management: ResourceManagement,
    pub performance_monitoring: PerformanceMonitoring,
    pub logging: Logging,
    pub kafka: KafkaConfig,
    pub replies: RepliesConfig,
    pub model: ModelConfig,
    pub model_registry: ModelRegistryConfig,
    pub wire: WireConfig,
    pub http: HttpConfig,
    pub security: SecurityConfig,
}

/// Top-level section names; `KBATCH_` variables outside them are not configuration.
pub const SECTIONS: [&str; 14] = [
    "batch_processing",
    "adaptive_batching",
    "priority_queueing",
    "deduplication",
    "resource_management",
    "performance_monitoring",
    "logging",
    "kafka",
    "replies",
    "model",
    "model_registry",
    "wire",
    "http",
    "security",
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(std::path::PathBuf),
    #[error("unknown profile `{name}` (looked for {path}); known profiles: {known}")]
    UnknownProfile {
        name: String,
        path: std::path::PathBuf,
        known: String,
    },
    #[error("invalid override `{0}`: expected key.path=value")]
    BadOverride(String),
    #[error("{0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}
