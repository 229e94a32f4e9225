//! End-to-end batcher rules against a real broker: deduplication (identical inputs computed once,
//! every requester still gets its own reply) and load shedding (`when_queue_full: reject`).
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::pipeline::*;
use common::{producer, shared_broker, with_timeout};
use kbatch_core::config::QueueFull;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Request, Status};
use tokio_util::sync::CancellationToken;

const REQUESTS: u64 = 120;
const DISTINCT: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_inputs_run_once_and_every_requester_gets_its_reply() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 4).await;
    cfg.deduplication.enable_deduplication = true;
    cfg.deduplication.deduplication_ttl = 600.0;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
    let p = producer(broker.bootstrap_servers());
    // Twelve inputs, each sent ten times from every tier, under distinct request ids.
    let reqs: Vec<Request> = (0..REQUESTS)
        .map(|i| request(&format!("dup-{i}"), i % DISTINCT))
        .collect();
    for (i, r) in reqs.iter().enumerate() {
        send_request(&p, &cfg, Tier::ALL[i % 4], r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= REQUESTS as usize
    })
    .await;
    let extra = collect_replies(&replies_reader, &cfg, Duration::from_secs(1), |_| false).await;
    assert_eq!(
        replies.len() + extra.len(),
        REQUESTS as usize,
        "one reply each"
    );

    let mut backend = load_default_backend(&cfg);
    let mut want: HashMap<u64, Vec<f32>> = HashMap::new();
    for n in 0..DISTINCT {
        want.insert(n, infer_v1(backend.as_mut(), &request("x", n)));
    }
    let mut ids: Vec<&str> = Vec::new();
    for r in &replies {
        assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
        let i: u64 = r.reply.request_id["dup-".len()..].parse().expect("our id");
        for (got, w) in r
            .reply
            .outputs
            .first_f32()
            .iter()
            .zip(&want[&(i % DISTINCT)])
        {
            assert!(
                (got - w).abs() < 1e-4,
                "{}: {got} vs {w}",
                r.reply.request_id
            );
        }
        ids.push(&r.reply.request_id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        REQUESTS as usize,
        "every requester got its own reply"
    );

    cancel.cancel();
    let report = with_timeout("drain", Duration::from_secs(30), serving)
        .await
        .expect("serve task")
        .expect("serve ran");
    let d = report.batcher.dedup;
    // Each input ran at least once and at most a few times (a leader's result is cached for
    // the TTL, so only twins queued before the first result lands can each lead).
    assert!(report.batcher.requests >= DISTINCT, "{report:?}");
    assert!(
        report.batcher.requests < REQUESTS / 2,
        "computed once, not per requester: {d:?}"
    );
    assert_eq!(d.leaders, report.batcher.requests);
    assert_eq!(
        d.leaders + d.hits + d.joins,
        REQUESTS,
        "every request accounted: {d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_in_rejecting_mode_answers_overloaded_at_once() {
    const SENT: usize = 40;
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 4).await;
    // One request per second at most, and room for one queued per tier.
    cfg.adaptive_batching.enable_adaptive_batching = false;
    cfg.batch_processing.max_batch_size = 1;
    cfg.batch_processing.max_queue_size = 4;
    cfg.batch_processing.min_batch_interval = 1.0;
    cfg.batch_processing.when_queue_full = QueueFull::Reject;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
    let p = producer(broker.bootstrap_servers());
    for i in 0..SENT {
        let r = request(&format!("shed-{i}"), i as u64);
        send_request(&p, &cfg, Tier::Normal, &r).await;
    }
    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= SENT
    })
    .await;
    let extra = collect_replies(&replies_reader, &cfg, Duration::from_secs(1), |_| false).await;
    assert_eq!(replies.len() + extra.len(), SENT, "one reply each");
    let count = |s: Status| replies.iter().filter(|r| r.reply.status == s).count();
    let (ok, overloaded) = (count(Status::Ok), count(Status::Overloaded));
    assert_eq!(ok + overloaded, SENT, "only OK or OVERLOADED");
    assert!(ok >= 1, "the queue's room was served");
    // Serving one a second, at most a handful fit before the rest arrive.
    assert!(overloaded >= SENT / 2, "{ok} OK, {overloaded} OVERLOADED");
    for r in replies
        .iter()
        .filter(|r| r.reply.status == Status::Overloaded)
    {
        let msg = r.reply.error.as_deref().unwrap_or_default();
        assert!(msg.contains("queue is full"), "{msg}");
    }
    cancel.cancel();
    let report = with_timeout("drain", Duration::from_secs(30), serving)
        .await
        .expect("serve task")
        .expect("serve ran");
    assert_eq!(report.consumer.shed as usize, overloaded);
    assert_eq!(report.consumer.paused, 0, "rejecting mode never pauses");
}
