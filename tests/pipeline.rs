//! End-to-end tests of `kbatch serve` against a real broker: replies, priorities, deadlines,
//! bad input, crash recovery and scale-out.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::pipeline::*;
use common::serving::{serve, stop};
use common::{producer, shared_broker, with_timeout};
use kbatch_core::config::Config;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Request, Status};

fn unique_ids(replies: &[Received]) -> HashSet<String> {
    replies.iter().map(|r| r.reply.request_id.clone()).collect()
}

/// The model's outputs for `req` computed directly, one row at a time.
fn expected_outputs(cfg: &Config, reqs: &[Request]) -> HashMap<String, Vec<f32>> {
    let mut backend = load_default_backend(cfg);
    reqs.iter()
        .map(|r| (r.request_id.clone(), infer_v1(backend.as_mut(), r)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_gets_exactly_one_reply_with_the_models_output() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 4).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let serving = serve(&cfg);
    let p = producer(broker.bootstrap_servers());
    let reqs: Vec<Request> = (0..200).map(|i| request(&format!("req-{i}"), i)).collect();
    for (i, r) in reqs.iter().enumerate() {
        send_request(&p, &cfg, Tier::ALL[i % 4], r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        unique_ids(r).len() >= 200
    })
    .await;
    // Anything arriving in a quiet second after that would be a duplicate.
    let extra = collect_replies(&replies_reader, &cfg, Duration::from_secs(1), |_| false).await;
    assert_eq!(unique_ids(&replies).len(), 200, "every request answered");
    assert_eq!(replies.len() + extra.len(), 200, "exactly one reply each");

    let expected = expected_outputs(&cfg, &reqs);
    for r in &replies {
        assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
        assert_eq!(
            r.key.as_deref(),
            Some(r.reply.request_id.as_bytes()),
            "reply key is the request key"
        );
        assert_eq!(
            r.headers.get("request-id").map(Vec::as_slice),
            Some(r.reply.request_id.as_bytes())
        );
        let want = &expected[&r.reply.request_id];
        assert_eq!(r.reply.outputs.first_f32().len(), 3);
        for (got, want) in r.reply.outputs.first_f32().iter().zip(want) {
            assert!(
                (got - want).abs() < 1e-4,
                "{}: {got} vs {want}",
                r.reply.request_id
            );
        }
        assert!(r.reply.timings.batch_size >= 1);
    }
    let report = stop(serving).await;
    assert_eq!(report.batcher.requests, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn critical_requests_overtake_a_low_priority_backlog() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 4).await;
    cfg.batch_processing.max_batch_size = 8;
    // The default queue bound holds 250 per tier: a deep low-priority queue inside kbatch. At
    // most one batch of 8 per 4 ms (2,000 req/s) keeps it deep even when the intake is slowed
    // by other tests sharing the cores (without it, one run in three under a full `cargo test`
    // read the backlog so slowly that the queue never grew and priorities had nothing to order).
    cfg.batch_processing.min_batch_interval = 0.004;
    let p = producer(broker.bootstrap_servers());
    for i in 0..1000 {
        send_request(&p, &cfg, Tier::Low, &request(&format!("low-{i}"), i)).await;
    }
    for i in 0..20 {
        send_request(&p, &cfg, Tier::Critical, &request(&format!("crit-{i}"), i)).await;
    }
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let serving = serve(&cfg);
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        unique_ids(r).len() >= 1020
    })
    .await;
    stop(serving).await;
    assert_eq!(unique_ids(&replies).len(), 1020);
    // Priorities act on what kbatch holds: compare the time each request waited in kbatch's
    // queues (admission to batch start). When the critical records arrive is up to the fetches.
    let waits = |prefix: &str| -> Vec<i64> {
        let mut w: Vec<i64> = replies
            .iter()
            .filter(|r| r.reply.request_id.starts_with(prefix))
            .map(|r| r.reply.timings.queue_wait_us)
            .collect();
        w.sort_unstable();
        w
    };
    let (crit, low) = (waits("crit-"), waits("low-"));
    let (crit_median, low_median) = (crit[crit.len() / 2], low[low.len() / 2]);
    eprintln!(
        "queue wait µs: critical median {crit_median}, low median {low_median}, low max {}",
        low[low.len() - 1]
    );
    assert!(
        crit_median * 2 < low_median,
        "critical requests waited {crit_median} µs at the median, low ones {low_median} µs"
    );
    assert!(replies
        .iter()
        .filter(|r| r.reply.request_id.starts_with("crit-"))
        .all(|r| r.reply.tier == Tier::Critical));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_deadlines_are_answered_and_never_run() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 2).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let serving = serve(&cfg);
    let p = producer(broker.bootstrap_servers());
    let now = kbatch_core::pipeline::now_ms();
    let late = Request {
        deadline_ms: Some(now - 1000),
        ..request("late", 1)
    };
    let timed_out = Request {
        created_at_ms: now - 5000,
        timeout_ms: Some(100),
        ..request("timed-out", 2)
    };
    let roomy = Request {
        timeout_ms: Some(60_000),
        ..request("roomy", 3)
    };
    for r in [&late, &timed_out, &roomy] {
        send_request(&p, &cfg, Tier::High, r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= 3
    })
    .await;
    stop(serving).await;
    let by_id: HashMap<_, _> = replies
        .iter()
        .map(|r| (r.reply.request_id.as_str(), &r.reply))
        .collect();
    for id in ["late", "timed-out"] {
        assert_eq!(by_id[id].status, Status::DeadlineExceeded, "{id}");
        assert_eq!(by_id[id].timings.batch_size, 0, "{id} must never run");
        assert!(by_id[id].outputs.is_empty());
    }
    assert_eq!(by_id["roomy"].status, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_dead_lettered_or_answered_and_serving_goes_on() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 2).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let dlq_reader = reader(broker.bootstrap_servers(), &cfg.replies.dead_letter_topic);
    let serving = serve(&cfg);
    let p = producer(broker.bootstrap_servers());
    let normal = cfg.kafka.topics.topic(Tier::Normal).to_string();
    send_raw(&p, &normal, "garbage", b"not a request at all").await;
    send_raw(&p, &normal, "wrong-id", &[0, 0, 0, 0, 42, 1, 2, 3]).await;
    let mut nan = request("nan", 1);
    nan.inputs.v1_mut().expect("version 1").values[5] = f32::NAN;
    let mut wrong_shape = request("wrong-shape", 2);
    *wrong_shape.inputs.v1_mut().expect("version 1").shape = vec![16, 64];
    let unknown_model = Request {
        model_name: Some("gpt-9".into()),
        ..request("unknown-model", 3)
    };
    for r in [&nan, &wrong_shape, &unknown_model, &request("good", 4)] {
        send_request(&p, &cfg, Tier::Normal, r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= 4
    })
    .await;
    let codec = kbatch_core::wire::WireCodec::new(&cfg.wire);
    let dead = common::consume_n(&dlq_reader, 2, Duration::from_secs(60)).await;
    stop(serving).await;

    let status: HashMap<_, _> = replies
        .iter()
        .map(|r| (r.reply.request_id.as_str(), r.reply.status))
        .collect();
    assert_eq!(status["nan"], Status::InvalidInput);
    assert_eq!(status["wrong-shape"], Status::InvalidInput);
    assert_eq!(status["unknown-model"], Status::UnknownModel);
    assert_eq!(
        status["good"],
        Status::Ok,
        "the processor still serves after bad input"
    );
    let mut kinds: Vec<String> = dead
        .iter()
        .map(|m| {
            use rdkafka::Message;
            let dl = codec
                .decode_dead_letter(m.payload().unwrap())
                .expect("dead letter decodes");
            assert_eq!(dl.source_topic, normal);
            dl.error_kind
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["unknown_framing", "unknown_schema_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_the_partitions_and_answer_everything() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 4).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let mut second = cfg.clone();
    second.kafka.client_id = format!("{}-b", cfg.kafka.client_id);
    let (a, b) = (serve(&cfg), serve(&second));
    let p = producer(broker.bootstrap_servers());
    let n = 400;
    // Spread over ~10 s so the group settles with both members while requests still flow.
    for i in 0..n {
        send_request(
            &p,
            &cfg,
            Tier::ALL[i as usize % 4],
            &request(&format!("r-{i}"), i),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        unique_ids(r).len() >= n as usize
    })
    .await;
    let (ra, rb) = (stop(a).await, stop(b).await);
    assert_eq!(
        unique_ids(&replies).len(),
        n as usize,
        "together they answer everything"
    );
    let by_instance = |id: &str| {
        replies
            .iter()
            .filter(|r| r.headers.get("kbatch-instance").map(Vec::as_slice) == Some(id.as_bytes()))
            .count()
    };
    let (na, nb) = (
        by_instance(&cfg.kafka.client_id),
        by_instance(&second.kafka.client_id),
    );
    assert!(na > 0 && nb > 0, "both instances served: {na} and {nb}");
    assert_eq!(na + nb, replies.len());
    assert!(ra.batcher.requests > 0 && rb.batcher.requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_and_restart_loses_no_request() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 4).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kbatch"))
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .envs(serve_env(&cfg))
            .env("LOG_LEVEL", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("spawning kbatch serve")
    };
    let mut child = spawn();
    let p = producer(broker.bootstrap_servers());
    let n = 600u64;
    let sender = {
        let (p, cfg) = (p.clone(), cfg.clone());
        tokio::spawn(async move {
            for i in 0..n {
                send_request(
                    &p,
                    &cfg,
                    Tier::ALL[i as usize % 4],
                    &request(&format!("k-{i}"), i),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let before = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= 150
    })
    .await;
    assert!(
        before.len() >= 150,
        "the first instance served before the crash"
    );
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaping the killed process");
    let mut child = spawn();
    with_timeout("the sender", Duration::from_secs(60), sender)
        .await
        .unwrap();
    let mut all = before;
    let rest = collect_replies(&replies_reader, &cfg, Duration::from_secs(90), |r| {
        let mut ids = unique_ids(r);
        ids.extend(all.iter().map(|x| x.reply.request_id.clone()));
        ids.len() >= n as usize
    })
    .await;
    all.extend(rest);
    child.start_kill().ok();
    let ids = unique_ids(&all);
    let missing: Vec<u64> = (0..n)
        .filter(|i| !ids.contains(&format!("k-{i}")))
        .collect();
    assert!(missing.is_empty(), "lost requests: {missing:?}");
    let duplicates = all.len() - ids.len();
    eprintln!(
        "kill -9 test: {n} requests, {} replies, {duplicates} duplicates",
        all.len()
    );
    assert!(all.iter().all(|r| r.reply.status == Status::Ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_to_a_missing_topic_is_dead_lettered_and_commits_go_on() {
    use rdkafka::{Message, Offset};

    let broker = shared_broker().await;
    // One partition: the refused reply sits in front of the good one.
    let cfg = test_config(broker.bootstrap_servers(), 1).await;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let dlq_reader = reader(broker.bootstrap_servers(), &cfg.replies.dead_letter_topic);
    let serving = serve(&cfg);
    let p = producer(broker.bootstrap_servers());
    let nowhere = format!("{}.nowhere", cfg.replies.default_topic);
    let lost = Request {
        reply_topic: Some(nowhere.clone()),
        ..request("to-nowhere", 1)
    };
    send_request(&p, &cfg, Tier::Normal, &lost).await;
    send_request(&p, &cfg, Tier::Normal, &request("after", 2)).await;

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        !r.is_empty()
    })
    .await;
    assert_eq!(unique_ids(&replies), HashSet::from(["after".to_string()]));
    let dead = common::consume_n(&dlq_reader, 1, Duration::from_secs(60)).await;
    let codec = kbatch_core::wire::WireCodec::new(&cfg.wire);
    let letter = codec
        .decode_dead_letter(dead[0].payload().unwrap())
        .expect("dead letter decodes");
    assert_eq!(letter.error_kind, kbatch_core::kafka::REPLY_UNDELIVERABLE);
    assert_eq!(letter.source_topic, cfg.kafka.topics.normal);
    assert_eq!(letter.source_offset, 0);
    assert!(letter.error.contains(&nowhere), "{}", letter.error);
    let reply = codec
        .decode_reply(letter.value.as_deref().unwrap())
        .expect("the dead letter carries the reply");
    assert_eq!(
        (reply.request_id.as_str(), reply.status),
        ("to-nowhere", Status::Ok)
    );

    let report = stop(serving).await;
    assert_eq!(report.replier.reply_fallbacks, 1);
    assert_eq!(report.replier.delivery_failures, 0);
    // Both records have an outcome, so the commit point passed both.
    let offset = committed_offset(
        broker.bootstrap_servers(),
        &cfg.kafka.group_id,
        &cfg.kafka.topics.normal,
        0,
    );
    assert_eq!(offset, Some(Offset::Offset(2)));
}
