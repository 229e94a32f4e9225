//! The tier-aware intake on the real broker (issue 17): while a higher tier has records waiting
//! in Kafka, kbatch reads it ahead of lower tiers, so a backlog is answered in tier order rather
//! than in the broker's fetch order; requests demoted by their `priority` never hold back the
//! tier of the topic they were read from; the gate's inputs are visible in `/metrics` and
//! `/stats`.
#![cfg(feature = "container-tests")]

mod common;

use std::time::Duration;

use common::pipeline::*;
use common::serving::{serve_observed, stop};
use common::{producer, shared_broker};
use futures::future::join_all;
use kbatch_core::config::Config;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Request, Status};
use rdkafka::producer::FutureProducer;

/// Produces `requests` to the topic of `tier`, many in flight at once.
async fn send_all(p: &FutureProducer, cfg: &Config, tier: Tier, requests: &[Request]) {
    for chunk in requests.chunks(200) {
        join_all(chunk.iter().map(|r| send_request(p, cfg, tier, r))).await;
    }
}

fn requests(prefix: &str, n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| request(&format!("{prefix}-{i}"), i as u64))
        .collect()
}

/// Positions (in reply arrival order) of the replies whose request id starts with `prefix`.
fn positions(got: &[Received], prefix: &str) -> Vec<usize> {
    got.iter()
        .enumerate()
        .filter(|(_, r)| r.reply.request_id.starts_with(prefix))
        .map(|(i, _)| i)
        .collect()
}

/// The `q` quantile of sorted `v`.
fn quantile(v: &[usize], q: f64) -> usize {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// A small queue, so nearly all of a backlog waits in Kafka rather than in kbatch's memory.
fn small_queues(cfg: &mut Config) {
    cfg.batch_processing.max_batch_size = 4;
    cfg.batch_processing.max_queue_size = 16;
    cfg.adaptive_batching.enable_adaptive_batching = false;
}

/// Serves a backlog (produced lowest tier first) and returns the replies in arrival order.
async fn drain_backlog(tier_aware: bool) -> Vec<Received> {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 2).await;
    small_queues(&mut cfg);
    cfg.priority_queueing.tier_aware_intake = tier_aware;
    let p = producer(bootstrap);
    // 10/20/40/30 as in the benchmark, produced low first: the broker's order favours low.
    for (tier, prefix, n) in [
        (Tier::Low, "low", 300),
        (Tier::Normal, "normal", 400),
        (Tier::High, "high", 200),
        (Tier::Critical, "critical", 100),
    ] {
        send_all(&p, &cfg, tier, &requests(prefix, n)).await;
    }
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    let (telemetry, serving) = serve_observed(&cfg);
    let got = collect_replies(&replies, &cfg, Duration::from_secs(120), |r| {
        r.len() >= 1000
    })
    .await;
    if tier_aware {
        let stats = telemetry.stats.snapshot();
        let intake = stats
            .intake
            .expect("the intake state is published to /stats");
        assert!(intake.tier_aware);
        let low = &intake.tiers[Tier::Low.index()];
        assert!(low.holds > 0, "low was never held back: {intake:?}");
        let metrics = telemetry.metrics.render();
        for series in [
            "kbatch_intake_lag_records{tier=\"critical\"}",
            "kbatch_intake_in_flight_records{tier=\"low\"}",
            "kbatch_intake_held_topics{tier=\"low\"}",
            "kbatch_intake_holds_total{reason=\"higher_tier_lag\",tier=\"low\"}",
        ] {
            assert!(metrics.contains(series), "{series} missing from /metrics");
        }
    }
    let report = stop(serving).await;
    assert_eq!(got.len(), 1000, "every request answered");
    assert!(got.iter().all(|r| r.reply.status == Status::Ok));
    if tier_aware {
        assert!(report.consumer.held > 0, "{:?}", report.consumer);
    }
    got
}

/// Median positions of each tier's replies, and critical's 99th percentile.
struct Order {
    p50: [usize; 4],
    critical_p99: usize,
}

fn order(got: &[Received]) -> Order {
    let p50 = ["critical", "high", "normal", "low"].map(|t| quantile(&positions(got, t), 0.5));
    Order {
        p50,
        critical_p99: quantile(&positions(got, "critical"), 0.99),
    }
}

/// The two tests run one at a time: each measures an order that a second server and broker
/// load on the same two cores can disturb at start-up (1 run in 5 with both at once saw one
/// tier's records answered ~300 positions late; never with one at a time).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_is_answered_in_tier_order() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let got = drain_backlog(true).await;
    let o = order(&got);
    eprintln!(
        "tier-aware drain: median reply position critical {} high {} normal {} low {}; critical p99 at {}",
        o.p50[0], o.p50[1], o.p50[2], o.p50[3], o.critical_p99
    );
    assert!(
        o.p50[0] < o.p50[1] && o.p50[1] < o.p50[2] && o.p50[2] < o.p50[3],
        "median positions not in tier order: {:?}",
        o.p50
    );
    // Perfect order puts critical's 99th percentile at 99 and low's median at 850; what each
    // tier had in memory before the first fetch answered (a queue's worth) comes on top. Read in
    // the broker's order instead, critical's p99 lands near low's median.
    assert!(
        o.critical_p99 * 3 <= o.p50[3],
        "critical p99 at position {} is past a third of low's median {}",
        o.critical_p99,
        o.p50[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demoted_requests_never_hold_back_the_tier_of_their_topic() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const DEMOTED: usize = 300;
    const CRITICAL: usize = 40;
    const HIGH: usize = 300;
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let mut cfg = test_config(bootstrap, 1).await;
    small_queues(&mut cfg);
    let p = producer(bootstrap);
    // A high backlog, then on the critical topic a flood asking to be served at low, then plain
    // critical requests behind it.
    send_all(&p, &cfg, Tier::High, &requests("high", HIGH)).await;
    let demoted: Vec<Request> = requests("demoted", DEMOTED)
        .into_iter()
        .map(|mut r| {
            r.priority = Some(Tier::Low);
            r
        })
        .collect();
    send_all(&p, &cfg, Tier::Critical, &demoted).await;
    send_all(&p, &cfg, Tier::Critical, &requests("critical", CRITICAL)).await;
    let replies = reader(bootstrap, &cfg.replies.default_topic);
    let (telemetry, serving) = serve_observed(&cfg);
    let total = DEMOTED + CRITICAL + HIGH;
    let got = collect_replies(&replies, &cfg, Duration::from_secs(120), |r| {
        r.len() >= total
    })
    .await;
    let intake = telemetry.stats.snapshot().intake.expect("intake state");
    let report = stop(serving).await;
    assert_eq!(got.len(), total, "every request answered once");
    // The critical topic is read through its demoted flood (each one waits at low or is
    // refused OVERLOADED), so its plain critical requests are answered before most of the high
    // backlog, which the critical topic's lag holds back meanwhile.
    let last_critical = *positions(&got, "critical-")
        .last()
        .expect("critical replies");
    let high_before = positions(&got, "high-")
        .iter()
        .filter(|&&i| i < last_critical)
        .count();
    eprintln!(
        "demoted flood: last critical reply at position {last_critical} of {total}, after {high_before} of {HIGH} high replies; shed {}; critical holds {}",
        report.consumer.shed, intake.tiers[0].holds
    );
    assert!(
        high_before < HIGH / 2,
        "critical waited for {high_before} of {HIGH} high requests"
    );
    assert_eq!(
        intake.tiers[Tier::Critical.index()].holds,
        0,
        "critical is never held"
    );
    for r in &got {
        let id = &r.reply.request_id;
        if id.starts_with("demoted-") {
            assert!(
                matches!(r.reply.status, Status::Ok | Status::Overloaded),
                "{:?}",
                r.reply
            );
        } else {
            assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply);
        }
    }
}
