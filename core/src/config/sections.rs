//! The batching sections: basic, adaptive, priority, deduplication, resource and monitoring
//! parameters. Their names, units and defaults are those of the Python service kbatch replaces,
//! so its deployments' YAML sections load unchanged.
//!
//! Invariant: field names and units stay those of that format (seconds as floats);
//! `Duration` accessors convert at the edge.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tier::Tier;

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Basic batching: batch size bounds, the waits and timeout that close a batch, the queue bound,
/// and what happens to requests that fail alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchProcessing {
    /// Most requests in one batch (1..=1024).
    pub max_batch_size: usize,
    /// Fewest requests that form a batch before `max_wait_time_seconds` runs out.
    pub min_batch_size: usize,
    /// Longest wait for more requests before running a partial batch (0..=1 s).
    pub max_wait_time_seconds: f64,
    /// Absolute bound on batch formation, whatever the tier waits say (0..=10 s).
    pub batch_timeout_seconds: f64,
    /// Most requests queued across all tiers; past it consumption pauses.
    pub max_queue_size: usize,
    /// Least time between the starts of two batches (seconds, 0..=1; 0 = none, the default).
    pub min_batch_interval: f64,
    /// Most tensor memory in one batch (MB, > 0): a batch closes before it would pass.
    pub max_batch_memory_mb: f64,
    /// What a full queue does to the next request: `pause` its topic (it waits in Kafka), or
    /// `reject` it at once with an OVERLOADED reply (fail fast instead of queueing in the log).
    pub when_queue_full: QueueFull,
    /// Attempts of a request that fails on its own, beyond its first (0..=10). A
    /// failed batch is re-run in halves first, so one bad input fails only itself.
    pub max_retries: u32,
    /// Seconds between two attempts of a request failing on its own (0..=10).
    pub retry_delay: f64,
    /// When batches close and which tiers fill them (`priority`, the default; `latency`).
    pub strategy: StrategyKind,
}

/// The batching strategies `batch_processing.strategy` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Per-tier waits and the batch timeout close a batch (after `min_batch_size`); strict
    /// priority between tiers with boost and aging, so no tier starves.
    #[default]
    Priority,
    /// Latency first: a batch closes as soon as a critical request is queued or any request's
    /// tier wait has run out, never held back for `min_batch_size`; tiers fill it in strict
    /// priority order (no boost shares), as the predecessor's `LatencyOptimizedStrategy` did.
    Latency,
    /// The default's rules, with each request counted against `max_batch_memory_mb` at its
    /// tensors plus the working memory one row takes the model (measured from ONNX Runtime's
    /// arena at load), as the predecessor's `MemoryAwareStrategy` bounded batch memory.
    Memory,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Priority => "priority",
            StrategyKind::Latency => "latency",
            StrategyKind::Memory => "memory",
        }
    }
}

/// The overflow rule of `batch_processing.when_queue_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueFull {
    /// Backpressure: the topic is paused until the queue has room; nothing is refused.
    #[default]
    Pause,
    /// Load shedding: the request is answered OVERLOADED and its offset may be committed.
    Reject,
}

impl Default for BatchProcessing {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            min_batch_size: 1,
            max_wait_time_seconds: 0.01,
            batch_timeout_seconds: 0.05,
            max_queue_size: 1000,
            min_batch_interval: 0.0,
            max_batch_memory_mb: 256.0,
            when_queue_full: QueueFull::Pause,
            max_retries: 2,
            retry_delay: 0.05,
            strategy: StrategyKind::Priority,
        }
    }
}

impl BatchProcessing {
    pub fn max_wait(&self) -> Duration {
        secs(self.max_wait_time_seconds)
    }
    pub fn batch_timeout(&self) -> Duration {
        secs(self.batch_timeout_seconds)
    }
    pub fn min_interval(&self) -> Duration {
        secs(self.min_batch_interval)
    }
    pub fn retry_delay(&self) -> Duration {
        secs(self.retry_delay)
    }
    /// `max_batch_memory_mb` in bytes.
    pub fn max_batch_bytes(&self) -> usize {
        (self.max_batch_memory_mb * 1024.0 * 1024.0) as usize
    }
}

/// Adaptive batch sizing: the controller that moves the target batch size between the bounds
/// from measured latency and throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveBatching {
    /// Let the controller pick the target batch size from measured latency and throughput.
    pub enable_adaptive_batching: bool,
    /// Multiplicative step of each adjustment (> 0).
    pub adaptive_scaling_factor: f64,
    /// GPU utilization above which the target shrinks (0..=1).
    pub gpu_utilization_threshold_high: f64,
    /// GPU utilization below which the target may grow (0..=1, <= high).
    pub gpu_utilization_threshold_low: f64,
    /// Memory utilization above which the target shrinks (0..=1).
    pub memory_utilization_threshold: f64,
    /// Requests between two adjustments (> 0).
    pub adaptive_adjustment_interval: u64,
    /// What the controller maximizes: batch throughput, or throughput within the latency SLO
    /// (`performance_monitoring.alert_threshold_latency_ms`).
    pub optimization_target: OptimizationTarget,
    /// Shrink the target after a failed batch.
    pub reduce_batch_on_failure: bool,
    /// Target to start from (0 = between min and max batch size, geometric mean).
    pub initial_batch_size: usize,
}

/// The adaptive controller's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationTarget {
    Throughput,
    Latency,
}

impl Default for AdaptiveBatching {
    fn default() -> Self {
        Self {
            enable_adaptive_batching: true,
            adaptive_scaling_factor: 1.5,
            gpu_utilization_threshold_high: 0.8,
            gpu_utilization_threshold_low: 0.3,
            memory_utilization_threshold: 0.8,
            adaptive_adjustment_interval: 100,
            optimization_target: OptimizationTarget::Throughput,
            reduce_batch_on_failure: true,
            initial_batch_size: 0,
        }
    }
}

/// Priority queueing: per-tier waits and the anti-starvation rules, for the three tiers of the
/// service kbatch replaces plus the `critical` tier (one Kafka topic per tier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityQueueing {
    /// Serve higher tiers first; when false every tier is one FIFO with `normal`'s wait.
    pub enable_priority_queueing: bool,
    /// Wait for more requests when the oldest queued request is critical (seconds).
    pub critical_priority_wait_time: f64,
    /// Wait when the oldest queued request is high priority (seconds).
    pub high_priority_wait_time: f64,
    /// Wait for normal priority (seconds).
    pub normal_priority_wait_time: f64,
    /// Wait for low priority (seconds).
    pub low_priority_wait_time: f64,
    /// Queued requests of a lower tier that earn it a boost over higher tiers (anti-starvation).
    pub priority_boost_threshold: usize,
    /// An admitted request not put in a batch within this many seconds is answered OVERLOADED
    /// (0 = never; aging still guarantees progress).
    pub starvation_bound_seconds: f64,
    /// Read higher tiers first while they have records waiting in Kafka: lower tier topics are
    /// paused (down to their starvation share) until the higher tiers' lag is read. False: the
    /// broker's fetch order decides what is read first.
    pub tier_aware_intake: bool,
    /// Timeout of a request that sets no deadline and no `timeout_ms`, per tier (ms; 0 = none).
    pub critical_default_timeout_ms: u64,
    pub high_default_timeout_ms: u64,
    pub normal_default_timeout_ms: u64,
    pub low_default_timeout_ms: u64,
}

impl Default for PriorityQueueing {
    fn default() -> Self {
        Self {
            enable_priority_queueing: true,
            critical_priority_wait_time: 0.002,
            high_priority_wait_time: 0.005,
            normal_priority_wait_time: 0.01,
            low_priority_wait_time: 0.02,
            priority_boost_threshold: 10,
            starvation_bound_seconds: 30.0,
            tier_aware_intake: true,
            critical_default_timeout_ms: 0,
            high_default_timeout_ms: 0,
            normal_default_timeout_ms: 0,
            low_default_timeout_ms: 0,
        }
    }
}

impl PriorityQueueing {
    /// The configured wait of `tier`, in seconds.
    pub fn wait_seconds(&self, tier: Tier) -> f64 {
        match tier {
            Tier::Critical => self.critical_priority_wait_time,
            Tier::High => self.high_priority_wait_time,
            Tier::Normal => self.normal_priority_wait_time,
            Tier::Low => self.low_priority_wait_time,
        }
    }

    pub fn wait(&self, tier: Tier) -> Duration {
        secs(self.wait_seconds(tier))
    }

    /// The default timeout of `tier`, if one is set.
    pub fn default_timeout(&self, tier: Tier) -> Option<Duration> {
        let ms = match tier {
            Tier::Critical => self.critical_default_timeout_ms,
            Tier::High => self.high_default_timeout_ms,
            Tier::Normal => self.normal_default_timeout_ms,
            Tier::Low => self.low_default_timeout_ms,
        };
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// `starvation_bound_seconds`, if set.
    pub fn starvation_bound(&self) -> Option<Duration> {
        (self.starvation_bound_seconds > 0.0).then(|| secs(self.starvation_bound_seconds))
    }
}

/// Request deduplication: identical inputs for the same model within the TTL are computed once,
/// and every requester gets its own reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deduplication {
    pub enable_deduplication: bool,
    /// Most results kept for reuse (1..=1,000,000).
    pub deduplication_cache_size: usize,
    /// How long a result may be reused (seconds, > 0).
    pub deduplication_ttl: f64,
}

impl Default for Deduplication {
    fn default() -> Self {
        Self {
            enable_deduplication: false,
            deduplication_cache_size: 1000,
            deduplication_ttl: 60.0,
        }
    }
}

impl Deduplication {
    pub fn ttl(&self) -> Duration {
        secs(self.deduplication_ttl)
    }
}

/// Resource management: the inference thread budget and the memory and GPU thresholds that
/// shrink the adaptive target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceManagement {
    /// Use GPU-specific session options when the device is CUDA.
    pub enable_gpu_optimization: bool,
    /// Full graph optimization of the ONNX model at load.
    pub enable_model_compilation: bool,
    /// Periodically give ONNX Runtime's unused arena memory back (a session's next run after
    /// each `cleanup_interval_seconds` shrinks its arena).
    pub enable_memory_cleanup: bool,
    /// Seconds between memory clean-ups (> 0).
    pub cleanup_interval_seconds: u64,
    /// Pin inference threads to cores.
    pub cpu_affinity_enabled: bool,
    /// Threads for inference work (1..=64).
    pub thread_pool_size: usize,
}

impl ResourceManagement {
    /// How often a session shrinks its arena; `None` with memory cleanup off.
    pub fn cleanup_interval(&self) -> Option<std::time::Duration> {
        self.enable_memory_cleanup
            .then(|| std::time::Duration::from_secs(self.cleanup_interval_seconds))
    }
}

impl Default for ResourceManagement {
    fn default() -> Self {
        Self {
            enable_gpu_optimization: true,
            enable_model_compilation: true,
            enable_memory_cleanup: true,
            cleanup_interval_seconds: 30,
            cpu_affinity_enabled: false,
            thread_pool_size: 4,
        }
    }
}

/// Performance monitoring: what is measured and logged, and the alert thresholds (error rate,
/// latency) that the alert rules and the adaptive controller's latency objective use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceMonitoring {
    /// Collect performance metrics.
    pub enable_performance_tracking: bool,
    /// Requests between two performance log lines (> 0).
    pub log_interval_requests: u64,
    /// Seconds between metric collections (> 0).
    pub metrics_collection_interval: f64,
    /// Seconds between health checks (> 0).
    pub health_check_interval: u64,
    /// End-to-end latency that raises an alert (ms, > 0).
    pub alert_threshold_latency_ms: f64,
    /// Error rate that raises an alert (0..=1).
    pub alert_threshold_error_rate: f64,
}

impl PerformanceMonitoring {
    /// The resource sampler's period (`metrics_collection_interval`).
    pub fn metrics_period(&self) -> std::time::Duration {
        secs(self.metrics_collection_interval)
    }

    /// The liveness checker's period (`health_check_interval`).
    pub fn health_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.health_check_interval)
    }

    /// How long one inference call may run before liveness fails: far over the latency alert
    /// threshold (600 times it, at least a minute), so only a stuck call, not a slow one, trips it.
    pub fn stall_bound(&self) -> std::time::Duration {
        secs((self.alert_threshold_latency_ms / 1000.0 * 600.0).max(60.0))
    }
}

impl Default for PerformanceMonitoring {
    fn default() -> Self {
        Self {
            enable_performance_tracking: true,
            log_interval_requests: 1000,
            metrics_collection_interval: 5.0,
            health_check_interval: 30,
            alert_threshold_latency_ms: 100.0,
            alert_threshold_error_rate: 0.01,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// A tracing filter directive: `info`, `debug`, `kbatch=debug,rdkafka=warn`, ... (also set
    /// by the `LOG_LEVEL` variable).
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}
