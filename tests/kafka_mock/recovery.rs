//! Recovery: cancellation mid-stream and a second instance joining; commits never pass an
//! unanswered record and nothing is lost (duplicates are allowed: at-least-once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kbatch_core::tier::Tier;
use rdkafka::message::Message;
use rdkafka::Offset;

use crate::common::{consume_n, mock_cluster, produce_all, producer, Sent, WAIT};
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_stream_never_commits_past_an_unanswered_record() {
    let cluster = mock_cluster();
    let mut cfg = config(&cluster.bootstrap_servers(), "mock-cancel");
    create_topics(&cluster, &cfg, &[]).await;
    // No drain time: records still queued or in the batcher at the cancel stay pending.
    cfg.kafka.shutdown_timeout_ms = 1;
    let cfg = Arc::new(cfg);
    let reader = reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]);
    let records = requests("c", 150);
    let sent: Vec<Sent> = produce_all(
        &producer(&cfg.kafka.brokers),
        cfg.kafka.topics.topic(Tier::Normal),
        &records,
    )
    .await;

    // Slow batcher, tiny channels: when cancelled, records are stashed, queued and in the
    // batcher; the final commit must stop before the first of them.
    let first = start(&cfg, 2, Duration::from_millis(50));
    first.wait_assigned().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c1, r1) = first.stop().await;
    assert!(
        r1.total_replies() < 150 && c1.pending_at_exit + c1.abandoned > 0,
        "cancel came too late to test anything: {c1:?}"
    );
    let answered: HashSet<String> = consume_n(&reader, r1.total_replies() as usize, WAIT)
        .await
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    let mut checked = 0;
    for (topic, partition, committed, _) in committed_and_end(&cfg).await {
        let Offset::Offset(c) = committed else {
            continue;
        };
        for r in sent.iter().filter(|r| {
            topic == cfg.kafka.topics.normal && r.partition == partition && r.offset < c
        }) {
            let id = String::from_utf8(r.key.clone()).unwrap();
            checked += 1;
            assert!(
                answered.contains(&id),
                "offset {} of partition {partition} committed ({c}) without a reply",
                r.offset
            );
        }
    }

    assert!(checked > 0, "nothing was committed before the cancel");

    // A restarted instance answers the rest: at-least-once, nothing lost.
    let second = start(&cfg, 64, Duration::ZERO);
    let rest: HashSet<String> = ids(&records).difference(&answered).cloned().collect();
    collect_until(&reader, &rest, &mut HashMap::new()).await;
    second.stop().await;
    assert_committed_at_end(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_takes_over_partitions_without_losing_records() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-rebalance");
    create_topics(&cluster, &cfg, &[]).await;
    let cfg_a = Arc::new(cfg.clone());
    let mut cfg_b = cfg.clone();
    cfg_b.kafka.client_id = format!("{}-b", cfg.kafka.client_id);
    let cfg_b = Arc::new(cfg_b);
    let reader = reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]);
    let p = producer(&cfg.kafka.brokers);

    // A slow batcher, so A still has records queued and in flight when B joins.
    let a = start(&cfg_a, 4, Duration::from_millis(20));
    let batch1 = requests("one", 60);
    produce_all(&p, cfg.kafka.topics.topic(Tier::High), &batch1).await;
    let mut seen = HashMap::new();
    collect_until(&reader, &ids(&batch1[..5]), &mut seen).await;
    // A's revoke drops its stash, waits for what is in flight, commits, and gives up.
    let b = start(&cfg_b, 4, Duration::from_millis(2));
    b.wait_assigned().await;
    let batch2 = requests("two", 120);
    produce_all(&p, cfg.kafka.topics.topic(Tier::High), &batch2[..60]).await;
    produce_all(&p, cfg.kafka.topics.topic(Tier::Low), &batch2[60..]).await;
    let mut want = ids(&batch1);
    want.extend(ids(&batch2));
    collect_until(&reader, &want, &mut seen).await;
    let (ca, _) = a.stop().await;
    let (cb, _) = b.stop().await;

    assert!(
        cb.admitted > 0,
        "the second instance never got a record: {cb:?}"
    );
    assert!(
        ca.abandoned > 0 || ca.consumed > 5,
        "A had nothing in hand at the revoke: {ca:?}"
    );
    let instances: HashSet<&String> = seen.values().flatten().collect();
    assert_eq!(instances.len(), 2, "both instances answered");
    // Duplicates are allowed (at-least-once): the mock cluster refuses commits while the group
    // rebalances (REBALANCE_IN_PROGRESS; Kafka accepts them while the group prepares the
    // rebalance), so the revoke's and the last member's final commits may fail and records are
    // re-read. Losing one is never allowed. A third instance alone finishes whatever was left
    // uncommitted, and its final commit must reach the end.
    let c = start(&cfg_a, 64, Duration::ZERO);
    c.wait_assigned().await;
    wait_committed_at_end(&cfg).await;
    let (cc, _) = c.stop().await;
    assert!(!cc.final_commit_failed, "{cc:?}");
    assert_committed_at_end(&cfg).await;
}

/// A commit that fails while its partition then stays idle is made again: the last commit point
/// reaches the broker without new progress. (On a real broker a commit refused during a
/// rebalance, then no more traffic, left the group's offset behind: replays after a crash and
/// false lag for the autoscaler. The mock cluster refuses commits on demand.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_made_again_though_its_partition_stays_idle() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-recommit");
    create_topics(&cluster, &cfg, &[]).await;
    let cfg = Arc::new(cfg);
    let reader = reader(&cfg.kafka.brokers, &[&cfg.replies.default_topic]);
    let pipeline = start(&cfg, 64, Duration::ZERO);
    pipeline.wait_assigned().await;
    // Every commit is refused (a permanent error, which librdkafka does not retry) while the
    // records are answered.
    let refusals = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE; 10_000];
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &refusals);
    let records = requests("i", 40);
    produce_all(
        &producer(&cfg.kafka.brokers),
        cfg.kafka.topics.topic(Tier::High),
        &records,
    )
    .await;
    collect_until(&reader, &ids(&records), &mut HashMap::new()).await;
    // Commits of the final points were made (every 100 ms) and refused.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let behind = committed_and_end(&cfg)
        .await
        .into_iter()
        .filter(|(_, _, c, end)| *end > 0 && *c != Offset::Offset(*end))
        .count();
    assert!(behind > 0, "no commit was refused: the test proves nothing");
    // The broker takes commits again; nothing new arrives on the partitions.
    cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    wait_committed_at_end(&cfg).await;
    pipeline.stop().await;
}
