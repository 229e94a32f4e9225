//! Topic administration: creating the request, reply and dead-letter topics (`kbatch
//! create-topics`, and the tools that start from an empty broker).
//!
//! Invariant: when `ensure_*` returns Ok, every named topic is in the broker's metadata with
//! every partition led, so a producer started right after never sees UNKNOWN_TOPIC_OR_PART.
//! Topics that already exist are left as they are (their partition count is not changed).
//! `topic_max_message_bytes` reads the one topic setting kbatch adapts to (the dead-letter size).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaError;
use crate::config::Config;
use crate::tier::Tier;

/// How long topics may take to appear with leaders.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The four tier topics, the default reply topic and the dead-letter topic of `cfg`.
pub fn all_topics(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = Tier::ALL
        .iter()
        .map(|&t| cfg.kafka.topics.topic(t).to_owned())
        .collect();
    out.push(cfg.replies.default_topic.clone());
    out.push(cfg.replies.dead_letter_topic.clone());
    out
}

/// Creates the four tier topics, the reply topic and the DLQ of `cfg` with `partitions`
/// partitions each (replication 1) on `brokers`, unless they exist, and waits until every
/// partition has a leader.
pub async fn ensure_topics(brokers: &str, cfg: &Config, partitions: i32) -> Result<(), KafkaError> {
    let props = cfg.kafka.property_pairs();
    ensure_named_topics(brokers, &props, &all_topics(cfg), partitions).await
}

/// Creates each of `topics` that does not exist yet with `partitions` partitions (replication 1)
/// and waits until all of them have every partition led. `properties` are extra librdkafka
/// settings (TLS, SASL).
pub async fn ensure_named_topics(
    brokers: &str,
    properties: &[(String, String)],
    topics: &[String],
    partitions: i32,
) -> Result<(), KafkaError> {
    if partitions < 1 {
        return Err(KafkaError::InvalidPartitions(partitions));
    }
    let config = client_config(brokers, properties);
    let existing = topic_states(&config, brokers, Duration::from_secs(10)).await?;
    let missing: Vec<&String> = topics
        .iter()
        .filter(|t| !existing.contains_key(t.as_str()))
        .collect();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> =
            config.create().map_err(|source| KafkaError::Admin {
                op: "creating the admin client",
                brokers: brokers.to_owned(),
                source,
            })?;
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            admin
                .create_topics(&new, &opts)
                .await
                .map_err(|source| KafkaError::Admin {
                    op: "CreateTopics",
                    brokers: brokers.to_owned(),
                    source,
                })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
            }
        }
    }
    // Wait for every topic: those just created with exactly `partitions`, the others as they are.
    let want: Vec<(String, Option<i32>)> = topics
        .iter()
        .map(|t| {
            let created = missing.contains(&t);
            (t.clone(), created.then_some(partitions))
        })
        .collect();
    let started = Instant::now();
    loop {
        let states = topic_states(&config, brokers, Duration::from_secs(5)).await?;
        let not_ready = want.iter().find(|(t, n)| match states.get(t.as_str()) {
            Some(s) => !s.ready(*n),
            None => true,
        });
        let Some((topic, n)) = not_ready else {
            return Ok(());
        };
        if started.elapsed() > READY_LIMIT {
            return Err(KafkaError::TopicNotReady {
                topic: topic.clone(),
                partitions: n.unwrap_or(1),
                waited: READY_LIMIT,
                brokers: brokers.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What metadata says about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicState {
    partitions: usize,
    all_led: bool,
}

impl TopicState {
    fn ready(&self, want: Option<i32>) -> bool {
        self.all_led && self.partitions > 0 && want.is_none_or(|n| self.partitions == n as usize)
    }
}

/// A client configuration for `brokers` with `properties` (TLS, SASL) applied: the settings
/// every administration and tool client shares.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (k, v) in properties {
        cfg.set(k, v);
    }
    cfg
}

/// Topics in the cluster's metadata (all topics: asking for one by name could auto-create it).
async fn topic_states(
    config: &ClientConfig,
    brokers: &str,
    timeout: Duration,
) -> Result<HashMap<String, TopicState>, KafkaError> {
    let probe: BaseConsumer = config.create().map_err(|source| KafkaError::Admin {
        op: "creating the metadata client",
        brokers: brokers.to_owned(),
        source,
    })?;
    // fetch_metadata blocks its thread.
    let md = tokio::task::spawn_blocking(move || probe.fetch_metadata(None, timeout))
        .await
        .map_err(|e| KafkaError::Blocking(e.to_string()))?
        .map_err(|source| KafkaError::Admin {
            op: "fetching metadata",
            brokers: brokers.to_owned(),
            source,
        })?;
    Ok(states(&md))
}

fn states(md: &Metadata) -> HashMap<String, TopicState> {
    md.topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let state = TopicState {
                partitions: t.partitions().len(),
                all_led: t.partitions().iter().all(|p| p.leader() >= 0),
            };
            (t.name().to_owned(), state)
        })
        .collect()
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;

/// The broker's limit on a record batch written to `topic` (its `max.message.bytes`), if the
/// broker says: what a dead letter must fit in. `None` when the topic is not described (it does
/// not exist yet, or the client may not describe it).
pub async fn topic_max_message_bytes(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
) -> Result<Option<usize>, KafkaError> {
    let config = client_config(brokers, properties);
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| KafkaError::Admin {
            op: "creating the admin client",
            brokers: brokers.to_owned(),
            source,
        })?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|source| KafkaError::Admin {
            op: "DescribeConfigs",
            brokers: brokers.to_owned(),
            source,
        })?;
    Ok(results
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|resource| {
            resource
                .get("max.message.bytes")?
                .value
                .as_deref()?
                .parse()
                .ok()
        }))
}
