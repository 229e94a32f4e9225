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

#[cfg(test)]
pub(crate) mod fixtures;
mod outcome;

pub use outcome::{micros, now_ms, Admitted, Batch, BatchDone, Origin, Outcome, ReplyTo};
