//! The `kafka` and `replies` sections: where requests come from and where outcomes go.
//!
//! Invariant: the four tier topics, the default reply topic and the dead-letter topic are six
//! distinct names (validation enforces it), so no outcome can be read back as a request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tier::Tier;

/// Delivery guarantee of replies relative to input offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Offsets are committed after the outcome is delivered; a crash may duplicate replies.
    #[default]
    AtLeastOnce,
    /// Replies and input offsets are committed in one Kafka transaction per batch.
    ExactlyOnce,
}

/// The consumer-group protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The classic protocol: members assign partitions among themselves
    /// (`assignment_strategy`), the session timeout is the member's (`session_timeout_ms`).
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+): the broker assigns partitions incrementally and owns the session
    /// timeout and heartbeat interval (`group.consumer.*` broker settings).
    Consumer,
}

impl GroupProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// How members of a classic group share partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AssignmentStrategy {
    /// Eager: every rebalance revokes every partition of every member, then reassigns.
    #[serde(rename = "range")]
    Range,
    /// Eager, partitions dealt out one by one across members.
    #[serde(rename = "roundrobin")]
    RoundRobin,
    /// Incremental: a rebalance revokes only the partitions that move; the others keep serving.
    /// The default: a replica joining or leaving (a KEDA scale step) does not stop the group.
    #[default]
    #[serde(rename = "cooperative-sticky")]
    CooperativeSticky,
}

impl AssignmentStrategy {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }
}

/// One request topic per priority tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierTopics {
    pub critical: String,
    pub high: String,
    pub normal: String,
    pub low: String,
}

impl Default for TierTopics {
    fn default() -> Self {
        Self {
            critical: "inference.requests.critical".into(),
            high: "inference.requests.high".into(),
            normal: "inference.requests.normal".into(),
            low: "inference.requests.low".into(),
        }
    }
}

impl TierTopics {
    pub fn topic(&self, tier: Tier) -> &str {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Normal => &self.normal,
            Tier::Low => &self.low,
        }
    }

    /// The tier whose topic is `topic`.
    pub fn tier_of(&self, topic: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|&t| self.topic(t) == topic)
    }
}

/// The `kafka` configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group; every kbatch instance with this id is one replica.
    pub group_id: String,
    /// Kafka client id of this instance's clients.
    pub client_id: String,
    /// Request topics per tier.
    pub topics: TierTopics,
    /// At-least-once (default) or exactly-once delivery.
    pub delivery: Delivery,
    /// Consumer-group protocol: `classic` or `consumer` (KIP-848).
    pub group_protocol: GroupProtocol,
    /// Partition assignment of the classic protocol (the broker assigns under `consumer`).
    pub assignment_strategy: AssignmentStrategy,
    /// Consumer session timeout (ms) of the classic protocol (the broker's under `consumer`).
    pub session_timeout_ms: u32,
    /// Longest a fetch waits for data (ms); low values cut latency at idle.
    pub fetch_wait_max_ms: u32,
    /// Milliseconds between offset commits of delivered prefixes.
    pub commit_interval_ms: u64,
    /// Longest a revoke waits for in-flight work of the revoked partitions to be delivered
    /// before it commits what is done and gives the partitions up (ms).
    pub revoke_drain_timeout_ms: u64,
    /// Longest a graceful shutdown (SIGTERM) drains queued and in-flight work (ms).
    pub shutdown_timeout_ms: u64,
    /// Extra librdkafka properties passed to every client unchanged (TLS, SASL, tuning).
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// `properties` as (name, value) pairs, for clients built outside the consumer and the
    /// replier (topic administration, the tools).
    pub fn property_pairs(&self) -> Vec<(String, String)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "kbatch".into(),
            client_id: "kbatch".into(),
            topics: TierTopics::default(),
            delivery: Delivery::AtLeastOnce,
            group_protocol: GroupProtocol::Classic,
            assignment_strategy: AssignmentStrategy::CooperativeSticky,
            session_timeout_ms: 10_000,
            fetch_wait_max_ms: 10,
            commit_interval_ms: 1000,
            revoke_drain_timeout_ms: 3000,
            shutdown_timeout_ms: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

/// The `replies` configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepliesConfig {
    /// Reply topic for requests that name none.
    pub default_topic: String,
    /// Topic for records that cannot be decoded.
    pub dead_letter_topic: String,
    /// Honour a request's own `reply_topic`; when false every reply goes to `default_topic`.
    pub allow_request_reply_topic: bool,
    /// Globs (`*` = any characters) a request's own `reply_topic` must match; empty: any Kafka
    /// topic name. A request naming another gets a REJECTED reply on `default_topic`.
    pub allowed_reply_topics: Vec<String>,
    /// Distinct request-named reply topics one instance writes to; a request naming one more
    /// gets a REJECTED reply on `default_topic`. Each topic costs the producer memory for as
    /// long as it lives, so names chosen by requesters are bounded.
    pub max_reply_topics: usize,
    /// Kafka header carrying the caller's correlation id, copied from request to reply.
    pub correlation_header: String,
    /// Producer linger (ms): replies leave in batches. Every produce request costs the broker
    /// and librdkafka's I/O thread a round of work, so a few ms of linger buys throughput at a
    /// latency cost of at most that (docs/benchmarks.md compares 5 ms with 1 ms).
    pub linger_ms: u32,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        Self {
            default_topic: "inference.replies".into(),
            dead_letter_topic: "inference.dlq".into(),
            allow_request_reply_topic: true,
            allowed_reply_topics: Vec::new(),
            max_reply_topics: 1000,
            correlation_header: "correlation-id".into(),
            linger_ms: 5,
        }
    }
}
