//! librdkafka client settings built from the `kafka` and `replies` sections.
//!
//! Invariant: the settings kbatch's delivery guarantee depends on (manual commits, no automatic
//! offset store, acks=all) are set after `kafka.properties`, so a pass-through property can tune
//! a client but never weaken the guarantee (config validation also rejects such keys).

use rdkafka::config::ClientConfig;

use crate::config::{Config, Delivery, GroupProtocol};

/// Settings common to the consumer and the producer: `defaults` first, so that
/// `kafka.properties` can override them.
fn base(cfg: &Config, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.brokers)
        .set("client.id", &cfg.kafka.client_id);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.kafka.properties {
        c.set(k, v);
    }
    c
}

/// The request consumer: offsets are committed by kbatch only, for delivered prefixes.
pub fn consumer_config(cfg: &Config) -> ClientConfig {
    let k = &cfg.kafka;
    // librdkafka stops fetching *every* partition for `fetch.queue.backoff.ms` (1 s by default)
    // when the consumer queue they all feed holds more than `queued.max.messages.kbytes`, and a
    // resume does not cut that short. A pause leaves what was prefetched for the partition in
    // that queue until the polling thread skips it, so under a backlog, with lower tiers paused,
    // the queue was over its bound, the higher tier's next fetch waited a second, and the server
    // idled. A short backoff retries as soon as the skipped records are gone; a smaller queue
    // bound throws less away at each pause (kbatch's own queues hold the work, not librdkafka's).
    // A pause also drops the partition's fetched records, which are fetched again at the resume:
    // with 1 MiB per partition per fetch (the default) a drain fetched 6x the bytes it used and
    // the broker spent more CPU per request than the model; 64 KiB (15 requests of the bundled
    // model) halves that waste, and a busy partition still brings a full response per fetch.
    let mut c = base(
        cfg,
        &[
            ("fetch.queue.backoff.ms", "10"),
            ("queued.max.messages.kbytes", "16384"),
            ("max.partition.fetch.bytes", "65536"),
        ],
    );
    c.set("group.id", &k.group_id)
        .set("group.protocol", k.group_protocol.as_librdkafka())
        .set("fetch.wait.max.ms", k.fetch_wait_max_ms.to_string())
        // A new group starts at the oldest request: every request gets an outcome.
        .set("auto.offset.reset", "earliest")
        // Committing is the offset tracker's decision (contiguous delivered prefix only).
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if k.group_protocol == GroupProtocol::Classic {
        // Under KIP-848 the broker owns both, and librdkafka refuses a client that sets them.
        c.set("session.timeout.ms", k.session_timeout_ms.to_string())
            .set(
                "partition.assignment.strategy",
                k.assignment_strategy.as_librdkafka(),
            );
    }
    if k.delivery == Delivery::ExactlyOnce {
        // Aborted transactions (ours after a failure, or an upstream producer's) are never
        // read as requests.
        c.set("isolation.level", "read_committed");
    }
    // Broker reachability and lag for the probes and metrics come from these statistics.
    if !k.properties.contains_key("statistics.interval.ms") {
        c.set("statistics.interval.ms", "1000");
    }
    c
}

/// The reply producer's `message.max.bytes`: room for a dead letter of the largest accepted
/// record (twice `wire.max_request_bytes`, plus its headers and error text).
pub fn producer_max_bytes(cfg: &Config) -> usize {
    (2 * cfg.wire.max_request_bytes + 64 * 1024).max(1_000_000)
}

/// The reply producer: every outcome acknowledged by all in-sync replicas, idempotent so the
/// producer's own retries can neither duplicate nor reorder replies (checked against the
/// librdkafka mock cluster and tansu 0.6).
pub fn producer_config(cfg: &Config) -> ClientConfig {
    // A dead letter carries the whole refused record (up to `wire.max_request_bytes`) plus its
    // headers and error text: librdkafka's 1,000,000-byte default would refuse the letter of a
    // record near the limit and stall its partition's commits for good.
    let max_bytes = producer_max_bytes(cfg).to_string();
    // librdkafka's default (300 s) would hold an undeliverable reply, and with it the commit
    // point of its partition, for five minutes per attempt; a reply that late is worthless.
    // A reply topic named by a request is not created on its behalf (requests must not be able
    // to create topics), and a missing one fails its reply after 5 s instead of librdkafka's
    // 30 s; the replier then falls back to the dead-letter topic.
    let mut c = base(
        cfg,
        &[
            ("message.timeout.ms", "30000"),
            ("allow.auto.create.topics", "false"),
            ("topic.metadata.propagation.max.ms", "5000"),
            ("message.max.bytes", &max_bytes),
        ],
    );
    c.set("linger.ms", cfg.replies.linger_ms.to_string())
        .set("enable.idempotence", "true")
        .set("acks", "all");
    c
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
