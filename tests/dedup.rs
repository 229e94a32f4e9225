//! End-to-end deduplication against a real broker: identical inputs are computed once and every
//! requester still gets its own reply, with the model's output for its input.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::pipeline::*;
use common::{producer, start_broker, with_timeout};
use kbatch::inference::load_backend;
use kbatch::tier::Tier;
use kbatch::wire::{Request, Status};
use tokio_util::sync::CancellationToken;

const REQUESTS: u64 = 120;
const DISTINCT: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_inputs_run_once_and_every_requester_gets_its_reply() {
    let broker = start_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 4).await;
    cfg.deduplication.enable_deduplication = true;
    cfg.deduplication.deduplication_ttl = 600.0;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(kbatch::app::serve(cfg.clone(), cancel.clone()));
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

    let mut backend = load_backend(&cfg.model).expect("backend");
    let mut want: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut out = Vec::new();
    for n in 0..DISTINCT {
        backend
            .infer(&request("x", n).data, 1, &mut out)
            .expect("infer");
        want.insert(n, out.clone());
    }
    let mut ids: Vec<&str> = Vec::new();
    for r in &replies {
        assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
        let i: u64 = r.reply.request_id["dup-".len()..].parse().expect("our id");
        for (got, w) in r.reply.outputs.iter().zip(&want[&(i % DISTINCT)]) {
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
