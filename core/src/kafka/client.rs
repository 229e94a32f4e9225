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
    let mut c = base(cfg, &[]);
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

/// The reply producer: every outcome acknowledged by all in-sync replicas, idempotent so the
/// producer's own retries can neither duplicate nor reorder replies (checked against the
/// librdkafka mock cluster and tansu 0.6).
pub fn producer_config(cfg: &Config) -> ClientConfig {
    // A dead letter carries the whole refused record (up to `wire.max_request_bytes`) plus its
    // headers and error text: librdkafka's 1,000,000-byte default would refuse the letter of a
    // record near the limit and stall its partition's commits for good.
    let max_bytes = (2 * cfg.wire.max_request_bytes + 64 * 1024)
        .max(1_000_000)
        .to_string();
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
mod tests {
    use super::*;

    #[test]
    fn guarantee_settings_win_over_pass_through_properties() {
        let mut cfg = Config::default();
        cfg.kafka
            .properties
            .insert("enable.auto.commit".into(), "true".into());
        cfg.kafka.properties.insert("acks".into(), "1".into());
        cfg.kafka
            .properties
            .insert("socket.timeout.ms".into(), "1234".into());
        let c = consumer_config(&cfg);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("socket.timeout.ms"), Some("1234"));
        assert_eq!(c.get("group.id"), Some("kbatch"));
        let p = producer_config(&cfg);
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("linger.ms"), Some("5"));
        assert_eq!(p.get("message.timeout.ms"), Some("30000"));
        cfg.kafka
            .properties
            .insert("message.timeout.ms".into(), "5000".into());
        assert_eq!(
            producer_config(&cfg).get("message.timeout.ms"),
            Some("5000"),
            "tunable"
        );
    }
}

#[cfg(test)]
mod group_tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;
    use crate::config::AssignmentStrategy;

    /// librdkafka refuses a `group.protocol=consumer` client that sets classic-only properties,
    /// so creating the client proves they are left out.
    #[test]
    fn each_group_protocol_gets_a_client_librdkafka_accepts() {
        let mut cfg = Config::default();
        cfg.kafka.assignment_strategy = AssignmentStrategy::CooperativeSticky;
        let classic = consumer_config(&cfg);
        assert_eq!(classic.get("group.protocol"), Some("classic"));
        assert_eq!(
            classic.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(classic.get("session.timeout.ms"), Some("10000"));
        assert!(classic.create::<BaseConsumer>().is_ok());

        cfg.kafka.group_protocol = GroupProtocol::Consumer;
        let kip848 = consumer_config(&cfg);
        assert_eq!(kip848.get("group.protocol"), Some("consumer"));
        assert_eq!(kip848.get("session.timeout.ms"), None);
        assert_eq!(kip848.get("partition.assignment.strategy"), None);
        let created = kip848.create::<BaseConsumer>();
        assert!(created.is_ok(), "{:?}", created.err());
    }
}

#[cfg(test)]
mod tls_tests {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::FutureProducer;

    use super::*;

    /// librdkafka refuses these at client creation when it was built without OpenSSL ("OpenSSL
    /// not available at build time"), so creating the clients proves TLS and SCRAM/OAUTHBEARER
    /// settings pass through `kafka.properties` to a client that supports them.
    #[test]
    fn tls_and_sasl_settings_reach_a_client_built_with_openssl() {
        for (mechanism, extra) in [
            (
                "SCRAM-SHA-512",
                vec![("sasl.username", "svc"), ("sasl.password", "pw")],
            ),
            (
                "PLAIN",
                vec![("sasl.username", "svc"), ("sasl.password", "pw")],
            ),
            (
                "OAUTHBEARER",
                vec![("sasl.oauthbearer.config", "principal=svc")],
            ),
        ] {
            let mut cfg = Config::default();
            let p = &mut cfg.kafka.properties;
            p.insert("security.protocol".into(), "SASL_SSL".into());
            p.insert("sasl.mechanisms".into(), mechanism.into());
            p.insert(
                "ssl.endpoint.identification.algorithm".into(),
                "https".into(),
            );
            for (k, v) in extra {
                p.insert(k.into(), v.into());
            }
            let consumer: Result<BaseConsumer, _> = consumer_config(&cfg).create();
            assert!(consumer.is_ok(), "{mechanism}: {:?}", consumer.err());
            let producer: Result<FutureProducer, _> = producer_config(&cfg).create();
            assert!(producer.is_ok(), "{mechanism}: {:?}", producer.err());
        }
    }
}
