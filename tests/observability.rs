//! End-to-end observability against a real broker: `/metrics` counts match what was sent,
//! `/stats` agrees, and the probes follow the model, the group and the broker.
#![cfg(feature = "container-tests")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pipeline::*;
use common::serving::{http_addr, serve_observed};
use common::{producer, shared_broker, start_broker, with_timeout};
use kbatch_core::app::{serve_with, ServeOptions};
use kbatch_core::config::Config;
use kbatch_core::telemetry::{client, Telemetry};
use kbatch_core::tier::Tier;
use kbatch_core::wire::Request;
use tokio_util::sync::CancellationToken;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    client::get(addr, path, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Polls `path` until its status is `want`; returns the body.
async fn wait_status(addr: SocketAddr, path: &str, want: u16, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (status, body) = get(addr, path).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} stayed {status} ({body:?}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the sample `name{labels}` in a Prometheus text page (labels as printed).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

fn sum_over_tiers(page: &str, name: &str, extra: &str) -> f64 {
    Tier::ALL
        .iter()
        .map(|t| sample(page, &format!("{name}{{{extra}tier=\"{t}\"}}")))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scraped_counts_match_the_requests_sent() {
    let broker = shared_broker().await;
    let cfg = test_config(broker.bootstrap_servers(), 2).await;
    let replies = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let (telemetry, (cancel, serving)) = serve_observed(&cfg);
    let addr = http_addr(&telemetry).await;
    wait_status(addr, "/ready", 200, Duration::from_secs(60)).await;

    let p = producer(broker.bootstrap_servers());
    let reqs: Vec<Request> = (0..80).map(|i| request(&format!("m-{i}"), i)).collect();
    for (i, r) in reqs.iter().enumerate() {
        send_request(&p, &cfg, Tier::ALL[i % 4], r).await;
    }
    for i in 0..3 {
        send_raw(
            &p,
            cfg.kafka.topics.topic(Tier::Low),
            &format!("bad-{i}"),
            b"junk",
        )
        .await;
    }
    let got = collect_replies(&replies, &cfg, Duration::from_secs(60), |r| r.len() >= 80).await;
    assert_eq!(got.len(), 80);
    // The dead letters are delivered alongside; give the replier a moment to count them. Lag
    // comes from the consumer's statistics (every second, with the broker's real watermarks): a
    // sample taken just before the last outcome was acknowledged still counts it, so the test
    // waits for the next one, and fails if lag does not come down to 0 on every partition.
    let lag_lines: Vec<String> = Tier::ALL
        .iter()
        .flat_map(|&t| {
            let topic = cfg.kafka.topics.topic(t).to_owned();
            (0..2).map(move |p| {
                format!("kbatch_consumer_lag_records{{partition=\"{p}\",topic=\"{topic}\"}}")
            })
        })
        .collect();
    let page = with_timeout(
        "dead letters, and lag 0 everywhere",
        Duration::from_secs(30),
        async {
            loop {
                let (_, page) = get(addr, "/metrics").await;
                if sum_over_tiers(&page, "kbatch_dead_letters_total", "") >= 3.0
                    && lag_lines
                        .iter()
                        .all(|l| page.contains(&format!("{l} ")) && sample(&page, l) == 0.0)
                {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;

    assert_eq!(
        sum_over_tiers(&page, "kbatch_replies_total", "status=\"OK\","),
        80.0
    );
    for t in Tier::ALL {
        let ok = sample(
            &page,
            &format!("kbatch_replies_total{{status=\"OK\",tier=\"{t}\"}}"),
        );
        assert_eq!(ok, 20.0, "{t}");
    }
    assert_eq!(sum_over_tiers(&page, "kbatch_dead_letters_total", ""), 3.0);
    assert_eq!(
        sample(&page, "kbatch_consumer_records_total{tier=\"low\"}"),
        23.0
    );
    assert_eq!(
        sum_over_tiers(&page, "kbatch_requests_admitted_total", ""),
        80.0
    );
    assert_eq!(
        sample(&page, "kbatch_batch_size_sum"),
        80.0,
        "every request ran in a batch"
    );
    let batches = sample(&page, "kbatch_batch_size_count");
    assert!((1.0..=80.0).contains(&batches));
    assert_eq!(sample(&page, "kbatch_inference_duration_ms_count"), batches);
    assert_eq!(sample(&page, "kbatch_prediction_latency_ms_count"), 80.0);
    assert_eq!(
        sample(
            &page,
            "kbatch_errors_total{error_type=\"decode_error\",stage=\"admission\"}"
        ),
        3.0
    );
    assert_eq!(
        sum_over_tiers(&page, "kbatch_request_end_to_end_latency_ms_count", ""),
        83.0
    );
    assert!(sample(&page, "kbatch_adaptive_target_batch_size") >= 1.0);

    let (status, body) = get(addr, "/stats").await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    assert_eq!(stats["total_requests"], 83);
    assert_eq!(stats["completed_ok"], 80);
    assert_eq!(stats["dead_letters"], 3);
    assert!(stats["latency_ms"]["p95"].as_f64().expect("p95") > 0.0);
    assert!(stats["average_batch_size"].as_f64().expect("avg") >= 1.0);
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbatch"))
        .args(["stats", "--endpoint", &addr.to_string()])
        .output()
        .await
        .expect("kbatch stats");
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{text}");
    assert!(
        text.starts_with("requests 83 (ok 80, dead letters 3)"),
        "{text}"
    );

    cancel.cancel();
    let report = with_timeout("drain", Duration::from_secs(30), serving)
        .await
        .expect("task")
        .expect("serve");
    assert_eq!(report.replier.total_replies(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_broker_and_liveness_does_not() {
    let broker = start_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 1).await;
    // A frozen broker is noticed when a request times out.
    cfg.kafka
        .properties
        .insert("socket.timeout.ms".into(), "3000".into());
    let (telemetry, (cancel, serving)) = serve_observed(&cfg);
    let addr = http_addr(&telemetry).await;
    wait_status(addr, "/ready", 200, Duration::from_secs(60)).await;
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));

    broker.freeze().await;
    // The body names every missing condition; on Kafka the group's session can expire before
    // the clients give the broker up ("consumer group not joined" first), so wait for the
    // broker outage to be named, whatever else is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let why = loop {
        let (status, body) = get(addr, "/ready").await;
        if status == 503 && body.contains("no broker reachable") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready never named the outage: last {status} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(why.contains("no broker reachable"), "{why}");
    // A broker outage is not the process's fault: restarting it would not help.
    assert_eq!(get(addr, "/healthz").await.0, 200);

    broker.thaw().await;
    wait_status(addr, "/ready", 200, Duration::from_secs(90)).await;

    cancel.cancel();
    // Not ready once shutdown starts: 503 while draining, or refused once the drain ended.
    with_timeout("readiness to drop", Duration::from_secs(10), async {
        while let Ok((200, _)) = client::get(addr, "/ready", Duration::from_secs(2)).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    with_timeout("drain", Duration::from_secs(60), serving)
        .await
        .expect("task")
        .expect("serve");
}

/// The running configuration written as a file `serve` is told to watch.
fn write_config(path: &std::path::Path, cfg: &Config) {
    let yaml = serde_yaml::to_string(cfg).expect("config YAML");
    std::fs::write(path, yaml).expect("writing the config file");
}

async fn wait_metric(addr: SocketAddr, series: &str, want: f64) {
    with_timeout(series, Duration::from_secs(30), async {
        while sample(&get(addr, "/metrics").await.1, series) < want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Sends `n` requests to the normal tier and returns the batch sizes their replies report.
async fn batch_sizes(
    p: &rdkafka::producer::FutureProducer,
    replies: &rdkafka::consumer::StreamConsumer,
    cfg: &Config,
    prefix: &str,
    n: usize,
) -> Vec<i32> {
    // All at once, so they queue together and batches can fill to the cap.
    let reqs: Vec<Request> = (0..n)
        .map(|i| request(&format!("{prefix}-{i}"), i as u64))
        .collect();
    futures::future::join_all(reqs.iter().map(|r| send_request(p, cfg, Tier::Normal, r))).await;
    let got = collect_replies(replies, cfg, Duration::from_secs(60), |r| r.len() >= n).await;
    assert_eq!(got.len(), n, "{prefix}: every request answered");
    got.iter().map(|r| r.reply.timings.batch_size).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_changes_the_batch_size_and_a_bad_one_is_rejected() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 1).await;
    cfg.adaptive_batching.enable_adaptive_batching = false;
    cfg.batch_processing.max_batch_size = 4;
    // Partial batches wait, so a burst fills batches up to the cap.
    cfg.batch_processing.max_wait_time_seconds = 0.2;
    cfg.batch_processing.batch_timeout_seconds = 0.5;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kbatch.yaml");
    write_config(&file, &cfg);
    let telemetry = Telemetry::new(&cfg).expect("telemetry");
    let opts = ServeOptions {
        telemetry: Some(telemetry.clone()),
        reload: Some(kbatch_core::config::LoadOptions {
            file: Some(file.clone()),
            env: Some(Vec::new()),
            ..Default::default()
        }),
    };
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(serve_with(cfg.clone(), cancel.clone(), opts));
    let addr = http_addr(&telemetry).await;
    wait_status(addr, "/ready", 200, Duration::from_secs(60)).await;
    let replies = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let p = producer(broker.bootstrap_servers());

    let before = batch_sizes(&p, &replies, &cfg, "before", 40).await;
    assert_eq!(before.iter().max(), Some(&4), "{before:?}");

    // An invalid file is rejected and the running configuration keeps serving.
    std::fs::write(&file, "batch_processing:\n  max_batch_size: 0\n").expect("write");
    wait_metric(
        addr,
        "kbatch_config_reloads_total{result=\"rejected\"}",
        1.0,
    )
    .await;
    let kept = batch_sizes(&p, &replies, &cfg, "kept", 40).await;
    assert!(kept.iter().all(|&b| (1..=4).contains(&b)), "{kept:?}");

    let mut bigger = cfg.clone();
    bigger.batch_processing.max_batch_size = 16;
    write_config(&file, &bigger);
    wait_metric(addr, "kbatch_config_reloads_total{result=\"applied\"}", 1.0).await;
    let after = batch_sizes(&p, &replies, &cfg, "after", 64).await;
    assert!(after.iter().all(|&b| (1..=16).contains(&b)), "{after:?}");
    assert!(
        after.iter().any(|&b| b > 4),
        "the new cap is used: {after:?}"
    );

    cancel.cancel();
    with_timeout("drain", Duration::from_secs(30), serving)
        .await
        .expect("task")
        .expect("serve");
}
