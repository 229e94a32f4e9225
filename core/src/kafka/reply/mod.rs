//! The reply path: every outcome becomes a Kafka record, is delivered, and then settles its
//! input record. Two repliers share it, differing only in when a delivery counts:
//!
//! - [`record`]: an outcome → its record (topic, key, payload, headers), pure;
//! - [`dead_letter`]: the dead letters the replier builds itself (poison request, refused
//!   reply, trimmed letter), pure;
//! - [`delivery`]: enqueueing records, waiting for acknowledgements, and what follows a failure;
//! - [`settlement`]: marking origins done, the [`ReplierReport`], telemetry;
//! - [`at_least_once`]: settles each record once the broker acknowledged it, retrying and
//!   falling back to the dead-letter topic;
//! - [`exactly_once`]: settles records once the transaction holding them and their input
//!   offsets committed; any failure aborts the transaction.
//!
//! Invariant: an input record is marked done only after the last record of its outcome is
//! safely written (acknowledged, or committed under exactly-once); what cannot be written stays
//! pending, so its offset is never committed past.

mod at_least_once;
mod dead_letter;
mod delivery;
mod exactly_once;
mod record;
mod settlement;

pub use at_least_once::run_replier;
pub use dead_letter::{REPLY_UNDELIVERABLE, TRIMMED_HEADER};
pub use delivery::MAX_IN_FLIGHT;
pub use exactly_once::run_transactional_replier;
pub use settlement::ReplierReport;

#[cfg(test)]
mod tests;
