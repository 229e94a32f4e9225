//! Both consumer-group protocols kbatch can run, under membership changes: members joining,
//! leaving gracefully, and dying (`kill -9`) with their replacement started at once.
//!
//! The classic protocol with the cooperative-sticky assignor moves only the partitions that
//! change owner; KIP-848 (`group.protocol=consumer`, Kafka 4.0+) has the broker assign them and
//! own the session timeout. Either way every request is answered and the instances share the
//! work.
#![cfg(feature = "container-tests")]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::pipeline::*;
use common::serving::{serve, stop};
use common::{producer, shared_broker, with_timeout};
use kbatch_core::config::{AssignmentStrategy, Config, GroupProtocol};
use kbatch_core::tier::Tier;
use kbatch_core::wire::Status;

const REQUESTS: u64 = 900;

fn spawn(cfg: &Config) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kbatch"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(serve_env(cfg))
        .env("LOG_LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawning kbatch serve")
}

/// Instance A (a process) and B (in this process) serve; C joins a third of the way in; A is
/// killed at two thirds and its replacement A' starts at once; B stops gracefully near the end.
async fn membership_changes_lose_nothing(protocol: GroupProtocol, strategy: AssignmentStrategy) {
    let broker = shared_broker().await;
    let mut cfg = test_config(broker.bootstrap_servers(), 4).await;
    cfg.kafka.group_protocol = protocol;
    cfg.kafka.assignment_strategy = strategy;
    let replies_reader = reader(broker.bootstrap_servers(), &cfg.replies.default_topic);
    let with_id = |suffix: &str| {
        let mut c = cfg.clone();
        c.kafka.client_id = format!("{}-{suffix}", cfg.kafka.client_id);
        c
    };
    let mut a = spawn(&with_id("a"));
    let b = serve(&with_id("b"));
    let p = producer(broker.bootstrap_servers());
    let sender = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            for i in 0..REQUESTS {
                let req = request(&format!("g-{i}"), i);
                send_request(&p, &cfg, Tier::ALL[i as usize % 4], &req).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c = serve(&with_id("c"));
    tokio::time::sleep(Duration::from_secs(6)).await;
    a.start_kill().expect("SIGKILL");
    a.wait().await.expect("reaping the killed instance");
    let mut a2 = spawn(&with_id("a2"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rb = stop(b).await;
    with_timeout("the sender", Duration::from_secs(60), sender)
        .await
        .expect("sender");

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(90), |r| {
        r.iter()
            .map(|x| x.reply.request_id.as_str())
            .collect::<HashSet<_>>()
            .len()
            >= REQUESTS as usize
    })
    .await;
    let rc = stop(c).await;
    a2.start_kill().ok();
    let ids: HashSet<&str> = replies
        .iter()
        .map(|r| r.reply.request_id.as_str())
        .collect();
    let missing: Vec<u64> = (0..REQUESTS)
        .filter(|i| !ids.contains(format!("g-{i}").as_str()))
        .collect();
    let served_by = |suffix: &str| {
        let id = format!("{}-{suffix}", cfg.kafka.client_id);
        replies
            .iter()
            .filter(|r| r.headers.get("kbatch-instance").map(Vec::as_slice) == Some(id.as_bytes()))
            .count()
    };
    let shares: Vec<(&str, usize)> = ["a", "b", "c", "a2"]
        .into_iter()
        .map(|s| (s, served_by(s)))
        .collect();
    eprintln!(
        "{protocol:?}/{strategy:?}: {REQUESTS} requests, {} replies, {} duplicates, missing {}, \
         served by {shares:?}",
        replies.len(),
        replies.len() - ids.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "lost requests: {missing:?}");
    assert!(replies.iter().all(|r| r.reply.status == Status::Ok));
    for (instance, n) in &shares {
        assert!(*n > 0, "instance {instance} served nothing: {shares:?}");
    }
    assert!(rb.batcher.requests > 0 && rc.batcher.requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_cooperative_sticky_rebalances_lose_nothing() {
    membership_changes_lose_nothing(
        GroupProtocol::Classic,
        AssignmentStrategy::CooperativeSticky,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kip848_consumer_protocol_rebalances_lose_nothing() {
    membership_changes_lose_nothing(GroupProtocol::Consumer, AssignmentStrategy::Range).await;
}
