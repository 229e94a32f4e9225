//! Both repliers against librdkafka's in-process mock cluster: the paths the pipeline tests do
//! not reach without a real broker (a refused reply, a too-large dead letter, a poison record,
//! a transaction).

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{run_replier, run_transactional_replier, ReplierReport};
use crate::config::Config;
use crate::kafka::SharedTracker;
use crate::pipeline::fixtures::admitted;
use crate::pipeline::Outcome;
use crate::telemetry::Telemetry;
use crate::tier::Tier;
use crate::wire::{DeadLetter, Status};

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A cluster with the reply and dead-letter topics, and a configuration pointing at it.
fn setup(test: &str) -> (Cluster, Arc<Config>) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let mut cfg = Config::default();
    cfg.kafka.brokers = cluster.bootstrap_servers();
    cfg.kafka.client_id = format!("kbatch-{test}");
    cfg.kafka.group_id = format!("kbatch-{test}");
    cfg.kafka.commit_interval_ms = 50;
    cfg.replies.default_topic = format!("{test}-replies");
    cfg.replies.dead_letter_topic = format!("{test}-dlq");
    // The request topic too: a transaction commits offsets of its records.
    let requests = cfg.kafka.topics.topic(Tier::Normal).to_owned();
    for topic in [
        &cfg.replies.default_topic,
        &cfg.replies.dead_letter_topic,
        &requests,
    ] {
        cluster.create_topic(topic, 1, 1).expect("topic");
    }
    (cluster, Arc::new(cfg))
}

/// An outcome of `kind` for the record at (Normal, 0, `offset`), replying to `reply_topic`.
fn outcome(kind: &str, offset: i64, reply_topic: &str) -> Outcome {
    let mut a = admitted(
        &format!("r-{offset}"),
        (Tier::Normal, 0, offset),
        Tier::Normal,
        tokio::time::Instant::now(),
    );
    a.origin.epoch = 1;
    a.reply_to.topic = reply_topic.to_owned();
    match kind {
        "reply" => Outcome::error(a, Status::Rejected, "full".into(), 0),
        "poison" => Outcome::poison(a, "nan".into(), 0),
        _ => Outcome::DeadLetter {
            letter: Box::new(DeadLetter {
                source_topic: "requests".into(),
                source_partition: 0,
                source_offset: offset,
                key: None,
                value: Some(vec![0; 64]),
                headers: Vec::new(),
                error_kind: "unknown_framing".into(),
                error: "not a request".into(),
                failed_at_ms: 0,
                processor: "kbatch".into(),
            }),
            key: None,
            origin: a.origin,
        },
    }
}

/// A tracker with (Normal, 0) assigned at epoch 1 and `offsets` pending.
fn tracker(offsets: &[i64]) -> SharedTracker {
    let tracker = SharedTracker::new();
    assert_eq!(tracker.assign(Tier::Normal, 0), 1);
    for &offset in offsets {
        tracker.track(Tier::Normal, 0, offset);
    }
    tracker
}

/// Which replier a test runs.
#[derive(Clone, Copy)]
enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

/// Runs `delivery`'s replier over `outcomes` until its channel closes; returns its report.
async fn replier(
    delivery: Delivery,
    cfg: Arc<Config>,
    tracker: &SharedTracker,
    outcomes: Vec<Outcome>,
) -> ReplierReport {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tx, rx) = mpsc::channel(16);
    let telemetry = Telemetry::new(&cfg).expect("telemetry");
    let (tracker, stop) = (tracker.clone(), CancellationToken::new());
    let replier = match delivery {
        Delivery::AtLeastOnce => tokio::spawn(run_replier(cfg, rx, tracker, telemetry, stop)),
        Delivery::ExactlyOnce => {
            tokio::spawn(run_transactional_replier(cfg, rx, tracker, telemetry, stop))
        }
    };
    for o in outcomes {
        tx.send(o).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(std::time::Duration::from_secs(60), replier)
        .await
        .expect("replier finished in time")
        .unwrap()
        .expect("replier ran")
}

async fn at_least_once(
    cfg: Arc<Config>,
    tracker: &SharedTracker,
    outcomes: Vec<Outcome>,
) -> ReplierReport {
    replier(Delivery::AtLeastOnce, cfg, tracker, outcomes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_a_dead_letter_and_a_poison_record_are_delivered_and_done() {
    let (_cluster, cfg) = setup("alo-ok");
    let tracker = tracker(&[0, 1, 2]);
    let replies = cfg.replies.default_topic.clone();
    let outcomes = vec![
        outcome("reply", 0, &replies),
        outcome("letter", 1, &replies),
        outcome("poison", 2, &replies),
    ];
    let report = at_least_once(cfg, &tracker, outcomes).await;
    assert_eq!(report.replies_with(Status::Rejected), 1);
    assert_eq!(report.replies_with(Status::ModelError), 1);
    assert_eq!(report.dead_letters, 2);
    assert_eq!((report.reply_fallbacks, report.delivery_failures), (0, 0));
    assert_eq!(tracker.total_pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_missing_topic_falls_back_to_the_dead_letter_topic() {
    let (_cluster, cfg) = setup("alo-fallback");
    let tracker = tracker(&[0]);
    let outcomes = vec![outcome("reply", 0, "alo-fallback-no-such-topic")];
    let report = at_least_once(cfg, &tracker, outcomes).await;
    assert_eq!(report.total_replies(), 0);
    assert_eq!((report.dead_letters, report.reply_fallbacks), (1, 1));
    assert_eq!(report.delivery_failures, 0);
    assert_eq!(tracker.total_pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_refused_as_too_large_is_trimmed_and_delivered() {
    let (cluster, cfg) = setup("alo-trim");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let tracker = tracker(&[0]);
    let replies = cfg.replies.default_topic.clone();
    let report = at_least_once(cfg, &tracker, vec![outcome("letter", 0, &replies)]).await;
    assert_eq!(report.dead_letters, 1);
    assert_eq!((report.delivery_failures, report.retries), (0, 0));
    assert_eq!(tracker.total_pending(), 0);
}

/// A tracker like [`tracker`] plus a group membership for transactions to commit offsets under
/// (the consumer's, which here never joins: the mock cluster takes the offsets all the same).
fn transactional_tracker(cfg: &Config, offsets: &[i64]) -> (SharedTracker, BaseConsumer) {
    let tracker = tracker(offsets);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("group.id", &cfg.kafka.group_id)
        .create()
        .expect("consumer");
    tracker.set_group(consumer.group_metadata());
    (tracker, consumer)
}

async fn exactly_once(
    cfg: Arc<Config>,
    tracker: &SharedTracker,
    outcomes: Vec<Outcome>,
) -> ReplierReport {
    replier(Delivery::ExactlyOnce, cfg, tracker, outcomes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_delivers_a_reply_and_a_poison_record() {
    let (_cluster, cfg) = setup("eos");
    let (tracker, _consumer) = transactional_tracker(&cfg, &[0, 1]);
    let replies = cfg.replies.default_topic.clone();
    let outcomes = vec![
        outcome("reply", 0, &replies),
        outcome("poison", 1, &replies),
    ];
    let report = exactly_once(cfg, &tracker, outcomes).await;
    assert_eq!(report.replies_with(Status::Rejected), 1);
    assert_eq!(report.replies_with(Status::ModelError), 1);
    assert_eq!(report.dead_letters, 1);
    assert_eq!(tracker.total_pending(), 0, "settled once committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sends_a_refused_reply_to_the_dead_letter_topic() {
    let (_cluster, cfg) = setup("eos-fallback");
    let (tracker, _consumer) = transactional_tracker(&cfg, &[0, 1]);
    let replies = cfg.replies.default_topic.clone();
    let outcomes = vec![
        outcome("reply", 0, "eos-fallback-no-such-topic"),
        outcome("reply", 1, &replies),
    ];
    let report = exactly_once(cfg, &tracker, outcomes).await;
    assert_eq!((report.dead_letters, report.reply_fallbacks), (1, 1));
    assert_eq!(report.replies_with(Status::Rejected), 1);
    assert_eq!(tracker.total_pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_never_produces_outcomes_of_an_old_assignment() {
    let (_cluster, cfg) = setup("eos-stale");
    let (tracker, _consumer) = transactional_tracker(&cfg, &[0]);
    let replies = cfg.replies.default_topic.clone();
    // The partition was revoked and assigned again since offset 5 was read (epoch 1 is gone).
    tracker.revoke(Tier::Normal, 0);
    assert_eq!(tracker.assign(Tier::Normal, 0), 2);
    tracker.track(Tier::Normal, 0, 0);
    let mut current = outcome("reply", 0, &replies);
    if let Outcome::Reply { origin, .. } = &mut current {
        origin.epoch = 2;
    }
    let report = exactly_once(cfg, &tracker, vec![outcome("reply", 5, &replies), current]).await;
    assert_eq!(report.stale_dropped, 1);
    assert_eq!(
        report.replies_with(Status::Rejected),
        1,
        "only the current one"
    );
    assert_eq!(tracker.total_pending(), 0);
}
