//! The test harness: configuration with unique names, the echo batcher, the pipeline (consumer
//! + echo + replier) and readers of outcomes and committed offsets.
//!
//! Invariant: every wait is bounded (`with_timeout`, `WAIT`), and every partition list read
//! from a client is turned into plain data before the client is dropped.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kbatch_core::config::{Config, Device, Framing};
use kbatch_core::inference::ModelInfo;
use kbatch_core::kafka::{
    run_consumer, run_replier, ConsumerInputs, ConsumerReport, KafkaError, ReplierReport,
    SharedTracker,
};
use kbatch_core::model::{ServedModel, Signature};
use kbatch_core::pipeline::ModelId;
use kbatch_core::pipeline::{now_ms, Admitted, Outcome};
use kbatch_core::registry::{Routes, RoutingTable};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Outputs, Reply, Request, Status, Timings, WireCodec};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, create_topic, unique_group, unique_topic, with_timeout, Record, Topics, WAIT,
};

pub const PARTITIONS: i32 = 2;
pub const CALLER_TOPIC_PREFIX: &str = "mock-caller-replies";

pub fn model() -> ModelInfo {
    ModelInfo {
        id: ModelId::new("cnn_lstm", "1"),
        signature: Signature::float32("input", &[2, 3], "output", 3),
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

/// A configuration whose six topics and group are unique to this test.
pub fn config(bootstrap: &str, test: &str) -> Config {
    let mut cfg = Config::default();
    let k = &mut cfg.kafka;
    k.brokers = bootstrap.to_owned();
    k.group_id = unique_group(test);
    k.client_id = format!("kbatch-{test}");
    k.topics.critical = unique_topic(&format!("{test}-critical"));
    k.topics.high = unique_topic(&format!("{test}-high"));
    k.topics.normal = unique_topic(&format!("{test}-normal"));
    k.topics.low = unique_topic(&format!("{test}-low"));
    k.session_timeout_ms = 6000;
    k.commit_interval_ms = 100;
    k.shutdown_timeout_ms = 10_000;
    k.properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    cfg.replies.default_topic = unique_topic(&format!("{test}-replies"));
    cfg.replies.dead_letter_topic = unique_topic(&format!("{test}-dlq"));
    cfg
}

pub async fn create_topics(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    cfg: &Config,
    extra: &[&str],
) {
    let b = &cfg.kafka.brokers;
    for t in Tier::ALL {
        create_topic(
            b,
            Topics::Mock(cluster),
            cfg.kafka.topics.topic(t),
            PARTITIONS,
        )
        .await;
    }
    for t in [&cfg.replies.default_topic, &cfg.replies.dead_letter_topic]
        .into_iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        create_topic(b, Topics::Mock(cluster), t, 1).await;
    }
}

pub fn request(id: &str) -> Request {
    Request {
        request_id: id.into(),
        created_at_ms: now_ms(),
        deadline_ms: None,
        timeout_ms: None,
        model_name: None,
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: None,
        inputs: Inputs::v1(vec![2, 3], vec![0.25; 6]),
    }
}

pub fn encoded(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    WireCodec::new(&Config::default().wire).encode_request(req, Framing::SingleObject, &mut out);
    out
}

/// The fake batcher: answers every admitted request OK, reporting the channel's tier.
pub fn spawn_echo(
    rxs: Vec<mpsc::Receiver<Admitted>>,
    outcomes: mpsc::Sender<Outcome>,
    delay: Duration,
) -> Vec<JoinHandle<()>> {
    rxs.into_iter()
        .zip(Tier::ALL)
        .map(|(mut rx, tier)| {
            let out = outcomes.clone();
            tokio::spawn(async move {
                while let Some(a) = rx.recv().await {
                    tokio::time::sleep(delay).await;
                    let reply = Reply {
                        request_id: a.request.request_id.clone(),
                        status: Status::Ok,
                        error: None,
                        model_name: "cnn_lstm".into(),
                        model_version: "1".into(),
                        outputs: Outputs::V1 {
                            output_shape: vec![3],
                            outputs: vec![0.2, 0.3, 0.5],
                        },
                        tier,
                        timings: Timings::default(),
                        completed_at_ms: now_ms(),
                    };
                    let o = Outcome::Reply {
                        reply: Box::new(reply),
                        reply_to: a.reply_to,
                        origin: a.origin,
                    };
                    out.send(o).await.expect("replier gone");
                }
            })
        })
        .collect()
}

/// The pipeline under test: consumer, echo batcher, replier.
pub struct Pipeline {
    pub cancel: CancellationToken,
    /// Cancels the pipeline when a test panics before `stop`: its consumer runs on a blocking
    /// thread, and the test's runtime would otherwise wait for that thread forever on drop,
    /// turning a failed assertion into a hung test binary.
    _cancel_on_drop: tokio_util::sync::DropGuard,
    pub consumer: JoinHandle<Result<ConsumerReport, KafkaError>>,
    pub replier: JoinHandle<Result<ReplierReport, KafkaError>>,
    pub echo: Vec<JoinHandle<()>>,
    pub tracker: SharedTracker,
}

pub fn start(cfg: &Arc<Config>, tier_capacity: usize, echo_delay: Duration) -> Pipeline {
    // The consumer thread logs through `tracing`; a test run with RUST_LOG shows it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel(tier_capacity)).unzip();
    // As small as the tier channels: a small one makes the consumer wait for the replier.
    let (out_tx, out_rx) = mpsc::channel(tier_capacity);
    let tracker = SharedTracker::new();
    let cancel = CancellationToken::new();
    let echo = spawn_echo(rxs, out_tx.clone(), echo_delay);
    let telemetry = kbatch_core::telemetry::Telemetry::new(cfg).expect("telemetry");
    let inputs = ConsumerInputs {
        tiers: txs.try_into().expect("four senders"),
        outcomes: out_tx,
        telemetry: telemetry.clone(),
        config: tokio::sync::watch::channel(Arc::new(cfg.as_ref().clone())).1,
    };
    let routes = Routes::fixed(RoutingTable::single(Arc::new(ServedModel::unloaded(
        model(),
    ))));
    let consumer = tokio::spawn(run_consumer(
        cfg.clone(),
        routes,
        inputs,
        tracker.clone(),
        cancel.clone(),
    ));
    let replier = tokio::spawn(run_replier(
        cfg.clone(),
        out_rx,
        tracker.clone(),
        telemetry,
        tokio_util::sync::CancellationToken::new(),
    ));
    Pipeline {
        _cancel_on_drop: cancel.clone().drop_guard(),
        cancel,
        consumer,
        replier,
        echo,
        tracker: tracker.clone(),
    }
}

impl Pipeline {
    /// Waits until this instance's consumer owns at least one partition.
    pub async fn wait_assigned(&self) {
        with_timeout("a partition assignment", WAIT, async {
            while self.tracker.assigned().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    pub async fn stop(self) -> (ConsumerReport, ReplierReport) {
        self.cancel.cancel();
        let c = with_timeout("consumer shutdown", WAIT, self.consumer)
            .await
            .unwrap()
            .expect("consumer");
        for e in self.echo {
            with_timeout("echo task", WAIT, e).await.unwrap();
        }
        let r = with_timeout("replier shutdown", WAIT, self.replier)
            .await
            .unwrap()
            .expect("replier");
        (c, r)
    }
}

pub fn reader(bootstrap: &str, topics: &[&str]) -> StreamConsumer {
    let c: StreamConsumer = common::consumer_config(bootstrap, &unique_group("reader"))
        .create()
        .expect("reader");
    c.subscribe(topics).expect("subscribe reader");
    c
}

pub fn headers_of(m: &OwnedMessage) -> HashMap<String, Vec<u8>> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// Per tier partition: (topic, partition, committed offset, end offset), as plain data.
pub async fn committed_and_end(cfg: &Config) -> Vec<(String, i32, Offset, i64)> {
    let probe: BaseConsumer = common::consumer_config(&cfg.kafka.brokers, &cfg.kafka.group_id)
        .create()
        .expect("probe");
    let topics: Vec<String> = Tier::ALL
        .iter()
        .map(|&t| cfg.kafka.topics.topic(t).to_owned())
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for t in &topics {
            for p in 0..PARTITIONS {
                tpl.add_partition(t, p);
            }
        }
        let committed = probe
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        let out = committed
            .elements()
            .iter()
            .map(|e| {
                let (_, high) = probe
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                    .expect("watermarks");
                (e.topic().to_owned(), e.partition(), e.offset(), high)
            })
            .collect();
        // The list borrows nothing from the probe any more: dropping the probe is safe.
        drop(committed);
        out
    })
    .await
    .expect("probe thread")
}

/// Waits until the group's committed offsets reach the end offsets.
pub async fn wait_committed_at_end(cfg: &Config) {
    with_timeout("commits at the end offsets", WAIT, async {
        loop {
            let all = committed_and_end(cfg).await;
            if all
                .iter()
                .all(|(_, _, c, end)| *end == 0 || *c == Offset::Offset(*end))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Asserts the group's committed offset of every tier partition equals its end offset.
pub async fn assert_committed_at_end(cfg: &Config) {
    for (topic, partition, committed, end) in committed_and_end(cfg).await {
        let expected = if end > 0 {
            Offset::Offset(end)
        } else {
            committed
        };
        assert_eq!(
            committed, expected,
            "committed offset of {topic}[{partition}] (end {end})"
        );
    }
}

/// Reads outcomes into `seen` (id → instances that answered it, from the `kbatch-instance`
/// header) until every id in `want` is in it.
pub async fn collect_until(
    reader: &StreamConsumer,
    want: &HashSet<String>,
    seen: &mut HashMap<String, Vec<String>>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.iter().all(|id| seen.contains_key(id)) {
        let Ok(m) = tokio::time::timeout_at(deadline, reader.recv()).await else {
            let mut missing: Vec<_> = want.iter().filter(|id| !seen.contains_key(*id)).collect();
            missing.sort();
            panic!(
                "timed out after {WAIT:?}: {} of {} replies missing: {missing:?}",
                missing.len(),
                want.len()
            );
        };
        let m = m.expect("reader").detach();
        let id = String::from_utf8(m.key().expect("key").to_vec()).unwrap();
        let instance = String::from_utf8(headers_of(&m)["kbatch-instance"].clone()).unwrap();
        seen.entry(id).or_default().push(instance);
    }
}

pub fn requests(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            (id.clone().into_bytes(), encoded(&request(&id)), Vec::new())
        })
        .collect()
}

pub fn ids(records: &[Record]) -> HashSet<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.0.clone()).unwrap())
        .collect()
}
