//! `kbatch::kafka` end to end against librdkafka's in-process mock cluster: the consumer and the
//! replier around a fake "echo batcher", no model, no container (plain `cargo test`).
//!
//! Invariant checked: every consumed record gets exactly one outcome on the right topic (its
//! reply topic or the DLQ) with the right headers and status, and after shutdown the group's
//! committed offsets are the end offsets; with a tiny tier channel, intake pauses and nothing
//! is lost.
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{
    consume_n, create_topic, mock_cluster, produce_all, producer, unique_group, unique_topic,
    with_timeout, Record, Sent, Topics, WAIT,
};
use kbatch::config::{Config, Device, Framing};
use kbatch::inference::ModelInfo;
use kbatch::kafka::{
    run_consumer, run_replier, ConsumerInputs, ConsumerReport, ReplierReport, SharedTracker,
};
use kbatch::pipeline::{now_ms, Admitted, Outcome};
use kbatch::tier::Tier;
use kbatch::wire::{Reply, Request, Status, Timings, WireCodec};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;
const CALLER_TOPIC_PREFIX: &str = "mock-caller-replies";

fn model() -> ModelInfo {
    ModelInfo {
        name: "cnn_lstm".into(),
        version: "1".into(),
        input_name: "input".into(),
        output_name: "output".into(),
        input_shape: vec![2, 3],
        output_size: 3,
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }
}

/// A configuration whose six topics and group are unique to this test.
fn config(bootstrap: &str, test: &str) -> Config {
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

async fn create_topics(
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

fn request(id: &str) -> Request {
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
        shape: vec![2, 3],
        data: vec![0.25; 6],
    }
}

fn encoded(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    WireCodec::new(&Config::default().wire).encode_request(req, Framing::SingleObject, &mut out);
    out
}

/// The fake batcher: answers every admitted request OK, reporting the channel's tier.
fn spawn_echo(
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
                        output_shape: vec![3],
                        outputs: vec![0.2, 0.3, 0.5],
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
struct Pipeline {
    cancel: CancellationToken,
    consumer: JoinHandle<Result<ConsumerReport, kbatch::kafka::KafkaError>>,
    replier: JoinHandle<Result<ReplierReport, kbatch::kafka::KafkaError>>,
    echo: Vec<JoinHandle<()>>,
}

fn start(cfg: &Arc<Config>, tier_capacity: usize, echo_delay: Duration) -> Pipeline {
    // The consumer thread logs through `tracing`; a test run with RUST_LOG shows it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel(tier_capacity)).unzip();
    let (out_tx, out_rx) = mpsc::channel(1024);
    let tracker = SharedTracker::new();
    let cancel = CancellationToken::new();
    let echo = spawn_echo(rxs, out_tx.clone(), echo_delay);
    let inputs = ConsumerInputs {
        tiers: txs.try_into().expect("four senders"),
        outcomes: out_tx,
    };
    let consumer = tokio::spawn(run_consumer(
        cfg.clone(),
        model(),
        inputs,
        tracker.clone(),
        cancel.clone(),
    ));
    let replier = tokio::spawn(run_replier(cfg.clone(), out_rx, tracker));
    Pipeline {
        cancel,
        consumer,
        replier,
        echo,
    }
}

impl Pipeline {
    async fn stop(self) -> (ConsumerReport, ReplierReport) {
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

fn reader(bootstrap: &str, topics: &[&str]) -> StreamConsumer {
    let c: StreamConsumer = common::consumer_config(bootstrap, &unique_group("reader"))
        .create()
        .expect("reader");
    c.subscribe(topics).expect("subscribe reader");
    c
}

fn headers_of(m: &OwnedMessage) -> HashMap<String, Vec<u8>> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// Per tier partition: (topic, partition, committed offset, end offset), as plain data.
async fn committed_and_end(cfg: &Config) -> Vec<(String, i32, Offset, i64)> {
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

/// Asserts the group's committed offset of every tier partition equals its end offset.
async fn assert_committed_at_end(cfg: &Config) {
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

/// Reads outcomes until every id in `want` has been seen; returns how often each id was seen
/// and by which instance (`kbatch-instance` header).
async fn collect_until(
    reader: &StreamConsumer,
    want: &HashSet<String>,
) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    with_timeout("all replies", WAIT, async {
        while !want.iter().all(|id| seen.contains_key(id)) {
            let m = reader.recv().await.expect("reader").detach();
            let id = String::from_utf8(m.key().expect("key").to_vec()).unwrap();
            let instance = String::from_utf8(headers_of(&m)["kbatch-instance"].clone()).unwrap();
            seen.entry(id).or_default().push(instance);
        }
    })
    .await;
    seen
}

fn requests(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            (id.clone().into_bytes(), encoded(&request(&id)), Vec::new())
        })
        .collect()
}

fn ids(records: &[Record]) -> HashSet<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.0.clone()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_gets_exactly_one_outcome_and_offsets_are_committed() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-kafka");
    let caller_topic = unique_topic(CALLER_TOPIC_PREFIX);
    create_topics(&cluster, &cfg, &[&caller_topic]).await;
    let cfg = Arc::new(cfg);
    let pipeline = start(&cfg, 64, Duration::ZERO);

    // Per tier topic: valid (some demoted, one with its own reply topic), undecodable, invalid,
    // unknown model. Expected: (topic, status or "DLQ", served tier).
    let mut expected: BTreeMap<String, (String, &'static str, Option<Tier>)> = BTreeMap::new();
    let p = producer(&cfg.kafka.brokers);
    for tier in Tier::ALL {
        let mut records: Vec<Record> = Vec::new();
        let headers = |id: &str| {
            vec![
                (
                    "correlation-id".to_owned(),
                    format!("corr-{id}").into_bytes(),
                ),
                ("traceparent".to_owned(), b"00-t-s-01".to_vec()),
            ]
        };
        for i in 0..8 {
            let id = format!("{tier}-ok-{i}");
            let mut req = request(&id);
            let mut reply_topic = cfg.replies.default_topic.clone();
            if i % 4 == 1 {
                req.priority = Some(Tier::Low);
            }
            if i == 2 {
                req.reply_topic = Some(caller_topic.clone());
                reply_topic = caller_topic.clone();
            }
            let served = tier.demoted_to(req.priority);
            expected.insert(id.clone(), (reply_topic, "OK", Some(served)));
            records.push((id.clone().into_bytes(), encoded(&req), headers(&id)));
        }
        let bad = format!("{tier}-garbage");
        expected.insert(
            bad.clone(),
            (cfg.replies.dead_letter_topic.clone(), "DLQ", None),
        );
        records.push((
            bad.into_bytes(),
            b"\x07not a request".to_vec(),
            vec![("x".to_owned(), b"y".to_vec())],
        ));
        let id = format!("{tier}-nan");
        let mut req = request(&id);
        req.data[0] = f32::NAN;
        expected.insert(
            id.clone(),
            (
                cfg.replies.default_topic.clone(),
                "INVALID_INPUT",
                Some(tier),
            ),
        );
        records.push((id.clone().into_bytes(), encoded(&req), headers(&id)));
        let id = format!("{tier}-other-model");
        let mut req = request(&id);
        req.model_name = Some("other".into());
        expected.insert(
            id.clone(),
            (
                cfg.replies.default_topic.clone(),
                "UNKNOWN_MODEL",
                Some(tier),
            ),
        );
        records.push((id.clone().into_bytes(), encoded(&req), headers(&id)));
        produce_all(&p, cfg.kafka.topics.topic(tier), &records).await;
    }

    let out_topics = [
        cfg.replies.default_topic.as_str(),
        caller_topic.as_str(),
        cfg.replies.dead_letter_topic.as_str(),
    ];
    let got = consume_n(
        &reader(&cfg.kafka.brokers, &out_topics),
        expected.len(),
        WAIT,
    )
    .await;
    let (consumer_report, replier_report) = pipeline.stop().await;

    let codec = WireCodec::new(&cfg.wire);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &got {
        let key = String::from_utf8(m.key().expect("outcome key").to_vec()).unwrap();
        *seen.entry(key.clone()).or_default() += 1;
        let (topic, status, served) = &expected[&key];
        assert_eq!(m.topic(), topic, "topic of {key}");
        let h = headers_of(m);
        assert_eq!(h["kbatch-instance"], cfg.kafka.client_id.as_bytes());
        if *status == "DLQ" {
            let dl = codec
                .decode_dead_letter(m.payload().unwrap())
                .expect("dead letter");
            assert_eq!(dl.error_kind, "unknown_framing");
            assert_eq!(dl.value.as_deref(), Some(&b"\x07not a request"[..]));
            assert_eq!(dl.headers.len(), 1);
            assert_eq!(dl.processor, cfg.kafka.client_id);
            continue;
        }
        let reply = codec.decode_reply(m.payload().unwrap()).expect("reply");
        assert_eq!(reply.request_id, key);
        assert_eq!(reply.status.as_str(), *status, "status of {key}");
        assert_eq!(Some(reply.tier), *served, "served tier of {key}");
        assert_eq!(h["request-id"], key.as_bytes());
        assert_eq!(h["correlation-id"], format!("corr-{key}").into_bytes());
        assert_eq!(h["traceparent"], b"00-t-s-01");
        assert_eq!(h["kbatch-status"], status.as_bytes());
    }
    assert_eq!(seen.len(), expected.len(), "some record got no outcome");
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicated outcomes: {seen:?}"
    );

    assert_eq!(consumer_report.consumed, expected.len() as u64);
    assert_eq!(
        (
            consumer_report.dead_lettered,
            consumer_report.invalid,
            consumer_report.unknown_model
        ),
        (4, 4, 4)
    );
    assert_eq!(consumer_report.admitted, 32);
    assert_eq!(consumer_report.pending_at_exit, 0);
    assert_eq!(replier_report.replies_with(Status::Ok), 32);
    assert_eq!(replier_report.dead_letters, 4);
    assert_eq!(replier_report.delivery_failures, 0);
    assert_committed_at_end(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tier_channel_pauses_intake_without_losing_records() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-pause");
    create_topics(&cluster, &cfg, &[]).await;
    let cfg = Arc::new(cfg);
    // One slot per tier and a slow batcher: the consumer outruns it by far.
    let pipeline = start(&cfg, 1, Duration::from_millis(5));

    let n = 120;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let id = format!("p-{i}");
            (id.clone().into_bytes(), encoded(&request(&id)), Vec::new())
        })
        .collect();
    produce_all(
        &producer(&cfg.kafka.brokers),
        cfg.kafka.topics.topic(Tier::Normal),
        &records,
    )
    .await;
    let got = consume_n(
        &reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]),
        n,
        WAIT,
    )
    .await;
    let (consumer_report, replier_report) = pipeline.stop().await;

    let mut ids: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "lost or duplicated replies");
    assert!(
        consumer_report.paused > 0,
        "intake never paused: {consumer_report:?}"
    );
    assert_eq!(consumer_report.admitted, n as u64);
    assert_eq!(replier_report.replies_with(Status::Ok), n as u64);
    assert_committed_at_end(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_stream_never_commits_past_an_unanswered_record() {
    let cluster = mock_cluster();
    let mut cfg = config(&cluster.bootstrap_servers(), "mock-cancel");
    create_topics(&cluster, &cfg, &[]).await;
    cfg.kafka.shutdown_timeout_ms = 2000;
    let cfg = Arc::new(cfg);
    let reader = reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]);
    let records = requests("c", 150);
    let sent: Vec<Sent> = produce_all(
        &producer(&cfg.kafka.brokers),
        cfg.kafka.topics.topic(Tier::Normal),
        &records,
    )
    .await;

    // Slow batcher, tiny channels: when cancelled, records are stashed, queued and in flight.
    let first = start(&cfg, 1, Duration::from_millis(10));
    consume_n(&reader, 20, WAIT).await;
    let (c1, r1) = first.stop().await;
    let answered: HashSet<String> = consume_n(&reader, (r1.total_replies() - 20) as usize, WAIT)
        .await
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    assert!(
        r1.total_replies() < 150,
        "cancel came too late to test anything: {c1:?}"
    );
    for (topic, partition, committed, _) in committed_and_end(&cfg).await {
        let Offset::Offset(c) = committed else {
            continue;
        };
        for r in sent.iter().filter(|r| {
            topic == cfg.kafka.topics.normal && r.partition == partition && r.offset < c
        }) {
            let id = String::from_utf8(r.key.clone()).unwrap();
            assert!(
                answered.contains(&id),
                "offset {} of partition {partition} committed ({c}) without a reply",
                r.offset
            );
        }
    }

    // A restarted instance answers the rest: at-least-once, nothing lost.
    let second = start(&cfg, 64, Duration::ZERO);
    let rest: HashSet<String> = ids(&records).difference(&answered).cloned().collect();
    collect_until(&reader, &rest).await;
    second.stop().await;
    assert_committed_at_end(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_takes_over_partitions_without_losing_records() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-rebalance");
    create_topics(&cluster, &cfg, &[]).await;
    let cfg_a = Arc::new(cfg.clone());
    let mut cfg_b = cfg.clone();
    cfg_b.kafka.client_id = format!("{}-b", cfg.kafka.client_id);
    let cfg_b = Arc::new(cfg_b);
    let reader = reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]);
    let p = producer(&cfg.kafka.brokers);

    let a = start(&cfg_a, 4, Duration::from_millis(2));
    let batch1 = requests("one", 60);
    produce_all(&p, cfg.kafka.topics.topic(Tier::High), &batch1).await;
    collect_until(&reader, &ids(&batch1[..10])).await;
    // B joins while A has work in flight: A's revoke drains it and commits before giving up.
    let b = start(&cfg_b, 4, Duration::from_millis(2));
    let batch2 = requests("two", 120);
    produce_all(&p, cfg.kafka.topics.topic(Tier::High), &batch2[..60]).await;
    produce_all(&p, cfg.kafka.topics.topic(Tier::Low), &batch2[60..]).await;
    let mut want = ids(&batch1);
    want.extend(ids(&batch2));
    let seen = collect_until(&reader, &want).await;
    let (ca, _) = a.stop().await;
    let (cb, _) = b.stop().await;

    assert!(
        cb.consumed > 0,
        "the second instance never got a partition: {cb:?}"
    );
    assert!(ca.consumed > 0);
    let instances: HashSet<&String> = seen.values().flatten().collect();
    assert_eq!(instances.len(), 2, "both instances answered");
    // Eager rebalancing with a drained revoke: nothing should be answered twice.
    let dups: Vec<_> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(dups.is_empty(), "answered twice: {dups:?}");
    assert_committed_at_end(&cfg).await;
}
