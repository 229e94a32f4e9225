//! A requester that names a new reply topic in every request: the load that would grow a reply
//! producer's memory without bound (each topic it writes to keeps a librdkafka topic object and
//! its metadata). `scripts/reply-topic-rss.sh` runs it against `kbatch serve` and reads the
//! server's peak resident memory.
//!
//!   KBATCH_KAFKA__BROKERS=127.0.0.1:9092 cargo run --release --example reply_topic_flood -- 100000
//!
//! Requests go to the low tier's topic, each naming `flood.<run>.<n>` as its reply topic (none
//! of which exists); the configuration is read like `kbatch serve` reads it.

use futures::stream::{FuturesUnordered, StreamExt};
use kbatch_core::config::{load, LoadOptions};
use kbatch_core::pipeline::now_ms;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Framing, Inputs, Request, WireCodec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

/// Deliveries awaited at once.
const IN_FLIGHT: usize = 5_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100_000), |a| a.parse())?;
    let cfg = load(&LoadOptions::default())?.config;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("linger.ms", "5")
        .create()?;
    let codec = WireCodec::new(&cfg.wire);
    let topic = cfg.kafka.topics.topic(Tier::Low).to_owned();
    let run = now_ms();
    // The bundled default model's per-row shape (cnn_lstm: 64 time steps x 16 features).
    let shape = [64usize, 16];
    let elements: usize = shape.iter().product();
    let mut pending = FuturesUnordered::new();
    let mut buf = Vec::new();
    for i in 0..n {
        let request = Request {
            request_id: format!("flood-{i}"),
            created_at_ms: now_ms(),
            deadline_ms: None,
            timeout_ms: None,
            model_name: None,
            model_version: None,
            priority: None,
            reply_topic: Some(format!("flood.{run}.{i}")),
            client_id: Some("flood".into()),
            inputs: Inputs::v1(
                shape.iter().map(|&d| d as i32).collect(),
                vec![0.25; elements],
            ),
        };
        buf.clear();
        codec.encode_request(&request, Framing::Confluent, &mut buf);
        let mut record = FutureRecord::to(&topic)
            .key(&request.request_id)
            .payload(&buf);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    settle(pending.next().await)?;
                }
                Err((e, _)) => anyhow::bail!("producing a request: {e}"),
            }
        }
        if pending.len() >= IN_FLIGHT {
            settle(pending.next().await)?;
        }
    }
    while let Some(result) = pending.next().await {
        settle(Some(result))?;
    }
    eprintln!("produced {n} requests, each naming its own reply topic");
    Ok(())
}

/// Fails on a delivery that failed.
fn settle(
    result: Option<
        Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
    >,
) -> anyhow::Result<()> {
    match result {
        Some(Ok(Err((e, _)))) => anyhow::bail!("producing a request: {e}"),
        Some(Err(_)) => anyhow::bail!("the producer went away"),
        _ => Ok(()),
    }
}
