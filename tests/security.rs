//! End-to-end security against a real broker: per-tier client allow-lists and rate limits answer
//! `REJECTED` (and only those requests), and API keys read from the environment at load protect
//! every HTTP path but `/healthz`.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::pipeline::*;
use common::serving::{http_addr, serve, stop};
use common::{producer, shared_broker, with_timeout};
use kbatch_core::app::{serve_with, ServeOptions};
use kbatch_core::config::{load, Config, LoadOptions, RateLimit, Secret};
use kbatch_core::telemetry::{client, Telemetry};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Request, Status};
use tokio_util::sync::CancellationToken;

fn from(client: &str, id: &str, n: u64) -> Request {
    Request {
        client_id: Some(client.to_string()),
        ..request(id, n)
    }
}

/// Every reply of `expected` requests (and a quiet second to catch duplicates), by request id.
async fn replies_by_id(
    reader: &rdkafka::consumer::StreamConsumer,
    cfg: &Config,
    expected: usize,
) -> HashMap<String, (Status, Option<String>)> {
    let mut got = collect_replies(reader, cfg, Duration::from_secs(60), |r| {
        r.len() >= expected
    })
    .await;
    got.extend(collect_replies(reader, cfg, Duration::from_secs(1), |_| false).await);
    assert_eq!(got.len(), expected, "exactly one reply per request");
    got.into_iter()
        .map(|r| (r.reply.request_id, (r.reply.status, r.reply.error)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_listed_clients_are_served_on_a_restricted_tier() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 2).await;
    cfg.security.tier_access.critical.allowed_clients = Some(vec!["trusted".into()]);
    let replies = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let serving = serve(&cfg);
    let p = producer(broker.bootstrap_servers());
    send_request(
        &p,
        &cfg,
        Tier::Critical,
        &from("intruder", "intruder-crit", 1),
    )
    .await;
    send_request(
        &p,
        &cfg,
        Tier::Critical,
        &from("trusted", "trusted-crit", 2),
    )
    .await;
    send_request(&p, &cfg, Tier::Low, &from("intruder", "intruder-low", 3)).await;
    let anonymous = Request {
        client_id: None,
        ..request("anonymous-crit", 4)
    };
    send_request(&p, &cfg, Tier::Critical, &anonymous).await;

    let by_id = replies_by_id(&replies, &cfg, 4).await;
    let report = stop(serving).await;
    let (status, error) = &by_id["intruder-crit"];
    assert_eq!(*status, Status::Rejected);
    let error = error.as_deref().unwrap_or_default();
    assert!(
        error.contains("\"intruder\" is not allowed on tier critical"),
        "{error}"
    );
    assert_eq!(by_id["anonymous-crit"].0, Status::Rejected);
    assert_eq!(
        by_id["trusted-crit"].0,
        Status::Ok,
        "{:?}",
        by_id["trusted-crit"]
    );
    assert_eq!(
        by_id["intruder-low"].0,
        Status::Ok,
        "{:?}",
        by_id["intruder-low"]
    );
    assert_eq!(
        report.batcher.requests, 2,
        "refused requests never reach the batcher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_from_one_client_is_served_and_the_rest_rejected() {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 2).await;
    // A refill of one token per 100 s: nothing refills during the test, so the count is exact.
    cfg.security.tier_access.low.rate_limit = Some(RateLimit {
        rate_per_second: 0.01,
        burst: 5,
    });
    let replies = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let p = producer(broker.bootstrap_servers());
    for i in 0..20 {
        send_request(&p, &cfg, Tier::Low, &from("bulk", &format!("bulk-{i}"), i)).await;
    }
    // Another client and another tier have buckets of their own.
    send_request(&p, &cfg, Tier::Low, &from("other", "other-low", 20)).await;
    send_request(&p, &cfg, Tier::High, &from("bulk", "bulk-high", 21)).await;
    let serving = serve(&cfg);

    let by_id = replies_by_id(&replies, &cfg, 22).await;
    stop(serving).await;
    let bulk_low = |s: Status| {
        by_id
            .iter()
            .filter(|(id, (status, _))| {
                id.starts_with("bulk-") && *id != "bulk-high" && *status == s
            })
            .count()
    };
    assert_eq!(bulk_low(Status::Ok), 5, "the burst is served");
    assert_eq!(bulk_low(Status::Rejected), 15, "the rest is refused");
    let error = by_id
        .values()
        .find(|(s, _)| *s == Status::Rejected)
        .and_then(|(_, e)| e.as_deref())
        .unwrap_or_default();
    assert!(
        error.starts_with("rate limit exceeded for client \"bulk\" on tier low"),
        "{error}"
    );
    assert_eq!(by_id["other-low"].0, Status::Ok);
    assert_eq!(by_id["bulk-high"].0, Status::Ok);
}

async fn status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    client::get_with_headers(addr, path, headers, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_from_the_environment_protect_every_endpoint_but_liveness() {
    const KEY: &str = "e2e-api-key-0123456789";
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 1).await;
    cfg.security.api_keys = vec![Secret::new("env:KBATCH_TEST_API_KEY")];
    // Through `load`, as `kbatch serve` reads it: the reference is resolved from the environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kbatch.yaml");
    std::fs::write(&file, serde_yaml::to_string(&cfg).expect("yaml")).expect("write config");
    let loaded = load(&LoadOptions {
        file: Some(file),
        env: Some(vec![("KBATCH_TEST_API_KEY".into(), KEY.into())]),
        ..LoadOptions::default()
    })
    .expect("the configuration loads");
    assert_eq!(loaded.config.security.api_keys[0].expose(), KEY);
    assert!(!format!("{:?}", loaded.config).contains(KEY));

    let telemetry = Telemetry::new(&loaded.config).expect("telemetry");
    let cancel = CancellationToken::new();
    let opts = ServeOptions {
        telemetry: Some(telemetry.clone()),
        ..ServeOptions::default()
    };
    let serving = tokio::spawn(serve_with(loaded.config, cancel.clone(), opts));
    let addr = http_addr(&telemetry).await;

    assert_eq!(status(addr, "/healthz", &[]).await, 200, "liveness is open");
    for path in ["/metrics", "/stats", "/ready"] {
        assert_eq!(status(addr, path, &[]).await, 401, "{path} without the key");
        assert_eq!(
            status(addr, path, &[("X-API-Key", "guess")]).await,
            401,
            "{path} with a wrong key"
        );
    }
    let key = [("X-API-Key", KEY)];
    assert_eq!(status(addr, "/metrics", &key).await, 200);
    assert_eq!(status(addr, "/stats", &key).await, 200);
    with_timeout("readiness with the key", Duration::from_secs(60), async {
        while status(addr, "/ready", &key).await != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    cancel.cancel();
    with_timeout("drain", Duration::from_secs(30), serving)
        .await
        .expect("task")
        .expect("serve");
}
