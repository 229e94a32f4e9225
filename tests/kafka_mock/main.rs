//! `kbatch_core::kafka` end to end against librdkafka's in-process mock cluster: the consumer and the
//! replier around a fake "echo batcher", no model, no container (plain `cargo test`).
//!
//! Invariant checked: every consumed record gets exactly one outcome on the right topic (its
//! reply topic or the DLQ) with the right headers and status, and after shutdown the group's
//! committed offsets are the end offsets; a full tier channel pauses intake without losing
//! records; a commit never passes an unanswered record, through cancellation and rebalances.
#[path = "../common/mod.rs"]
mod common;
mod harness;
mod outcomes;
mod recovery;
