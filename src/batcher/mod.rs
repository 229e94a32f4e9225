//! Dynamic batching: per-tier queues (pure `State`) driven by one async task.

mod policy;
mod state;
mod task;
#[cfg(test)]
mod tests;

pub use policy::BatchPolicy;
pub use state::{reason, Selection, State};
pub use task::{run_batcher, BatcherReport, WorkerPool};
