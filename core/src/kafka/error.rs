//! The Kafka layer's one error type.
//!
//! Invariant: every variant names the operation that failed, so a log line says what kbatch was
//! doing, not only what librdkafka returned. Per-record problems (undecodable input, a failed
//! delivery) are never errors here: they are outcomes or report counters.

use thiserror::Error;

/// Why the consumer or replier stopped.
#[derive(Debug, Error)]
pub enum KafkaError {
    /// A librdkafka client could not be created from the configuration.
    #[error("creating the Kafka {what}: {source}")]
    Create {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Subscribing to the request topics failed.
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The producer could not flush its queue on shutdown.
    #[error("flushing the reply producer: {0}")]
    Flush(#[source] rdkafka::error::KafkaError),
    /// The consumer's polling thread panicked or could not be joined.
    #[error("the consumer thread failed: {0}")]
    Thread(String),
    /// A blocking librdkafka call, run off the async workers, could not be joined.
    #[error("a blocking Kafka call failed: {0}")]
    Blocking(String),
    /// A downstream stage dropped its receiver while the consumer was still running.
    #[error("the {0} channel closed before shutdown")]
    ChannelClosed(&'static str),
    /// A topic-administration request (metadata, CreateTopics) failed.
    #[error("{op} on {brokers}: {source}")]
    Admin {
        op: &'static str,
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker refused to create a topic.
    #[error("creating topic {topic} failed: {code:?}")]
    CreateTopic {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A topic did not show every partition with a leader in time.
    #[error(
        "topic {topic} was not ready with {partitions} partitions, each with a leader, after \
         {waited:?} (is the broker at {brokers} reachable?)"
    )]
    TopicNotReady {
        topic: String,
        partitions: i32,
        waited: std::time::Duration,
        brokers: String,
    },
    /// A topic cannot have fewer than one partition.
    #[error("partitions must be at least 1, got {0}")]
    InvalidPartitions(i32),
    /// An exactly-once transaction failed and was aborted.
    #[error("transaction: {0}")]
    Transaction(String),
}
