//! The broker floor: a server that answers every request at once, without a model or batching,
//! so `kbatch bench` against it measures what the broker and the Kafka round trip alone cost.
//! `scripts/bench.sh` runs it with `SERVER=echo` to set kbatch's figures beside the floor's.
//!
//! It reads the configured tier topics in the configured group, decodes each request and
//! produces an OK reply (fixed outputs of the model's size) to the request's reply topic.
//! Offsets are committed automatically: this is a measuring stick, not a delivery guarantee.
//!
//!   KBATCH_KAFKA__BROKERS=127.0.0.1:9092 cargo run --release --example echo_server

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use kbatch_core::config::{load, LoadOptions};
use kbatch_core::pipeline::now_ms;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Outputs, Reply, Status, Timings, WireCodec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cfg = load(&LoadOptions::default())?.config;
    let k = &cfg.kafka;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", format!("{}-echo", k.group_id))
        .set("fetch.wait.max.ms", k.fetch_wait_max_ms.to_string())
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set("auto.offset.reset", "earliest")
        .create()?;
    let topics: Vec<&str> = Tier::ALL.iter().map(|t| k.topics.topic(*t)).collect();
    consumer.subscribe(&topics)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &k.brokers)
        .set("linger.ms", cfg.replies.linger_ms.to_string())
        .create()?;
    let codec = WireCodec::new(&cfg.wire);
    // As many values as the bundled default model answers (cnn_lstm: sell, hold, buy).
    let outputs = vec![0.0f32; 3];
    let mut in_flight = FuturesUnordered::new();
    let mut buf = Vec::new();
    eprintln!("echo server: reading {topics:?} from {}", k.brokers);
    loop {
        let msg = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            Some(_) = in_flight.next(), if !in_flight.is_empty() => continue,
            m = consumer.recv() => m?,
        };
        let Ok(req) = codec.decode_request(msg.payload().unwrap_or_default()) else {
            continue;
        };
        let reply = Reply {
            request_id: req.request_id,
            status: Status::Ok,
            error: None,
            model_name: cfg.model.name.clone(),
            model_version: "echo".into(),
            outputs: Outputs::V1 {
                output_shape: vec![outputs.len() as i32],
                outputs: outputs.clone(),
            },
            tier: k.topics.tier_of(msg.topic()).unwrap_or(Tier::Normal),
            timings: Timings::default(),
            completed_at_ms: now_ms(),
        };
        buf.clear();
        codec.encode_reply(&reply, &mut buf);
        let topic = req
            .reply_topic
            .unwrap_or_else(|| cfg.replies.default_topic.clone());
        let mut record = FutureRecord::to(&topic).payload(&buf[..]);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push(delivery),
            Err((e, _)) => eprintln!("echo server: reply not enqueued: {e}"),
        }
    }
    producer.flush(Duration::from_secs(5))?;
    Ok(())
}
