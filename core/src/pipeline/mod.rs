//! What flows between the stages of the serving pipeline:
//!
//! ```text
//! consumer ──Admitted (per-tier channel)──► batcher ──Batch──► inference workers
//!    │                                         │                     │
//!    └──────────────── Outcome ────────────────┴──────── Outcome ────┴──► replier ──► Kafka
//!                                                                          │ delivered
//!                                                                          ▼
//!                                                          offset tracker (commit prefix)
//! ```
//!
//! Workers also report each finished batch back to the batcher (`BatchDone`): its latency for
//! adaptive sizing, and the results that deduplicated twins of its requests are waiting for.
//!
//! Invariant: every record the consumer takes from Kafka becomes exactly one `Outcome` carrying
//! its `Origin`, and only a delivered outcome marks its origin done in the offset tracker.

//!
//! The types two stages hand each other live here, below the stages, so no stage imports
//! another: the worker pool (batcher → workers), the deduplication key (admission and batcher),
//! flush reasons (batcher, workers, metrics) and the model's identity (every reply).

mod dedup_key;
#[cfg(test)]
pub(crate) mod fixtures;
mod flush;
mod outcome;
mod workers;

pub use crate::model::ModelId;
pub use dedup_key::{dedup_key, DedupKey};
pub use flush::{FlushCounts, FlushReason};
pub use outcome::{
    micros, now_ms, Admitted, Batch, BatchDone, LeaderResult, Origin, Outcome, ReplyTo, RetryPolicy,
};
pub use workers::WorkerPool;
