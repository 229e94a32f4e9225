//! Poison records against a real broker: a request the model fails on (models/lookup.onnx, an
//! index outside its table) fails its whole batch; kbatch re-runs the batch in parts, answers
//! the batch mates OK, gives the poison request its retries, then answers it MODEL_ERROR and
//! isolates it on the dead-letter topic, and the partition's commits go past it. Run under both
//! delivery modes: the exactly-once replier puts the dead letter and the reply in one
//! transaction.
#![cfg(feature = "container-tests")]

mod common;

use std::time::Duration;

use common::pipeline::*;
use common::{consume_n, shared_broker, with_timeout};
use kbatch_core::config::{Config, Delivery};
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Inputs, Request, Status, WireCodec};
use rdkafka::message::{Headers, Message};
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

/// Index 100 is outside the lookup table [-16, 15].
const POISON: f32 = 100.0;
const INPUTS: [f32; 8] = [1.0, 2.0, 3.0, POISON, 5.0, 6.0, 7.0, 8.0];

fn lookup_request(id: &str, x: f32) -> Request {
    Request {
        inputs: Inputs::v1(vec![1], vec![x]),
        ..request(id, 0)
    }
}

async fn lookup_config(bootstrap: &str, delivery: Delivery) -> Config {
    // One partition: the poison record sits in front of the requests after it.
    let mut cfg = test_config(bootstrap, 1).await;
    // The single-file form: one ONNX file beside the registry's model directories.
    cfg.model.file = Some("lookup.onnx".into());
    cfg.model.name = "lookup".into();
    cfg.model.input_shape = Some(vec![1]);
    cfg.model.output_size = Some(1);
    cfg.kafka.delivery = delivery;
    // Batches that hold the poison record together with others.
    cfg.adaptive_batching.enable_adaptive_batching = false;
    cfg.batch_processing.max_batch_size = 8;
    cfg.batch_processing.max_wait_time_seconds = 0.5;
    cfg.batch_processing.max_retries = 2;
    cfg.batch_processing.retry_delay = 0.01;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_request_is_answered_and_dead_lettered_and_commits_go_past_it() {
    poison_is_isolated(Delivery::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_exactly_once_the_poison_letter_and_reply_commit_together() {
    poison_is_isolated(Delivery::ExactlyOnce).await;
}

async fn poison_is_isolated(delivery: Delivery) {
    let broker = shared_broker().await;
    let bootstrap = broker.bootstrap_servers();
    let cfg = lookup_config(bootstrap, delivery).await;
    let replies_reader = reader(bootstrap, &cfg.replies.default_topic);
    let dlq_reader = reader(bootstrap, &cfg.replies.dead_letter_topic);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(kbatch_core::app::serve(cfg.clone(), cancel.clone()));
    let p = common::producer(bootstrap);
    for (i, &x) in INPUTS.iter().enumerate() {
        send_request(&p, &cfg, Tier::Normal, &lookup_request(&format!("p{i}"), x)).await;
    }

    let replies = collect_replies(&replies_reader, &cfg, Duration::from_secs(60), |r| {
        r.len() >= INPUTS.len()
    })
    .await;
    let dead = consume_n(&dlq_reader, 1, Duration::from_secs(30)).await;
    cancel.cancel();
    let report = with_timeout("a graceful drain", Duration::from_secs(30), serving)
        .await
        .expect("serve task")
        .expect("serve ran");

    assert_eq!(replies.len(), INPUTS.len(), "every request answered");
    for r in &replies {
        let i: usize = r.reply.request_id[1..].parse().expect("our id");
        if INPUTS[i] == POISON {
            assert_eq!(r.reply.status, Status::ModelError);
            let error = r.reply.error.as_deref().unwrap_or_default();
            assert!(error.contains("out of data bounds"), "{error}");
        } else {
            assert_eq!(r.reply.status, Status::Ok, "{:?}", r.reply.error);
            assert_eq!(
                r.reply.outputs.first_f32(),
                &[10.0 * INPUTS[i]][..],
                "the table's entry"
            );
        }
    }
    let isolated: u64 = report.workers.iter().map(|w| w.isolated).sum();
    let failed: u64 = report.workers.iter().map(|w| w.failed_batches).sum();
    assert_eq!(isolated, 1, "{:?}", report.workers);
    assert!(
        failed >= 1,
        "the poison request failed a batch: {:?}",
        report.workers
    );

    let dl = WireCodec::new(&cfg.wire)
        .decode_dead_letter(dead[0].payload().expect("a dead letter has a value"))
        .expect("the dead letter decodes");
    assert_eq!(dl.error_kind, "poison");
    assert!(dl.error.contains("out of data bounds"), "{}", dl.error);
    assert_eq!(dl.source_topic, cfg.kafka.topics.normal);
    assert_eq!(dl.source_offset, 3, "the fourth record of the partition");
    assert_eq!(dl.key.as_deref(), Some(&b"p3"[..]));
    let value = dl.value.as_deref().expect("the request is kept");
    let kept = WireCodec::new(&cfg.wire)
        .decode_request(value)
        .expect("the kept request decodes");
    assert_eq!(
        (kept.request_id.as_str(), kept.inputs),
        ("p3", Inputs::v1(vec![1], vec![POISON]))
    );
    let header = dead[0]
        .headers()
        .and_then(|hs| hs.iter().find(|h| h.key == "kbatch-error-kind"))
        .and_then(|h| h.value);
    assert_eq!(header, Some(&b"poison"[..]));
    assert_eq!(report.replier.dead_letters, 1, "{:?}", report.replier);
    assert_eq!(report.replier.replies_with(Status::ModelError), 1);
    assert_eq!(report.replier.replies_with(Status::Ok), 7);

    let offset = committed_offset(bootstrap, &cfg.kafka.group_id, &cfg.kafka.topics.normal, 0);
    assert_eq!(
        offset,
        Some(Offset::Offset(INPUTS.len() as i64)),
        "commits go past the poison record"
    );
}
