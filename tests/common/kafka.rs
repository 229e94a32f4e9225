//! Broker-agnostic Kafka client helpers for tests.
//!
//! Invariant: the configs built here behave the same against librdkafka's mock cluster, tansu and
//! Apache Kafka; anything broker-specific (how a topic is created) is chosen by the caller through
//! [`Topics`], never guessed from the address.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::metadata::Metadata;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::{with_timeout, WAIT};

/// Session timeout for test consumers. tansu holds a group join for about half of it, so it is
/// kept at the lowest value Kafka's default `group.min.session.timeout.ms` accepts.
pub const SESSION_TIMEOUT_MS: &str = "6000";

/// Settings shared by producers, consumers and admin clients.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        // Fail a broken test in seconds instead of librdkafka's minutes-long defaults.
        .set("socket.timeout.ms", "10000")
        // Fresh topics appear in metadata quickly enough for a test without waiting 5 min.
        .set("topic.metadata.refresh.interval.ms", "1000");
    cfg
}

/// Producer settings: every record acknowledged, deliveries bounded so a dead broker fails the
/// test instead of buffering forever.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = client_config(bootstrap);
    cfg.set("acks", "all")
        .set("message.timeout.ms", "15000")
        // Delivery order inside a partition must equal send order for the ordering assertions.
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "5");
    cfg
}

/// Consumer settings for group `group`: earliest start, manual commits, short fetch waits (tansu
/// holds every fetch for the full `fetch.wait.max.ms`), short session timeout (tansu join delay).
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        // Tests decide what is committed; auto-commit would make commit assertions racy.
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "10");
    cfg
}

/// A producer built from [`producer_config`].
pub fn producer(bootstrap: &str) -> FutureProducer {
    producer_config(bootstrap)
        .create()
        .expect("creating test producer")
}

/// A consumer in `group`, subscribed to `topic`.
pub fn subscribed_consumer(bootstrap: &str, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("creating test consumer");
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribing to {topic}: {e}"));
    consumer
}

/// How topics are created on the broker under test: the mock cluster has no admin API.
pub enum Topics<'a> {
    /// CreateTopics through rdkafka's `AdminClient` (tansu, Apache Kafka).
    Admin,
    /// `MockCluster::create_topic`.
    Mock(&'a MockCluster<'static, DefaultProducerContext>),
}

/// Creates `topic` with `partitions` partitions (replication 1) and waits until its metadata
/// lists every partition with a leader, so a producer sent right after never sees
/// UNKNOWN_TOPIC_OR_PART.
pub async fn create_topic(bootstrap: &str, how: Topics<'_>, topic: &str, partitions: i32) {
    match how {
        Topics::Mock(cluster) => cluster
            .create_topic(topic, partitions, 1)
            .unwrap_or_else(|e| panic!("mock create_topic {topic}: {e}")),
        Topics::Admin => {
            let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
                .create()
                .expect("creating admin client");
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let results = with_timeout("CreateTopics", WAIT, admin.create_topics([&new], &opts))
                .await
                .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => panic!("CreateTopics {t}: {code:?}"),
                }
            }
        }
    }
    wait_for_partitions(bootstrap, topic, partitions).await;
}

/// Polls metadata until `topic` has `partitions` partitions, each with a leader.
pub async fn wait_for_partitions(bootstrap: &str, topic: &str, partitions: i32) {
    let t = topic.to_owned();
    let ok = poll_metadata(bootstrap, Some(topic), WAIT, move |md| {
        md.topics().iter().any(|m| {
            m.name() == t
                && m.error().is_none()
                && m.partitions().len() == partitions as usize
                && m.partitions().iter().all(|p| p.leader() >= 0)
        })
    })
    .await;
    assert!(
        ok,
        "timed out after {WAIT:?} waiting for metadata of {topic} with {partitions} partitions"
    );
}

/// Fetches metadata (all topics when `topic` is `None`) until `ready` accepts it or `limit`
/// passes; returns whether it was accepted. Fetch errors count as "not yet": a broker that is
/// still starting refuses connections.
pub async fn poll_metadata(
    bootstrap: &str,
    topic: Option<&str>,
    limit: Duration,
    ready: impl Fn(&Metadata) -> bool + Send + 'static,
) -> bool {
    let probe: BaseConsumer = client_config(bootstrap)
        .create()
        .expect("creating metadata client");
    let topic = topic.map(str::to_owned);
    // fetch_metadata blocks its thread, so the whole loop runs off the async workers; the
    // deadline inside keeps the thread from outliving the test.
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(md) = probe.fetch_metadata(topic.as_deref(), left.min(Duration::from_secs(2)))
            {
                if ready(&md) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("metadata poll thread panicked")
}

/// A record to send: key, value and headers as (name, value) in order.
pub type Record = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// What a test needs to recognise a record after the round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Partition the broker stored the record in.
    pub partition: i32,
    /// Offset the broker assigned.
    pub offset: i64,
    /// Record key.
    pub key: Vec<u8>,
    /// Record value.
    pub value: Vec<u8>,
    /// Headers in send order, as (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Sends every record and waits for all deliveries; returns them with the partition/offset the
/// broker assigned, in send order. Panics on the first failed delivery.
pub async fn produce_all(producer: &FutureProducer, topic: &str, records: &[Record]) -> Vec<Sent> {
    let mut pending = Vec::with_capacity(records.len());
    for (key, value, headers) in records {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let rec = FutureRecord::to(topic).key(key).payload(value).headers(hs);
        // Enqueue everything before awaiting so librdkafka can batch; a full local queue is a
        // harness bug, hence expect.
        let fut = producer
            .send_result(rec)
            .map_err(|(e, _)| e)
            .expect("enqueueing a test record");
        pending.push(fut);
    }
    let mut sent = Vec::with_capacity(records.len());
    for ((key, value, headers), fut) in records.iter().zip(pending) {
        let delivery = with_timeout("a delivery report", WAIT, fut)
            .await
            .expect("producer dropped a delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery to {topic} failed: {e}"));
        sent.push(Sent {
            partition: delivery.partition,
            offset: delivery.offset,
            key: key.clone(),
            value: value.clone(),
            headers: headers.clone(),
        });
    }
    sent
}

/// Receives exactly `n` records (bounded by `limit` overall), detached from the consumer so
/// they can outlive it.
pub async fn consume_n(consumer: &StreamConsumer, n: usize, limit: Duration) -> Vec<OwnedMessage> {
    let mut out = Vec::with_capacity(n);
    let what = format!("{n} records");
    with_timeout(&what, limit, async {
        while out.len() < n {
            let m = consumer.recv().await.expect("consumer error");
            out.push(m.detach());
        }
    })
    .await;
    out
}

/// Asserts nothing further arrives within `quiet`: the "exactly" half of an exactly-N check.
pub async fn assert_no_more(consumer: &StreamConsumer, quiet: Duration) {
    if let Ok(Ok(m)) = tokio::time::timeout(quiet, consumer.recv()).await {
        panic!(
            "unexpected extra record: partition {} offset {}",
            m.partition(),
            m.offset()
        );
    }
}

/// Converts a consumed message into the [`Sent`] shape for direct comparison.
pub fn as_sent(m: &OwnedMessage) -> Sent {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Sent {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().unwrap_or_default().to_vec(),
        value: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Groups records by partition, each list in consumption order.
pub fn by_partition(records: &[Sent]) -> BTreeMap<i32, Vec<Sent>> {
    let mut out: BTreeMap<i32, Vec<Sent>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

/// `n` keyed records spread over `keys` keys, each with a sequence header so per-key order can
/// be checked after the round trip.
pub fn keyed_records(n: usize, keys: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let key = format!("key-{}", i % keys).into_bytes();
            let value = format!("value-{i}").into_bytes();
            let headers = vec![
                ("seq".to_owned(), (i as u64).to_be_bytes().to_vec()),
                ("origin".to_owned(), b"kbatch-test".to_vec()),
            ];
            (key, value, headers)
        })
        .collect()
}

/// An in-process librdkafka mock cluster with one broker; no container, no network.
pub fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(1).expect("starting librdkafka mock cluster")
}
