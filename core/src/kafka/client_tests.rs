//! Unit tests of `client`: the guarantee settings, each group protocol, TLS and SASL.

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

#[test]
fn the_consumer_backs_off_briefly_from_a_full_queue_and_pass_through_properties_tune_it() {
    let mut cfg = Config::default();
    let c = consumer_config(&cfg);
    assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
    assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
    assert_eq!(c.get("max.partition.fetch.bytes"), Some("65536"));
    cfg.kafka
        .properties
        .insert("fetch.queue.backoff.ms".into(), "1000".into());
    assert_eq!(
        consumer_config(&cfg).get("fetch.queue.backoff.ms"),
        Some("1000")
    );
}

mod group_protocol {
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

mod tls {
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
