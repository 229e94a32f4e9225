//! Helpers for end-to-end tests of the serving pipeline: a per-test configuration with its own
//! topics and group, request records, and a reply collector.
//!
//! Invariant: every test gets topic names and a group id no other test uses, so tests can share
//! a broker and run in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kbatch_core::config::{Config, TierTopics};
use kbatch_core::inference::{load_backend, Backend, LoadSpec};
use kbatch_core::model::stack_rows;
use kbatch_core::registry::default_model_file;
use kbatch_core::tensor::Tensor;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Framing, Inputs, Reply, Request, WireCodec};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka::{consumer_config, create_topic, Topics};
use super::{unique_group, unique_topic, with_timeout};

/// A kbatch configuration for `bootstrap` with fresh topics (4 partitions each) and group.
pub async fn test_config(bootstrap: &str, partitions: i32) -> Config {
    let cfg = base_config(bootstrap);
    create_test_topics(bootstrap, &cfg, partitions).await;
    cfg
}

/// `test_config` without creating its topics (the mock cluster creates them its own way).
pub fn base_config(bootstrap: &str) -> Config {
    let base = unique_topic("kb");
    let mut cfg = Config::default();
    cfg.kafka.brokers = bootstrap.to_string();
    cfg.kafka.group_id = unique_group("kbatch");
    cfg.kafka.client_id = format!("kbatch-test-{}", &base[3..11]);
    cfg.kafka.topics = TierTopics {
        critical: format!("{base}.critical"),
        high: format!("{base}.high"),
        normal: format!("{base}.normal"),
        low: format!("{base}.low"),
    };
    cfg.kafka.session_timeout_ms = 6000;
    cfg.kafka.fetch_wait_max_ms = 10;
    cfg.kafka.commit_interval_ms = 200;
    cfg.kafka.shutdown_timeout_ms = 10_000;
    cfg.replies.default_topic = format!("{base}.replies");
    cfg.replies.dead_letter_topic = format!("{base}.dlq");
    cfg.model_registry.path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    cfg.model.intra_op_threads = 1;
    cfg.resource_management.thread_pool_size = 1;
    // Several instances run at once (two per group, parallel tests): any free port.
    cfg.http.port = 0;
    cfg.http.bind = "127.0.0.1".into();
    cfg
}

/// Creates `cfg`'s tier, reply and dead-letter topics.
pub async fn create_test_topics(bootstrap: &str, cfg: &Config, partitions: i32) {
    for tier in Tier::ALL {
        create_topic(
            bootstrap,
            Topics::Admin,
            cfg.kafka.topics.topic(tier),
            partitions,
        )
        .await;
    }
    create_topic(
        bootstrap,
        Topics::Admin,
        &cfg.replies.default_topic,
        partitions,
    )
    .await;
    create_topic(bootstrap, Topics::Admin, &cfg.replies.dead_letter_topic, 1).await;
}

/// Environment variables that make a `kbatch serve` child process use `cfg`'s Kafka settings.
pub fn serve_env(cfg: &Config) -> Vec<(String, String)> {
    let k = &cfg.kafka;
    let mut env = vec![
        ("KBATCH_KAFKA__BROKERS", k.brokers.clone()),
        ("KBATCH_KAFKA__GROUP_ID", k.group_id.clone()),
        ("KBATCH_HTTP__PORT", cfg.http.port.to_string()),
        ("KBATCH_HTTP__BIND", cfg.http.bind.clone()),
        ("KBATCH_KAFKA__CLIENT_ID", k.client_id.clone()),
        (
            "KBATCH_KAFKA__SESSION_TIMEOUT_MS",
            k.session_timeout_ms.to_string(),
        ),
        (
            "KBATCH_KAFKA__GROUP_PROTOCOL",
            k.group_protocol.as_librdkafka().to_owned(),
        ),
        (
            "KBATCH_KAFKA__ASSIGNMENT_STRATEGY",
            k.assignment_strategy.as_librdkafka().to_owned(),
        ),
        (
            "KBATCH_KAFKA__FETCH_WAIT_MAX_MS",
            k.fetch_wait_max_ms.to_string(),
        ),
        (
            "KBATCH_KAFKA__COMMIT_INTERVAL_MS",
            k.commit_interval_ms.to_string(),
        ),
        (
            "KBATCH_REPLIES__DEFAULT_TOPIC",
            cfg.replies.default_topic.clone(),
        ),
        (
            "KBATCH_REPLIES__DEAD_LETTER_TOPIC",
            cfg.replies.dead_letter_topic.clone(),
        ),
        (
            "KBATCH_MODEL_REGISTRY__PATH",
            cfg.model_registry.path.display().to_string(),
        ),
        (
            "KBATCH_MODEL__INTRA_OP_THREADS",
            cfg.model.intra_op_threads.to_string(),
        ),
        (
            "KBATCH_RESOURCE_MANAGEMENT__THREAD_POOL_SIZE",
            cfg.resource_management.thread_pool_size.to_string(),
        ),
    ];
    for tier in Tier::ALL {
        env.push((tier_var(tier), k.topics.topic(tier).to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn tier_var(tier: Tier) -> &'static str {
    match tier {
        Tier::Critical => "KBATCH_KAFKA__TOPICS__CRITICAL",
        Tier::High => "KBATCH_KAFKA__TOPICS__HIGH",
        Tier::Normal => "KBATCH_KAFKA__TOPICS__NORMAL",
        Tier::Low => "KBATCH_KAFKA__TOPICS__LOW",
    }
}

/// The backend of the version requests without a model name and version are routed to (the
/// reference the tests compare replies with).
pub fn load_default_backend(cfg: &Config) -> Box<dyn Backend> {
    let (id, path) = default_model_file(cfg).expect("default model file");
    load_backend(&LoadSpec::new(&cfg.model, id, path)).expect("backend")
}

/// Every output of `backend` for `tensors` (one request's inputs, in the model's order), run
/// directly as a batch of one: what a reply to that request must carry.
pub fn infer_one(backend: &mut dyn Backend, tensors: &[Tensor]) -> Vec<Tensor> {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let rows = stack_rows([tensors], &mut inputs);
    backend
        .infer(&inputs, rows, &mut outputs)
        .expect("direct inference");
    let specs = &backend.info().signature.outputs;
    outputs
        .iter()
        .zip(specs)
        .map(|(o, spec)| o.row(&spec.name, 0).expect("one row"))
        .collect()
}

/// The first output of `backend` for a version-1 request, as its reply carries it.
pub fn infer_v1(backend: &mut dyn Backend, req: &Request) -> Vec<f32> {
    let first = infer_one(backend, req.inputs.tensors()).remove(0);
    first.data.into_f32()
}

/// A valid request for the bundled model whose data is a deterministic function of `n`.
pub fn request(id: &str, n: u64) -> Request {
    Request {
        request_id: id.to_string(),
        created_at_ms: kbatch_core::pipeline::now_ms(),
        deadline_ms: None,
        timeout_ms: None,
        model_name: None,
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: Some("test".into()),
        inputs: Inputs::v1(
            vec![64, 16],
            (0..1024)
                .map(|i| (((i as u64 * 31 + n * 17) % 97) as f32 / 97.0) - 0.5)
                .collect(),
        ),
    }
}

/// Produces `value` to `topic` with `key`, waiting for the delivery.
pub async fn send_raw(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) {
    let rec = FutureRecord::to(topic).key(key).payload(value);
    with_timeout(
        "a request delivery",
        Duration::from_secs(30),
        producer.send(rec, Duration::from_secs(10)),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
}

/// Encodes `req` (Confluent framing) and produces it to the topic of `tier`.
pub async fn send_request(producer: &FutureProducer, cfg: &Config, tier: Tier, req: &Request) {
    let mut buf = Vec::new();
    WireCodec::new(&cfg.wire).encode_request(req, Framing::Confluent, &mut buf);
    send_raw(
        producer,
        cfg.kafka.topics.topic(tier),
        &req.request_id,
        &buf,
    )
    .await;
}

/// The offset `group` has committed on `topic`'s `partition` (`Offset::Invalid`: none yet).
/// Call from a multi-threaded runtime: the lookup blocks.
pub fn committed_offset(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<rdkafka::Offset> {
    let consumer: BaseConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed =
        tokio::task::block_in_place(|| consumer.committed_offsets(tpl, Duration::from_secs(10)))
            .expect("committed offsets");
    committed
        .find_partition(topic, partition)
        .map(|e| e.offset())
}

/// A reply as received, with the headers a test checks.
#[derive(Debug, Clone)]
pub struct Received {
    pub reply: Reply,
    pub key: Option<Vec<u8>>,
    pub headers: HashMap<String, Vec<u8>>,
}

/// A consumer reading `topic` from the start (its own group).
pub fn reader(bootstrap: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = consumer_config(bootstrap, &unique_group("reader"))
        .create()
        .expect("reader");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Reads replies until `done` says so or `limit` passes; returns them in arrival order.
pub async fn collect_replies(
    consumer: &StreamConsumer,
    cfg: &Config,
    limit: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let codec = WireCodec::new(&cfg.wire);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !done(&out) {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let msg = match msg {
            Ok(m) => m,
            // The reader's own connection during a broker outage (the fault tests stop the
            // broker): librdkafka reconnects by itself, and what matters is what arrives after.
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
            )) => continue,
            Err(e) => panic!("reply consumer error: {e}"),
        };
        let reply = codec
            .decode_reply(msg.payload().unwrap_or_default())
            .expect("reply decodes");
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Received {
            reply,
            key: msg.key().map(<[u8]>::to_vec),
            headers,
        });
    }
    out
}
