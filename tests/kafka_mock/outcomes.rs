//! Outcomes: one per record, on the right topic with the right headers; backpressure by
//! pausing loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kbatch_core::config::Config;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Request, Status, WireCodec};
use rdkafka::message::{Message, OwnedMessage};

use crate::common::{
    assert_no_more, consume_n, mock_cluster, produce_all, producer, unique_topic, Record, WAIT,
};
use crate::harness::*;

/// Per tier topic: valid requests (some demoted, one with its own reply topic), an undecodable
/// record, an invalid request and one for another model; with what each must become.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn mixed_records(cfg: &Config, caller_topic: &str) -> (Vec<(Tier, Vec<Record>)>, Expected) {
    let mut expected = Expected::new();
    let mut out = Vec::new();
    let headers = |id: &str| {
        vec![
            (
                "correlation-id".to_owned(),
                format!("corr-{id}").into_bytes(),
            ),
            ("traceparent".to_owned(), TRACEPARENT.as_bytes().to_vec()),
        ]
    };
    let default = &cfg.replies.default_topic;
    for tier in Tier::ALL {
        let mut records: Vec<Record> = Vec::new();
        let mut push = |id: String, req: Request, topic: &str, status, served| {
            expected.insert(id.clone(), (topic.to_owned(), status, Some(served)));
            records.push((id.clone().into_bytes(), encoded(&req), headers(&id)));
        };
        for i in 0..8 {
            let id = format!("{tier}-ok-{i}");
            let mut req = request(&id);
            req.priority = (i % 4 == 1).then_some(Tier::Low);
            req.reply_topic = (i == 2).then(|| caller_topic.to_owned());
            let topic = if i == 2 { caller_topic } else { default };
            push(id, req.clone(), topic, "OK", tier.demoted_to(req.priority));
        }
        let id = format!("{tier}-nan");
        let mut req = request(&id);
        req.inputs.v1_mut().expect("version 1").values[0] = f32::NAN;
        push(id, req, default, "INVALID_INPUT", tier);
        let id = format!("{tier}-other-model");
        let mut req = request(&id);
        req.model_name = Some("other".into());
        push(id, req, default, "UNKNOWN_MODEL", tier);
        let bad = format!("{tier}-garbage");
        let dlq = (cfg.replies.dead_letter_topic.clone(), "DLQ", None);
        expected.insert(bad.clone(), dlq);
        let value = GARBAGE.to_vec();
        records.push((
            bad.into_bytes(),
            value,
            vec![("x".to_owned(), b"y".to_vec())],
        ));
        out.push((tier, records));
    }
    (out, expected)
}

/// Record id → (outcome topic, status or "DLQ", served tier).
type Expected = BTreeMap<String, (String, &'static str, Option<Tier>)>;

const GARBAGE: &[u8] = b"\x07not a request";

/// Checks one outcome record against what its request should have become.
fn check_outcome(m: &OwnedMessage, expected: &Expected, cfg: &Config) {
    let codec = WireCodec::new(&cfg.wire);
    let key = String::from_utf8(m.key().expect("outcome key").to_vec()).unwrap();
    let (topic, status, served) = &expected[&key];
    assert_eq!(m.topic(), topic, "topic of {key}");
    let h = headers_of(m);
    assert_eq!(h["kbatch-instance"], cfg.kafka.client_id.as_bytes());
    if *status == "DLQ" {
        let dl = codec
            .decode_dead_letter(m.payload().unwrap())
            .expect("dead letter");
        assert_eq!(dl.error_kind, "unknown_framing");
        assert_eq!(dl.value.as_deref(), Some(GARBAGE));
        assert_eq!(dl.headers.len(), 1);
        assert_eq!(dl.processor, cfg.kafka.client_id);
        assert_eq!(h["kbatch-error-kind"], b"unknown_framing");
        return;
    }
    let reply = codec.decode_reply(m.payload().unwrap()).expect("reply");
    assert_eq!(reply.request_id, key);
    assert_eq!(reply.status.as_str(), *status, "status of {key}");
    assert_eq!(Some(reply.tier), *served, "served tier of {key}");
    assert_eq!(h["request-id"], key.as_bytes());
    assert_eq!(h["correlation-id"], format!("corr-{key}").into_bytes());
    // Same trace and flags; kbatch's span for the request replaces the caller's as parent.
    let tp = String::from_utf8(h["traceparent"].clone()).expect("ascii");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "{tp}"
    );
    assert_eq!(parts[2].len(), 16);
    assert_ne!(parts[2], "00f067aa0ba902b7", "{tp}");
    assert_eq!(h["kbatch-status"], status.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_gets_exactly_one_outcome_and_offsets_are_committed() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-kafka");
    let caller_topic = unique_topic(CALLER_TOPIC_PREFIX);
    create_topics(&cluster, &cfg, &[&caller_topic]).await;
    let cfg = Arc::new(cfg);
    let pipeline = start(&cfg, 64, Duration::ZERO);

    let (per_tier, expected) = mixed_records(&cfg, &caller_topic);
    let p = producer(&cfg.kafka.brokers);
    for (tier, records) in &per_tier {
        produce_all(&p, cfg.kafka.topics.topic(*tier), records).await;
    }
    let out_topics = [
        cfg.replies.default_topic.as_str(),
        caller_topic.as_str(),
        cfg.replies.dead_letter_topic.as_str(),
    ];
    let reader = reader(&cfg.kafka.brokers, &out_topics);
    let got = consume_n(&reader, expected.len(), WAIT).await;
    let (consumer_report, replier_report) = pipeline.stop().await;

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &got {
        check_outcome(m, &expected, &cfg);
        *seen
            .entry(String::from_utf8(m.key().unwrap().to_vec()).unwrap())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), expected.len(), "some record got no outcome");
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicated outcomes: {seen:?}"
    );
    assert_no_more(&reader, Duration::from_millis(300)).await;

    let c = &consumer_report;
    assert_eq!(c.consumed, expected.len() as u64);
    assert_eq!(
        (c.dead_lettered, c.invalid, c.unknown_model, c.admitted),
        (4, 4, 4, 32)
    );
    assert_eq!(c.pending_at_exit, 0);
    assert!(!c.final_commit_failed);
    assert_eq!(replier_report.replies_with(Status::Ok), 32);
    assert_eq!(replier_report.replies_with(Status::InvalidInput), 4);
    assert_eq!(replier_report.replies_with(Status::UnknownModel), 4);
    assert_eq!(replier_report.dead_letters, 4);
    assert_eq!(replier_report.delivery_failures, 0);
    assert_committed_at_end(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tier_channel_pauses_intake_without_losing_records() {
    let cluster = mock_cluster();
    let cfg = config(&cluster.bootstrap_servers(), "mock-pause");
    create_topics(&cluster, &cfg, &[]).await;
    let cfg = Arc::new(cfg);
    // One slot per tier and for outcomes, and a slow batcher: the consumer outruns it by far.
    let pipeline = start(&cfg, 1, Duration::from_millis(5));

    // Every tenth record is undecodable: its dead letter waits for room in the outcome channel.
    let n = 120;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let id = format!("p-{i}");
            let value = if i % 10 == 0 {
                GARBAGE.to_vec()
            } else {
                encoded(&request(&id))
            };
            (id.clone().into_bytes(), value, Vec::new())
        })
        .collect();
    let normal = cfg.kafka.topics.topic(Tier::Normal);
    produce_all(&producer(&cfg.kafka.brokers), normal, &records).await;
    let out_topics = [
        cfg.replies.default_topic.as_str(),
        cfg.replies.dead_letter_topic.as_str(),
    ];
    let got = consume_n(&reader(&cfg.kafka.brokers, &out_topics), n, WAIT).await;
    let (consumer_report, replier_report) = pipeline.stop().await;

    let mut ids: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "lost or duplicated outcomes");
    let c = &consumer_report;
    assert!(c.paused > 0, "intake never paused: {c:?}");
    assert_eq!((c.admitted, c.dead_lettered), (108, 12));
    assert_eq!(replier_report.replies_with(Status::Ok), 108);
    assert_eq!(replier_report.dead_letters, 12);
    assert_committed_at_end(&cfg).await;
}
