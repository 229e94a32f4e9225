//! Dynamic batching: per-tier queues (pure `State`, with a pluggable `BatchStrategy`), the
//! adaptive batch-size controller and the deduplicating coalescer (both pure), driven by one
//! async task.

pub mod adaptive;
pub mod dedup;
mod policy;
mod queue;
mod state;
mod strategy;
mod task;
#[cfg(test)]
mod tests;

pub use policy::BatchPolicy;
pub use queue::Expiry;
pub use state::{Selection, State};
pub use strategy::{BatchStrategy, PriorityStrategy, QueueStats, QueueView};
pub use task::{run_batcher, BatcherParts, BatcherReport};
