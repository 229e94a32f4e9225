//! Round trips through a broker in a container (tansu on the bench, Apache Kafka wherever
//! `KBATCH_TEST_BROKER_IMAGE` points at it).
//!
//! Invariant: each test starts its own broker, so tests share no topic, group or broker state and
//! a crashed broker fails one test only. Needs a Docker-API socket: run
//! `source .kbatch/testbench.env && cargo test --features container-tests --test broker_container`.
#![cfg(feature = "container-tests")]

mod common;

use std::time::Duration;

use common::{
    as_sent, assert_no_more, by_partition, consume_n, create_topic, keyed_records, produce_all,
    producer, shared_broker, subscribed_consumer, unique_group, unique_topic, with_timeout, Sent,
    Topics, WAIT,
};
use kbatch_core::config::WireConfig;
use kbatch_core::tensor::{Tensor, TensorData};
use kbatch_core::wire::{Framing, Inputs, Request, Tier, WireCodec};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::Offset;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_through_a_consumer_group_on_four_partitions() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let topic = unique_topic("bc-roundtrip");
    create_topic(bootstrap, Topics::Admin, &topic, 4).await;

    let n = 200;
    let sent = produce_all(&producer(bootstrap), &topic, &keyed_records(n, 11)).await;
    let sent_parts = by_partition(&sent);
    // The ordering check below is only meaningful if records really spread over partitions.
    assert_eq!(
        sent_parts.len(),
        4,
        "keys did not spread over all 4 partitions"
    );

    let consumer = subscribed_consumer(bootstrap, &unique_group("bc-roundtrip"), &topic);
    let got: Vec<Sent> = consume_n(&consumer, n, WAIT)
        .await
        .iter()
        .map(as_sent)
        .collect();
    assert_no_more(&consumer, Duration::from_millis(500)).await;
    // Whole-record equality per partition: count, order, keys, values and headers.
    assert_eq!(
        by_partition(&got),
        sent_parts,
        "consumed records differ from produced ones"
    );

    // The group coordinator must hold what the member commits.
    with_timeout("commit", WAIT, async {
        tokio::task::block_in_place(|| consumer.commit_consumer_state(CommitMode::Sync))
    })
    .await
    .expect("committing consumer state");
    let committed = with_timeout("committed offsets", WAIT, async {
        tokio::task::block_in_place(|| consumer.committed(Duration::from_secs(10)))
    })
    .await
    .expect("reading committed offsets");
    for (p, recs) in &sent_parts {
        let next = recs.last().expect("non-empty partition").offset + 1;
        let seen = committed.find_partition(&topic, *p).map(|e| e.offset());
        assert_eq!(
            seen,
            Some(Offset::Offset(next)),
            "committed offset of partition {p}"
        );
    }
}

/// Every optional field set to a non-default value, so a dropped or swapped field shows up.
fn full_request() -> Request {
    Request {
        request_id: "req-7f3a\u{e9}-\u{1F680}".into(),
        created_at_ms: 1_732_352_000_123,
        deadline_ms: Some(1_732_352_000_623),
        timeout_ms: Some(450),
        model_name: Some("resnet-tiny".into()),
        model_version: Some("2024.11.3".into()),
        priority: Some(Tier::High),
        reply_topic: Some("kbatch.replies.test".into()),
        client_id: Some("client-\u{4e2d}".into()),
        inputs: Inputs::v1(
            vec![2, 3, 4],
            (0..24).map(|i| (i as f32 - 11.5) * 0.37).collect(),
        ),
    }
}

/// The other extreme: every optional field absent and an empty tensor.
fn minimal_request() -> Request {
    Request {
        request_id: "r".into(),
        created_at_ms: -1,
        deadline_ms: None,
        timeout_ms: None,
        model_name: None,
        model_version: None,
        priority: None,
        reply_topic: None,
        client_id: None,
        inputs: Inputs::v1(vec![], vec![]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_inference_requests_survive_a_real_broker_round_trip() {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let topic = unique_topic("bc-wire");
    // One partition: the records come back in send order, so each decodes against its source.
    create_topic(bootstrap, Topics::Admin, &topic, 1).await;

    let codec = WireCodec::new(&WireConfig::default());
    let mut extreme = full_request();
    extreme.priority = Some(Tier::Low);
    extreme.inputs = Inputs::v1(
        vec![5],
        vec![f32::MAX, f32::MIN_POSITIVE, -0.0, 1e-42, f32::MIN],
    );
    let mut typed = full_request();
    typed.inputs = Inputs::V2(vec![
        Tensor::new("ids", vec![2], TensorData::I64(vec![i64::MIN, i64::MAX])),
        Tensor::new("x", vec![2], TensorData::F64(vec![-0.0, f64::MIN_POSITIVE])),
        Tensor::new("n", vec![1], TensorData::I32(vec![-7])),
    ]);
    let cases = [
        (full_request(), Framing::Confluent),
        (minimal_request(), Framing::Confluent),
        (extreme, Framing::Confluent),
        (full_request(), Framing::SingleObject),
        (typed.clone(), Framing::Confluent),
        (typed, Framing::SingleObject),
    ];
    let records: Vec<_> = cases
        .iter()
        .map(|(req, framing)| {
            let mut value = Vec::new();
            codec.encode_request(req, *framing, &mut value);
            (req.request_id.clone().into_bytes(), value, Vec::new())
        })
        .collect();
    produce_all(&producer(bootstrap), &topic, &records).await;

    let consumer = subscribed_consumer(bootstrap, &unique_group("bc-wire"), &topic);
    let got = consume_n(&consumer, cases.len(), WAIT).await;
    for (i, (m, (want, framing))) in got.iter().zip(&cases).enumerate() {
        let value = m.payload().expect("record has a value");
        assert_eq!(
            value,
            records[i].1.as_slice(),
            "record {i}: broker altered the bytes"
        );
        let decoded = codec
            .decode_request(value)
            .unwrap_or_else(|e| panic!("record {i} ({framing:?}) does not decode: {e}"));
        // Request: PartialEq compares every field; the bit check catches -0.0 vs 0.0, which
        // float equality would let through.
        assert_eq!(
            &decoded, want,
            "record {i} ({framing:?}) changed in the round trip"
        );
        let bits = |r: &Request| {
            let mut bytes = Vec::new();
            for t in r.inputs.tensors() {
                t.data.write_le_bytes(&mut bytes);
            }
            bytes
        };
        assert_eq!(bits(&decoded), bits(want), "record {i}: tensor bits differ");
    }
}
