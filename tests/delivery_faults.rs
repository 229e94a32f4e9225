//! Delivery faults a hostile or unlucky producer can cause, each on the real broker (issue 16).
//! Every record ends in exactly one documented outcome, the process keeps serving, and no
//! partition's commit point stops moving while its records can be answered:
//! - a header name that is not UTF-8 (Kafka does not check; C clients write raw bytes);
//! - producer-set timestamps at the ends of the 64-bit range;
//! - a `reply_topic` that is not a Kafka topic name, one outside the allow-list, one past the
//!   cap on distinct names;
//! - requests demoted to a full lower tier, which must not hold back their source topic;
//! - under exactly-once, a reply its topic refuses (the dead-letter topic takes it) and
//!   outcomes of an assignment revoked while they were in flight (never produced);
//! - a broker outage longer than the replier's old attempts, and an offset commit that fails
//!   while its partition then stays idle (both on a broker of their own, frozen).
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pipeline::*;
use common::serving::{serve, serve_observed, stop};
use common::{producer, shared_broker, start_broker, unique_group, with_timeout, WAIT};
use kbatch_core::config::{Config, Delivery};
use kbatch_core::kafka::REPLY_UNDELIVERABLE;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{DeadLetter, Framing, Request, Status, WireCodec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedHeaders, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn encoded(cfg: &Config, req: &Request) -> Vec<u8> {
    let mut buf = Vec::new();
    WireCodec::new(&cfg.wire).encode_request(req, Framing::Confluent, &mut buf);
    buf
}

/// Headers holding `name` byte for byte (rdkafka's own API takes names as `&str` only).
fn raw_headers(name: &[u8], value: &[u8]) -> OwnedHeaders {
    let headers = OwnedHeaders::new();
    let native =
        headers.as_borrowed() as *const BorrowedHeaders as *mut rdkafka_sys::rd_kafka_headers_t;
    // SAFETY: `native` is the header list `headers` owns (an `OwnedHeaders` is a pointer to
    // librdkafka's list, and `as_borrowed` views the same list); librdkafka copies the name and
    // value, whose lengths are passed explicitly.
    let err = unsafe {
        rdkafka_sys::rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(
        err,
        rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    headers
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    headers: Option<OwnedHeaders>,
    timestamp: Option<i64>,
) {
    let mut rec = FutureRecord::to(topic).key(key).payload(value);
    if let Some(h) = headers {
        rec = rec.headers(h);
    }
    if let Some(ts) = timestamp {
        rec = rec.timestamp(ts);
    }
    with_timeout(
        "a request delivery",
        WAIT,
        producer.send(rec, Duration::from_secs(10)),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
}

/// A reader of `topic` from the start with its own group, `read_committed` when asked.
fn topic_reader(bootstrap: &str, topic: &str, committed: bool) -> StreamConsumer {
    let mut config = common::kafka::consumer_config(bootstrap, &unique_group("faults-reader"));
    if committed {
        config.set("isolation.level", "read_committed");
    }
    let c: StreamConsumer = config.create().expect("reader");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Reads `n` dead letters from `consumer` (with their record headers).
async fn dead_letters(
    consumer: &StreamConsumer,
    cfg: &Config,
    n: usize,
) -> Vec<(DeadLetter, HashMap<String, Vec<u8>>)> {
    let codec = WireCodec::new(&cfg.wire);
    let mut out = Vec::new();
    while out.len() < n {
        let m = with_timeout("a dead letter", WAIT, consumer.recv())
            .await
            .expect("dlq read");
        let letter = codec
            .decode_dead_letter(m.payload().unwrap_or_default())
            .expect("letter decodes");
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push((letter, headers));
    }
    out
}

/// Replies by request id, read until `ids` all arrived.
async fn replies_for(
    consumer: &StreamConsumer,
    cfg: &Config,
    ids: &[&str],
) -> HashMap<String, Received> {
    let got = collect_replies(consumer, cfg, Duration::from_secs(60), |r| {
        ids.iter()
            .all(|id| r.iter().any(|x| x.reply.request_id == *id))
    })
    .await;
    let by_id: HashMap<String, Received> = got
        .into_iter()
        .map(|r| (r.reply.request_id.clone(), r))
        .collect();
    for id in ids {
        assert!(
            by_id.contains_key(*id),
            "no reply to {id}; got {:?}",
            by_id.keys().collect::<Vec<_>>()
        );
    }
    by_id
}

/// The committed offset of `topic`'s partition 0 reaches `end` within the wait.
async fn committed_reaches(bootstrap: &str, cfg: &Config, tier: Tier, end: i64) {
    let topic = cfg.kafka.topics.topic(tier).to_owned();
    let mut last = None;
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            last = committed_offset(bootstrap, &cfg.kafka.group_id, &topic, 0);
            if last == Some(rdkafka::Offset::Offset(end)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{topic}/0 committed {last:?}, expected {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_header_name_that_is_not_utf8_is_served_and_dead_lettered_byte_for_byte() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let cfg = test_config(bootstrap, 1).await;
    let serving = serve(&cfg);
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    let dlq = topic_reader(bootstrap, &cfg.replies.dead_letter_topic, false);
    let p = producer(bootstrap);
    let topic = cfg.kafka.topics.topic(Tier::High);
    let name = b"\xff\xfecorr\xc3\x28";
    // A valid request whose header name is not UTF-8: served like any other.
    let req = request("latin1-header", 1);
    send(
        &p,
        topic,
        "k1",
        &encoded(&cfg, &req),
        Some(raw_headers(name, b"v1")),
        None,
    )
    .await;
    // An unreadable record with such a header: its dead letter keeps the name's bytes.
    send(
        &p,
        topic,
        "k2",
        b"not a request",
        Some(raw_headers(name, b"v2")),
        None,
    )
    .await;
    // And the consumer is still there for the next one.
    send_request(&p, &cfg, Tier::High, &request("after", 2)).await;

    let got = replies_for(&replies, &cfg, &["latin1-header", "after"]).await;
    assert_eq!(got["latin1-header"].reply.status, Status::Ok);
    assert_eq!(got["after"].reply.status, Status::Ok);
    let letters = dead_letters(&dlq, &cfg, 1).await;
    let letter = &letters[0].0;
    assert_eq!(letter.value.as_deref(), Some(&b"not a request"[..]));
    assert_eq!(letter.headers.len(), 1);
    assert_eq!(
        letter.headers[0].key_bytes(),
        name,
        "the name byte for byte"
    );
    assert_eq!(letter.headers[0].value.as_deref(), Some(&b"v2"[..]));
    let report = stop(serving).await;
    assert_eq!(report.consumer.dead_lettered, 1);
    committed_reaches(bootstrap, &cfg, Tier::High, 3).await;
}

/// Sets `topic`'s `message.timestamp.after.max.ms` to its maximum.
async fn allow_any_timestamp(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = common::kafka::client_config(bootstrap)
        .create()
        .expect("admin");
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("message.timestamp.after.max.ms", "9223372036854775807");
    let results = with_timeout(
        "AlterConfigs",
        WAIT,
        admin.alter_configs([&alter], &AdminOptions::new()),
    )
    .await
    .expect("AlterConfigs");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_with_extreme_producer_timestamps_are_answered() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let cfg = test_config(bootstrap, 1).await;
    let serving = serve(&cfg);
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    let p = producer(bootstrap);
    let topic = cfg.kafka.topics.topic(Tier::Normal);
    // Kafka 4 refuses record timestamps more than an hour ahead by default; a topic can allow
    // any (and the broker's own check then lets the far past through as well).
    allow_any_timestamp(bootstrap, topic).await;
    // The record timestamp is the start of end-to-end time: the far past overflows the
    // difference, -9.3e15 ms overflows its scaling to µs, the far future makes it negative.
    let cases: [(&str, i64); 4] = [
        ("ts-min", i64::MIN + 1),
        ("ts-scaled", -9_300_000_000_000_000),
        ("ts-max", i64::MAX),
        ("ts-zero", 0),
    ];
    for (i, (id, ts)) in cases.iter().enumerate() {
        let mut req = request(id, i as u64);
        // The request's own clock fields at their ends too.
        req.created_at_ms = if i % 2 == 0 { i64::MAX } else { i64::MIN };
        req.timeout_ms = Some(i32::MAX);
        send(&p, topic, id, &encoded(&cfg, &req), None, Some(*ts)).await;
    }
    send_request(&p, &cfg, Tier::Normal, &request("ts-after", 9)).await;
    let ids: Vec<&str> = cases
        .iter()
        .map(|(id, _)| *id)
        .chain(["ts-after"])
        .collect();
    let got = replies_for(&replies, &cfg, &ids).await;
    for id in &ids {
        let reply = &got[*id].reply;
        assert!(
            matches!(reply.status, Status::Ok | Status::DeadlineExceeded),
            "{id}: {:?} {:?}",
            reply.status,
            reply.error
        );
        assert!(
            reply.timings.end_to_end_us >= 0,
            "{id}: {:?}",
            reply.timings
        );
    }
    assert_eq!(got["ts-after"].reply.status, Status::Ok);
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reply_topics_named_by_requests_are_checked_and_bounded() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 1).await;
    let base = cfg.replies.default_topic.clone();
    let own = |i: usize| format!("{base}.own{i}");
    for i in 1..=2 {
        common::create_topic(bootstrap, common::Topics::Admin, &own(i), 1).await;
    }
    cfg.replies.allowed_reply_topics = vec![format!("{base}.own*")];
    cfg.replies.max_reply_topics = 2;
    let serving = serve(&cfg);
    let p = producer(bootstrap);
    let ask = |id: &str, topic: &str| {
        let mut r = request(id, 7);
        r.reply_topic = Some(topic.to_owned());
        r
    };
    let requests = [
        ask("nul", "bad\0topic"),
        ask("own1", &own(1)),
        ask("own2", &own(2)),
        // A valid name the allow-list admits, but a third distinct one.
        ask("own3", &own(3)),
        ask("outside", "somebody.elses.topic"),
        ask("own1-again", &own(1)),
    ];
    for r in &requests {
        send_request(&p, &cfg, Tier::Low, r).await;
    }
    let default = reader(bootstrap, &cfg.replies.default_topic);
    let got = replies_for(&default, &cfg, &["nul", "own3", "outside"]).await;
    let nul = &got["nul"].reply;
    assert_eq!(nul.status, Status::InvalidInput);
    assert!(
        nul.error
            .as_deref()
            .unwrap_or_default()
            .contains("not a Kafka topic name"),
        "{nul:?}"
    );
    let own3 = &got["own3"].reply;
    assert_eq!(own3.status, Status::Rejected);
    assert!(
        own3.error
            .as_deref()
            .unwrap_or_default()
            .contains("max_reply_topics (2)"),
        "{own3:?}"
    );
    let outside = &got["outside"].reply;
    assert_eq!(outside.status, Status::Rejected);
    assert!(
        outside
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("allowed_reply_topics"),
        "{outside:?}"
    );
    let first = reader(bootstrap, &own(1));
    let got = replies_for(&first, &cfg, &["own1", "own1-again"]).await;
    assert!(got.values().all(|r| r.reply.status == Status::Ok));
    let second = reader(bootstrap, &own(2));
    assert_eq!(
        replies_for(&second, &cfg, &["own2"]).await["own2"]
            .reply
            .status,
        Status::Ok
    );
    stop(serving).await;
    // Every record answered, so the commit point passed them all.
    committed_reaches(bootstrap, &cfg, Tier::Low, requests.len() as i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_demoted_to_a_full_tier_never_hold_back_their_source_topic() {
    const LOW: usize = 600;
    const DEMOTED: usize = 300;
    const CRITICAL: usize = 20;
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 1).await;
    // A small low queue that a backlog keeps full.
    cfg.batch_processing.max_queue_size = 8;
    cfg.batch_processing.max_batch_size = 8;
    let p = producer(bootstrap);
    let critical = cfg.kafka.topics.topic(Tier::Critical).to_owned();
    for i in 0..LOW {
        send_request(&p, &cfg, Tier::Low, &request(&format!("low-{i}"), i as u64)).await;
    }
    // The critical topic: a flood asking to be served at low, then plain critical requests.
    for i in 0..DEMOTED {
        let mut r = request(&format!("demoted-{i}"), i as u64);
        r.priority = Some(Tier::Low);
        send(&p, &critical, &r.request_id, &encoded(&cfg, &r), None, None).await;
    }
    for i in 0..CRITICAL {
        send_request(
            &p,
            &cfg,
            Tier::Critical,
            &request(&format!("crit-{i}"), i as u64),
        )
        .await;
    }
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    let serving = serve(&cfg);
    let total = LOW + DEMOTED + CRITICAL;
    let got = collect_replies(&replies, &cfg, Duration::from_secs(120), |r| {
        r.len() >= total
    })
    .await;
    let report = stop(serving).await;
    assert_eq!(got.len(), total, "every request answered once");
    // Arrival order: every critical reply comes before most of the low backlog is answered.
    let position = |prefix: &str| -> Vec<usize> {
        got.iter()
            .enumerate()
            .filter(|(_, r)| r.reply.request_id.starts_with(prefix))
            .map(|(i, _)| i)
            .collect()
    };
    let last_critical = *position("crit-").last().expect("critical replies");
    let low_before = position("low-")
        .iter()
        .filter(|&&i| i < last_critical)
        .count();
    eprintln!(
        "demoted flood: last critical reply at position {last_critical} of {total}, after {low_before} of {LOW} low replies; shed {}",
        report.consumer.shed
    );
    assert!(
        low_before < LOW / 2,
        "critical waited for {low_before} of {LOW} low requests"
    );
    for r in got
        .iter()
        .filter(|r| r.reply.request_id.starts_with("crit-"))
    {
        assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply);
    }
    // A demoted request is answered at its tier or refused explicitly, never dropped.
    for r in got
        .iter()
        .filter(|r| r.reply.request_id.starts_with("demoted-"))
    {
        assert!(
            matches!(r.reply.status, Status::Ok | Status::Overloaded),
            "{:?}",
            r.reply
        );
    }
    let overloaded = got
        .iter()
        .filter(|r| r.reply.status == Status::Overloaded)
        .count() as u64;
    assert_eq!(
        report.consumer.shed, overloaded,
        "shed = OVERLOADED replies"
    );
    assert_eq!(
        report.consumer.admitted + report.consumer.shed,
        total as u64,
        "admitted counts only what entered a queue"
    );
}

fn exactly_once(cfg: &mut Config) {
    cfg.kafka.delivery = Delivery::ExactlyOnce;
    cfg.kafka.commit_interval_ms = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_sends_a_refused_reply_to_the_dead_letter_topic_and_keeps_serving() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 1).await;
    exactly_once(&mut cfg);
    let serving = serve(&cfg);
    let p = producer(bootstrap);
    let missing = format!("{}.missing", cfg.replies.default_topic);
    let mut refused = request("to-missing", 1);
    refused.reply_topic = Some(missing.clone());
    send_request(&p, &cfg, Tier::High, &request("before", 0)).await;
    send_request(&p, &cfg, Tier::High, &refused).await;
    send_request(&p, &cfg, Tier::High, &request("after", 2)).await;
    let replies = topic_reader(bootstrap, &cfg.replies.default_topic, true);
    let got = replies_for(&replies, &cfg, &["before", "after"]).await;
    assert!(got.values().all(|r| r.reply.status == Status::Ok));
    let dlq = topic_reader(bootstrap, &cfg.replies.dead_letter_topic, true);
    let letters = dead_letters(&dlq, &cfg, 1).await;
    let letter = &letters[0].0;
    assert_eq!(letter.error_kind, REPLY_UNDELIVERABLE);
    assert!(letter.error.contains(&missing), "{}", letter.error);
    let reply = WireCodec::new(&cfg.wire)
        .decode_reply(letter.value.as_deref().unwrap())
        .unwrap();
    assert_eq!(reply.request_id, "to-missing");
    let report = stop(serving).await;
    assert_eq!(report.replier.reply_fallbacks, 1);
    committed_reaches(bootstrap, &cfg, Tier::High, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_never_produces_outcomes_of_a_revoked_assignment() {
    const N: usize = 400;
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let mut cfg = test_config(&bootstrap, 4).await;
    exactly_once(&mut cfg);
    // Batches wait long and revokes do not wait at all: when the second member joins, the first
    // holds outcomes of the partitions it gives up, which finish after the revoke.
    cfg.batch_processing.min_batch_size = 32;
    cfg.batch_processing.max_batch_size = 32;
    cfg.batch_processing.max_wait_time_seconds = 1.0;
    cfg.kafka.revoke_drain_timeout_ms = 0;
    let seen = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let reader = topic_reader(&bootstrap, &cfg.replies.default_topic, true);
    let reading = {
        let (seen, codec) = (seen.clone(), WireCodec::new(&cfg.wire));
        tokio::spawn(async move {
            loop {
                let Ok(m) = reader.recv().await else { continue };
                let reply = codec
                    .decode_reply(m.payload().unwrap_or_default())
                    .expect("reply");
                *seen.lock().unwrap().entry(reply.request_id).or_default() += 1;
            }
        })
    };
    let p = producer(&bootstrap);
    let first = serve(&cfg);
    let mut rounds = Vec::new();
    for round in 0..4 {
        for i in 0..N / 4 {
            let n = round * N / 4 + i;
            send_request(
                &p,
                &cfg,
                Tier::ALL[n % 4],
                &request(&format!("r-{n}"), n as u64),
            )
            .await;
        }
        // A member joins (or leaves) while the first holds a second's worth of batches.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut other = cfg.clone();
        other.kafka.client_id = format!("{}-{round}", cfg.kafka.client_id);
        rounds.push(serve(&other));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if round % 2 == 1 {
            let leaving = rounds.remove(0);
            stop(leaving).await;
        }
    }
    with_timeout("every request answered", Duration::from_secs(90), async {
        while seen.lock().unwrap().len() < N {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    reading.abort();
    let mut stale = stop(first).await.replier.stale_dropped;
    for s in rounds {
        stale += stop(s).await.replier.stale_dropped;
    }
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    eprintln!(
        "exactly-once revokes: {N} requests, {} answered, {} twice, {stale} stale outcomes dropped",
        seen.len(),
        twice.len()
    );
    assert!(twice.is_empty(), "duplicates under exactly-once: {twice:?}");
    assert_eq!(seen.len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_longer_than_a_delivery_timeout_delays_replies_but_strands_none() {
    const N: usize = 40;
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let mut cfg = test_config(&bootstrap, 1).await;
    // Each delivery attempt gives up after 2 s: the 10 s outage outlasts several of them. The
    // group's session outlasts the outage, so no rebalance re-reads the records.
    cfg.kafka
        .properties
        .insert("message.timeout.ms".into(), "2000".into());
    cfg.kafka.session_timeout_ms = 45_000;
    // Requests wait up to a second for a batch: the broker is frozen in between. (Fewer than
    // `min_batch_size` queued wait for `batch_timeout_seconds`, not the tier wait: with its
    // 50 ms default the replies could all be delivered before the freeze began.)
    cfg.batch_processing.min_batch_size = 64;
    cfg.batch_processing.max_batch_size = 64;
    cfg.batch_processing.max_wait_time_seconds = 1.0;
    cfg.batch_processing.batch_timeout_seconds = 1.0;
    let (telemetry, serving) = serve_observed(&cfg);
    with_timeout("the group joined", WAIT, async {
        while telemetry.health.readiness().is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let p = producer(&bootstrap);
    for i in 0..N {
        send_request(
            &p,
            &cfg,
            Tier::Normal,
            &request(&format!("o-{i}"), i as u64),
        )
        .await;
    }
    let consumed = || telemetry.metrics.tier(Tier::Normal).consumed.get();
    with_timeout("the requests consumed", WAIT, async {
        while consumed() < N as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    broker.freeze().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    broker.thaw().await;
    // Read after the outage: a reader's own client reports the outage as consumer errors.
    let replies = reader(&bootstrap, &cfg.replies.default_topic);
    let ids: Vec<String> = (0..N).map(|i| format!("o-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let got = replies_for(&replies, &cfg, &ids).await;
    assert!(got.values().all(|r| r.reply.status == Status::Ok));
    let retries = telemetry.metrics.delivery_retries.get();
    let report = stop(serving).await;
    eprintln!(
        "outage: {N} requests, {} answered, {retries} retries, {} given up",
        got.len(),
        report.replier.delivery_failures
    );
    assert!(retries > 0, "the outage made deliveries fail");
    assert_eq!(report.replier.delivery_failures, 0);
    assert!(
        !report.consumer.final_commit_failed,
        "the final commit waits for the consumer to reconnect after the outage"
    );
    committed_reaches(&bootstrap, &cfg, Tier::Normal, N as i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_on_a_partition_that_then_stays_idle_is_made_again() {
    const N: usize = 20;
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let mut cfg = test_config(&bootstrap, 1).await;
    // Commits every 3 s, each request timing out after 1.5 s: the commit due while the broker
    // is frozen fails, and afterwards nothing new arrives on the partition.
    cfg.kafka.commit_interval_ms = 3000;
    cfg.kafka
        .properties
        .insert("socket.timeout.ms".into(), "1500".into());
    cfg.kafka.session_timeout_ms = 45_000;
    let (telemetry, serving) = serve_observed(&cfg);
    let replies = reader(&bootstrap, &cfg.replies.default_topic);
    let p = producer(&bootstrap);
    for i in 0..N {
        send_request(&p, &cfg, Tier::High, &request(&format!("c-{i}"), i as u64)).await;
    }
    let ids: Vec<String> = (0..N).map(|i| format!("c-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    replies_for(&replies, &cfg, &ids).await;
    let commit_errors = || {
        telemetry
            .metrics
            .error_count(kbatch_core::telemetry::ErrorKind::Commit)
    };
    let before = commit_errors();
    broker.freeze().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.thaw().await;
    let failed = commit_errors() - before;
    eprintln!("idle commit: {failed} commits failed during the freeze");
    committed_reaches(&bootstrap, &cfg, Tier::High, N as i64).await;
    stop(serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_larger_than_its_topic_takes_is_cut_to_fit_and_says_so() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    const DLQ_MAX: usize = 20_000;
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = base_config(bootstrap);
    // JSON writes the letter's bytes as number arrays: about four times the record.
    cfg.wire.reply_format = Framing::Json;
    for tier in Tier::ALL {
        common::create_topic(
            bootstrap,
            common::Topics::Admin,
            cfg.kafka.topics.topic(tier),
            1,
        )
        .await;
    }
    common::create_topic(
        bootstrap,
        common::Topics::Admin,
        &cfg.replies.default_topic,
        1,
    )
    .await;
    let admin: AdminClient<DefaultClientContext> = common::kafka::client_config(bootstrap)
        .create()
        .expect("admin");
    let max = DLQ_MAX.to_string();
    let dlq = NewTopic::new(
        &cfg.replies.dead_letter_topic,
        1,
        TopicReplication::Fixed(1),
    )
    .set("max.message.bytes", &max);
    let created = admin
        .create_topics([&dlq], &AdminOptions::new())
        .await
        .expect("CreateTopics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    common::wait_for_partitions(bootstrap, &cfg.replies.dead_letter_topic, 1).await;
    let serving = serve(&cfg);
    let p = producer(bootstrap);
    let value: Vec<u8> = (0..60_000u32).map(|i| (i % 200) as u8 + 1).collect();
    let topic = cfg.kafka.topics.topic(Tier::Low);
    send(&p, topic, "big", &value, None, None).await;
    send_request(&p, &cfg, Tier::Low, &request("after-big", 1)).await;
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    replies_for(&replies, &cfg, &["after-big"]).await;
    let dlq = topic_reader(bootstrap, &cfg.replies.dead_letter_topic, false);
    let (letter, headers) = dead_letters(&dlq, &cfg, 1).await.remove(0);
    let kept = letter.value.as_deref().expect("a cut value, not none");
    assert!(kept.len() > 1000, "kept {} bytes", kept.len());
    assert_eq!(kept, &value[..kept.len()], "a prefix of the record");
    assert!(
        letter
            .error
            .contains(&format!("value cut to {} of 60000 bytes", kept.len())),
        "{}",
        letter.error
    );
    assert!(
        headers.contains_key(kbatch_core::kafka::TRIMMED_HEADER),
        "{headers:?}"
    );
    let report = stop(serving).await;
    eprintln!(
        "dead letter cut to fit {DLQ_MAX} bytes: kept {} of {} value bytes",
        kept.len(),
        value.len()
    );
    assert_eq!(report.replier.delivery_failures, 0);
    committed_reaches(bootstrap, &cfg, Tier::Low, 2).await;
}
