//! The batching rules, taken from the configuration once so the hot path reads plain fields.
//!
//! Invariant: `tier_capacity * queues >= max_batch_size`, so a full batch can always form.

use std::time::Duration;

use crate::config::{Config, StrategyKind};
use crate::model::ModelBatching;
use crate::pipeline::RetryPolicy;
use crate::tier::Tier;

/// What the batcher needs to know to form batches.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPolicy {
    pub max_batch_size: usize,
    /// Fewer than this many queued requests wait for `batch_timeout` instead of the tier wait.
    pub min_batch_size: usize,
    /// How long a partial batch waits for more requests, keyed by the tier of the oldest request
    /// in each queue (with priority queueing off, every entry is `max_wait_time_seconds`).
    pub tier_wait: [Duration; 4],
    /// Absolute bound from the first queued request to its batch being closed.
    pub batch_timeout: Duration,
    /// Serve higher tiers first; off means one FIFO for all tiers.
    pub priority: bool,
    /// Most requests queued per tier (per queue when priority is off).
    pub tier_capacity: usize,
    /// A lower tier with this many queued requests gets a share of every batch.
    pub boost_threshold: usize,
    /// Slots of every batch reserved for each boosted tier.
    pub boost_quota: usize,
    /// A tier whose oldest request waited this long is boosted whatever its length (aging), so
    /// no admitted request starves under a sustained flood of higher tiers.
    pub aging_limit: Duration,
    /// A request not batched this long after admission is answered OVERLOADED.
    pub starvation_bound: Option<Duration>,
    /// Least time between two batch starts (zero: none).
    pub min_interval: Duration,
    /// Most tensor bytes in one batch (a single larger request still runs, alone).
    pub max_batch_bytes: usize,
    /// Which strategy closes and fills batches (`batch_processing.strategy`).
    pub strategy: StrategyKind,
    /// Retries of a request failing alone, handed to the workers with each batch.
    pub retry: RetryPolicy,
    /// Bytes each request weighs against `max_batch_bytes` beyond its tensors: under the
    /// `memory` strategy, the model's measured working memory per row (`with_activations`);
    /// otherwise 0.
    pub row_overhead_bytes: usize,
}

impl BatchPolicy {
    pub fn from_config(cfg: &Config) -> Self {
        let b = &cfg.batch_processing;
        let p = &cfg.priority_queueing;
        let tier_wait = if p.enable_priority_queueing {
            Tier::ALL.map(|t| p.wait(t))
        } else {
            [b.max_wait(); 4]
        };
        let queues = if p.enable_priority_queueing {
            Tier::ALL.len()
        } else {
            1
        };
        Self {
            max_batch_size: b.max_batch_size,
            min_batch_size: b.min_batch_size.min(b.max_batch_size),
            tier_wait,
            batch_timeout: b.batch_timeout(),
            priority: p.enable_priority_queueing,
            // The queue bound is split evenly so a flood in one tier never takes another's room.
            tier_capacity: b.max_queue_size.div_ceil(queues).max(b.max_batch_size),
            boost_threshold: p.priority_boost_threshold.max(1),
            boost_quota: (b.max_batch_size / 4).max(1),
            aging_limit: b.batch_timeout(),
            starvation_bound: p.starvation_bound(),
            min_interval: b.min_interval(),
            max_batch_bytes: b.max_batch_bytes().max(1),
            strategy: b.strategy,
            retry: RetryPolicy {
                max_retries: b.max_retries,
                retry_delay: b.retry_delay(),
            },
            row_overhead_bytes: 0,
        }
    }

    /// This policy with one model's overrides (`model.yaml`'s `batching`). The queue bound
    /// stays the service's: it is shared by every model.
    pub fn for_model(&self, m: &ModelBatching) -> Self {
        let mut p = self.clone();
        if let Some(max) = m.max_batch_size.filter(|&n| n > 0) {
            p.max_batch_size = max;
            p.min_batch_size = p.min_batch_size.min(max);
            p.boost_quota = (max / 4).max(1);
            p.tier_capacity = p.tier_capacity.max(max);
        }
        for (wait, ms) in p.tier_wait.iter_mut().zip(m.tier_wait_ms.in_order()) {
            if let Some(d) = ms.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()) {
                *wait = d;
            }
        }
        p
    }

    /// This policy for a model whose rows each take `per_row` bytes of working memory: counted
    /// against the batch memory bound under the `memory` strategy, ignored under the others.
    pub fn with_activations(mut self, per_row: Option<u64>) -> Self {
        self.row_overhead_bytes = match self.strategy {
            StrategyKind::Memory => per_row.map_or(0, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            StrategyKind::Priority | StrategyKind::Latency => 0,
        };
        self
    }

    /// Queue index of a tier: its own with priorities, the single shared one without.
    pub fn queue_of(&self, tier: Tier) -> usize {
        if self.priority {
            tier.index()
        } else {
            0
        }
    }
}
