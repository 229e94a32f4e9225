//! The load generator against a stand-in server: an "echo server" that reads the tier topics,
//! answers each request on its reply topic (OK, or INVALID_INPUT when validation fails), skips
//! undecodable records and answers some requests twice. Checks matching, duplicate and unknown
//! counting, statuses and per-tier latency end to end through a broker.
//!
//! Invariant: every test owns its broker, topics and run id. The MockCluster test runs in plain
//! `cargo test` (small counts: the mock consumes slowly, see docs/bench.md); the tansu-binary
//! test needs `scripts/install-tansu.sh` and is ignored by default; the container test needs the
//! `container-tests` feature.
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{create_topic, mock_cluster, with_timeout, Topics, WAIT};
use kbatch::bench::{self, BenchReport, RecordFormat, RunControl, RunSpec, TierMix};
use kbatch_core::config::{Config, Framing};
use kbatch_core::tensor::{DType, TensorSpec};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{validate, Outputs, Reply, SchemaVersion, Status, Timings, WireCodec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;
/// Every this-many-th request is answered twice.
const DUP_EVERY: u64 = 25;

/// Reads every tier topic from the start (no group: no join delay) and answers each request.
async fn echo_server(
    bootstrap: String,
    cfg: Config,
    stop: CancellationToken,
    replies: Arc<AtomicU64>,
) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bench-echo")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("echo consumer");
    let mut tpl = TopicPartitionList::new();
    for tier in Tier::ALL {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(cfg.kafka.topics.topic(tier), p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).expect("echo assign");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "1")
        .create()
        .expect("echo producer");
    let codec = WireCodec::new(&cfg.wire);
    // The bundled default model's signature (cnn_lstm: 64 time steps x 16 features -> 3).
    let inputs = [TensorSpec::fixed("input", DType::Float32, &[64, 16])];
    let outputs = [TensorSpec::fixed("output", DType::Float32, &[3])];
    let mut seen = 0u64;
    let mut buf = Vec::new();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m.expect("echo recv"),
        };
        let Ok(mut req) = codec.decode_request(msg.payload().unwrap_or_default()) else {
            continue; // a real server dead-letters it; no reply either way
        };
        let tier = cfg.kafka.topics.tier_of(msg.topic()).expect("a tier topic");
        let ok = validate(&mut req, &inputs, &outputs).is_ok();
        let reply = Reply {
            request_id: req.request_id.clone(),
            status: if ok { Status::Ok } else { Status::InvalidInput },
            error: (!ok).then(|| "bad shape".to_owned()),
            model_name: "echo".into(),
            model_version: "1".into(),
            outputs: if ok {
                Outputs::V1 {
                    output_shape: vec![3],
                    outputs: vec![0.2, 0.3, 0.5],
                }
            } else {
                Outputs::none(SchemaVersion::V1)
            },
            tier,
            timings: Timings {
                queue_wait_us: 1,
                batch_size: if ok { 1 + (seen % 8) as i32 } else { 0 },
                inference_us: 1,
                end_to_end_us: 2,
            },
            completed_at_ms: req.created_at_ms,
        };
        buf.clear();
        codec.encode_reply(&reply, &mut buf);
        let topic = req.reply_topic.expect("bench sets reply_topic");
        seen += 1;
        let copies = if seen.is_multiple_of(DUP_EVERY) { 2 } else { 1 };
        for _ in 0..copies {
            let rec = FutureRecord::to(&topic)
                .key(msg.key().unwrap_or_default())
                .payload(&buf);
            producer
                .send_result(rec)
                .map_err(|(e, _)| e)
                .expect("echo enqueue");
            replies.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Flush outstanding replies before the test inspects anything.
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
}

/// A reply for a request id no run sent.
async fn send_foreign_reply(bootstrap: &str, cfg: &Config, topic: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let reply = Reply {
        request_id: "someone-else-1".into(),
        status: Status::Ok,
        error: None,
        model_name: "x".into(),
        model_version: "1".into(),
        outputs: Outputs::V1 {
            output_shape: vec![3],
            outputs: vec![0.0; 3],
        },
        tier: Tier::Low,
        timings: Timings::default(),
        completed_at_ms: 0,
    };
    let mut buf = Vec::new();
    WireCodec::new(&cfg.wire).encode_reply(&reply, &mut buf);
    producer
        .send(FutureRecord::<(), _>::to(topic).payload(&buf), WAIT)
        .await
        .map_err(|(e, _)| e)
        .expect("foreign reply");
}

fn spec(bootstrap: &str, cfg: &Config, total: u64, rate: f64, bad: f64) -> RunSpec {
    let run_id = bench::new_run_id();
    RunSpec {
        brokers: bootstrap.to_owned(),
        properties: vec![],
        topics: cfg.kafka.topics.clone(),
        reply_topic: format!("bench-echo-replies-{run_id}"),
        reply_from_start: true,
        wire: cfg.wire.clone(),
        format: RecordFormat {
            framing: Framing::Confluent,
            contract: SchemaVersion::V1,
        },
        correlation_header: cfg.replies.correlation_header.clone(),
        total,
        rate,
        mix: TierMix::default(),
        bad_fraction: bad,
        timeout_ms: None,
        seed: 9,
        wait: Duration::from_secs(20),
        run_id,
    }
}

/// Runs the load against the echo server; returns the report and the number of live lines.
async fn run_against_echo(bootstrap: &str, cfg: &Config, spec: &RunSpec) -> (BenchReport, usize) {
    let stop = CancellationToken::new();
    let replies = Arc::new(AtomicU64::new(0));
    let echo = tokio::spawn(echo_server(
        bootstrap.to_owned(),
        cfg.clone(),
        stop.clone(),
        replies.clone(),
    ));
    send_foreign_reply(bootstrap, cfg, &spec.reply_topic).await;
    let mut lines = 0usize;
    let mut live = |s: &bench::LiveStats| {
        lines += 1;
        eprintln!("{s}");
    };
    let report = with_timeout(
        "the bench run",
        Duration::from_secs(90),
        bench::execute(spec, &RunControl::default(), Some(&mut live)),
    )
    .await
    .expect("bench run");
    stop.cancel();
    with_timeout("the echo server to stop", WAIT, echo)
        .await
        .unwrap();
    eprintln!("{}", report.table());
    (report, lines)
}

fn check(report: &BenchReport, spec: &RunSpec) {
    assert_eq!(report.planned, spec.total);
    assert_eq!(report.sent, spec.total, "every record acknowledged");
    assert_eq!(report.send_errors, 0);
    assert_eq!(
        report.expected_replies,
        spec.total - report.sent_undecodable
    );
    assert_eq!(report.answered, report.expected_replies, "{report:#?}");
    assert_eq!(report.missing, 0);
    assert_eq!(report.unknown, 1, "the foreign reply");
    assert_eq!(report.unexpected_status, 0);
    // The echo server doubles every DUP_EVERY-th answered request; the collector may stop
    // before the last extra copies arrive, never count more.
    let doubled = report.answered / DUP_EVERY;
    assert!(
        report.duplicates <= doubled && report.duplicates + 1 >= doubled,
        "duplicates {} vs {doubled} doubled",
        report.duplicates
    );
    let ok = report.statuses.get("OK").copied().unwrap_or(0);
    let invalid = report.statuses.get("INVALID_INPUT").copied().unwrap_or(0);
    assert_eq!(ok + invalid, report.answered);
    assert_eq!(invalid, report.sent_invalid);
    let all = report.latency.iter().find(|l| l.tier == "all").unwrap();
    assert_eq!(all.count, report.answered);
    assert!(all.p50_us > 0 && all.p50_us <= all.p99_us && all.p99_us <= all.max_us);
    let per_tier: u64 = report
        .latency
        .iter()
        .filter(|l| l.tier != "all")
        .map(|l| l.count)
        .sum();
    assert_eq!(per_tier, report.answered);
    assert!(report.throughput.from_first_send.unwrap() > 0.0);
    assert!(report.batch_size.as_ref().unwrap().max <= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_matches_replies_from_an_echo_server_on_the_mock_cluster() {
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let cfg = Config::default();
    let spec = spec(&bootstrap, &cfg, 300, 150.0, 0.1);
    for t in kbatch_core::kafka::all_topics(&cfg)
        .iter()
        .chain([&spec.reply_topic])
    {
        create_topic(&bootstrap, Topics::Mock(&cluster), t, PARTITIONS).await;
    }
    // Existing topics are only checked (the mock has no CreateTopics API).
    kbatch_core::kafka::ensure_topics(&bootstrap, &cfg, PARTITIONS)
        .await
        .unwrap();
    let (report, lines) = run_against_echo(&bootstrap, &cfg, &spec).await;
    check(&report, &spec);
    assert!(report.sent_undecodable > 0 && report.sent_invalid > 0);
    // 300 requests at 150/s: about two seconds of sending, one live line per second.
    assert!(lines >= 1, "no live lines");
    assert!(
        report.send_seconds > 1.5 && report.send_seconds < 3.0,
        "{}",
        report.send_seconds
    );
    assert!(report.max_send_lag_ms < 500.0);
}

fn tansu_bin() -> PathBuf {
    std::env::var_os("KBATCH_TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(kbatch::launcher::tansu::DEFAULT_BIN)
        })
}

/// `cargo test --test bench_echo -- --ignored` after `scripts/install-tansu.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu binary: scripts/install-tansu.sh"]
async fn bench_backlog_and_paced_runs_against_a_tansu_process() {
    let tansu = kbatch::launcher::TansuProcess::start(&tansu_bin())
        .await
        .expect("start tansu");
    let bootstrap = tansu.bootstrap().to_owned();
    let cfg = Config::default();
    kbatch_core::kafka::ensure_topics(&bootstrap, &cfg, PARTITIONS)
        .await
        .expect("create topics");

    let backlog = spec(&bootstrap, &cfg, 5_000, 0.0, 0.02);
    kbatch_core::kafka::ensure_named_topics(
        &bootstrap,
        &[],
        std::slice::from_ref(&backlog.reply_topic),
        PARTITIONS,
    )
    .await
    .unwrap();
    let (report, _) = run_against_echo(&bootstrap, &cfg, &backlog).await;
    check(&report, &backlog);

    let paced = spec(&bootstrap, &cfg, 2_000, 1000.0, 0.0);
    kbatch_core::kafka::ensure_named_topics(
        &bootstrap,
        &[],
        std::slice::from_ref(&paced.reply_topic),
        PARTITIONS,
    )
    .await
    .unwrap();
    let (report, _) = run_against_echo(&bootstrap, &cfg, &paced).await;
    // The echo server re-reads the first run's requests too; their replies go to the first
    // run's topic, so this run still sees only its own (plus the foreign one).
    check(&report, &paced);
    assert!(
        report.send_seconds > 1.8 && report.send_seconds < 2.5,
        "{}",
        report.send_seconds
    );
    tansu.stop().await;
}

#[cfg(feature = "container-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_matches_replies_from_an_echo_server_on_a_broker_container() {
    let broker = common::shared_broker().await;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let cfg = Config::default();
    kbatch_core::kafka::ensure_topics(&bootstrap, &cfg, PARTITIONS)
        .await
        .expect("create topics");
    let spec = spec(&bootstrap, &cfg, 2_000, 500.0, 0.05);
    kbatch_core::kafka::ensure_named_topics(
        &bootstrap,
        &[],
        std::slice::from_ref(&spec.reply_topic),
        PARTITIONS,
    )
    .await
    .unwrap();
    let (report, _) = run_against_echo(&bootstrap, &cfg, &spec).await;
    check(&report, &spec);
}
