//! Kafka protocol behaviour the service relies on, checked against librdkafka's in-process mock
//! cluster: no container, runs in plain `cargo test`.
//!
//! Invariant: each test owns its mock cluster, topic and group, so the tests are independent of
//! each other and of any broker on the machine.
mod common;

use std::time::Duration;

use common::{
    as_sent, assert_no_more, by_partition, consume_n, create_topic, keyed_records, mock_cluster,
    produce_all, producer, subscribed_consumer, unique_group, unique_topic, with_timeout, Sent,
    Topics, WAIT,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The mock broker consumes ~1,200 records/s, so counts stay small to keep the file well under
/// 20 s.
const RECORDS: usize = 240;
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_round_trip_through_a_group_in_partition_order() {
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique_topic("mock-roundtrip");
    create_topic(&bootstrap, Topics::Mock(&cluster), &topic, PARTITIONS).await;

    let records = keyed_records(RECORDS, 7);
    let sent = produce_all(&producer(&bootstrap), &topic, &records).await;
    // Guards the per-partition assertions below against passing vacuously on one partition.
    assert_eq!(
        by_partition(&sent).len(),
        PARTITIONS as usize,
        "keys did not spread"
    );

    let consumer = subscribed_consumer(&bootstrap, &unique_group("mock-roundtrip"), &topic);
    let got: Vec<Sent> = consume_n(&consumer, RECORDS, WAIT)
        .await
        .iter()
        .map(as_sent)
        .collect();
    assert_no_more(&consumer, Duration::from_millis(300)).await;

    let (sent_parts, got_parts) = (by_partition(&sent), by_partition(&got));
    for (partition, want) in &sent_parts {
        let have = &got_parts[partition];
        // Equality of whole records in order covers count, per-partition order, keys, payloads
        // and headers (names, values and their order) at once.
        assert_eq!(
            have, want,
            "partition {partition} differs from what was produced"
        );
    }
    // Per-key order: a key's sequence numbers must rise, and a key lives in one partition.
    let mut last_seq = std::collections::HashMap::new();
    for r in got_parts.values().flatten() {
        let seq = u64::from_be_bytes(r.headers[0].1.as_slice().try_into().expect("seq header"));
        let (partition, prev) = last_seq.entry(r.key.clone()).or_insert((r.partition, None));
        assert_eq!(
            *partition, r.partition,
            "key {:?} split across partitions",
            r.key
        );
        assert!(
            prev.is_none_or(|p| p < seq),
            "key {:?} reordered at seq {seq}",
            r.key
        );
        *prev = Some(seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_group_member_resumes_after_the_committed_offsets() {
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique_topic("mock-commit");
    let group = unique_group("mock-commit");
    create_topic(&bootstrap, Topics::Mock(&cluster), &topic, 2).await;

    let n = 120;
    let sent = produce_all(&producer(&bootstrap), &topic, &keyed_records(n, 5)).await;
    let sent_parts = by_partition(&sent);
    assert_eq!(
        sent_parts.len(),
        2,
        "keys did not spread over both partitions"
    );

    // Commit a different point per partition so an implementation that ignored the partition
    // (or committed one offset for all) would be caught.
    let commit_at: Vec<(i32, i64)> = sent_parts
        .iter()
        .map(|(p, recs)| (*p, recs[recs.len() / (2 + *p as usize)].offset))
        .collect();
    {
        let first = subscribed_consumer(&bootstrap, &group, &topic);
        consume_n(&first, n, WAIT).await;
        let mut tpl = TopicPartitionList::new();
        for (p, off) in &commit_at {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*off))
                .expect("tpl");
        }
        first.commit(&tpl, CommitMode::Sync).expect("sync commit");
        // Dropping closes the consumer, which leaves the group, so the second member gets every
        // partition on its first rebalance instead of after a session timeout.
    }

    let second = subscribed_consumer(&bootstrap, &group, &topic);
    // The commit itself must be readable by another member of the group.
    let mut query = TopicPartitionList::new();
    for (p, _) in &commit_at {
        query.add_partition(&topic, *p);
    }
    let committed = with_timeout("committed offsets", WAIT, async {
        let c = &second;
        tokio::task::block_in_place(|| c.committed_offsets(query, Duration::from_secs(10)))
    })
    .await
    .expect("committed_offsets");
    for (p, off) in &commit_at {
        let seen = committed
            .find_partition(&topic, *p)
            .expect("partition")
            .offset();
        assert_eq!(
            seen,
            Offset::Offset(*off),
            "committed offset of partition {p}"
        );
    }

    let expected: Vec<Sent> = sent
        .iter()
        .filter(|r| {
            commit_at
                .iter()
                .any(|(p, off)| r.partition == *p && r.offset >= *off)
        })
        .cloned()
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < n,
        "commit point leaves nothing to test"
    );
    let got: Vec<Sent> = consume_n(&second, expected.len(), WAIT)
        .await
        .iter()
        .map(as_sent)
        .collect();
    assert_no_more(&second, Duration::from_millis(500)).await;
    assert_eq!(
        by_partition(&got),
        by_partition(&expected),
        "resumed at the wrong place"
    );
}
