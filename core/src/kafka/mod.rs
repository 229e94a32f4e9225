//! Kafka I/O: the request consumer (admission, backpressure by pausing, rebalance handling),
//! the reply producer, and the offset tracker that ties them together.
//!
//! Invariant: an input offset is committed only once every record before it in its partition
//! has an acknowledged outcome (reply or dead letter) — at-least-once. The consumer tracks each
//! record before handing it on, the replier marks it done after the broker acknowledged its
//! outcome, and commits carry only the tracker's contiguous done prefix of assigned partitions.
//!
//! ```text
//! run_consumer ──Admitted──► tier channels ──► (batcher, inference) ──┐
//!      │ └── Outcome (DLQ, INVALID_INPUT, REJECTED, UNKNOWN_MODEL) ───┴─► run_replier ─► Kafka
//!      │ track / commit                                        done ◄──┘
//!      └────────────────────────► SharedTracker ◄─────────────────────
//! ```

mod admin;
mod admission;
mod client;
mod consumer;
mod context;
mod error;
mod guard;
mod headers;
mod intake;
mod observe;
mod offsets;
mod reply;
mod reply_topics;
mod shared;
mod tier_gate;
mod watermarks;

pub use admin::{
    all_topics, client_config as plain_client_config, ensure_named_topics, ensure_topics,
};
pub use admission::{deadline_instant, Admission, Decision, RecordParts};
pub use client::{consumer_config, producer_config};
#[cfg(test)]
pub(crate) use consumer::tier_gate;
pub use consumer::{run_consumer, ConsumerInputs, ConsumerReport};
pub use error::KafkaError;
pub use guard::ClientGuard;
pub use headers::RawHeader;
pub use offsets::{OffsetTracker, PartitionKey};
pub use reply::{
    run_replier, run_transactional_replier, ReplierReport, MAX_IN_FLIGHT, REPLY_UNDELIVERABLE,
    TRIMMED_HEADER,
};
pub use reply_topics::{glob_matches, topic_name_error, ReplyTopicRefusal, ReplyTopics};
pub use shared::SharedTracker;
