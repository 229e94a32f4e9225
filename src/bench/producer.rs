//! The sending side of a run: paced production of the plan, and the send log replies are
//! matched against.
//!
//! Invariant: a request's send instant is in the [`SendLog`] before the record is handed to
//! librdkafka, so no reply can arrive for a request whose send time is unknown; a record whose
//! delivery failed is marked failed and is not expected to be answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::collector::{reply_consumer, ReplyStart};
use super::workload::{IdKind, Kind, Plan, RecordFactory};
use super::{BenchError, Pacer, RunSpec};
use kbatch_core::kafka::plain_client_config as client_config;
use kbatch_core::tier::Tier;
use kbatch_core::wire::WireCodec;

const UNSENT: u64 = 0;
const FAILED: u64 = u64::MAX;

/// Send instant of every request of a run, lock-free (one atomic per request).
#[derive(Debug)]
pub struct SendLog {
    base: Instant,
    /// 0: not sent; `u64::MAX`: delivery failed; else nanoseconds since `base`, plus one.
    slots: Box<[AtomicU64]>,
    /// Requests handed to the producer so far (progress for live reports).
    progress: AtomicU64,
}

impl SendLog {
    pub fn new(len: usize, base: Instant) -> Self {
        Self {
            base,
            slots: (0..len).map(|_| AtomicU64::new(UNSENT)).collect(),
            progress: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn mark_sent(&self, seq: u64, at: Instant) {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        let v = u64::try_from(nanos).unwrap_or(FAILED - 2).min(FAILED - 2) + 1;
        if let Some(s) = self.slots.get(seq as usize) {
            s.store(v, Ordering::Release);
        }
    }

    pub fn mark_failed(&self, seq: u64) {
        if let Some(s) = self.slots.get(seq as usize) {
            s.store(FAILED, Ordering::Release);
        }
    }

    pub fn clear(&self, seq: u64) {
        if let Some(s) = self.slots.get(seq as usize) {
            s.store(UNSENT, Ordering::Release);
        }
    }

    /// When request `seq` was sent; `None` if it was not, or its delivery failed.
    pub fn sent_at(&self, seq: u64) -> Option<Instant> {
        match self.slots.get(seq as usize)?.load(Ordering::Acquire) {
            UNSENT | FAILED => None,
            v => Some(self.base + Duration::from_nanos(v - 1)),
        }
    }

    pub fn sent_ok(&self, seq: u64) -> bool {
        self.sent_at(seq).is_some()
    }

    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn set_progress(&self, n: u64) {
        self.progress.store(n, Ordering::Relaxed);
    }
}

/// What the sending side did.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Records handed to the producer (or failed at once).
    pub attempted: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that failed to enqueue or deliver.
    pub failed: u64,
    pub first_error: Option<String>,
    pub first_send: Option<Instant>,
    /// Wall-clock time of the first send (puts runs on one time axis).
    pub first_send_wall: Option<std::time::SystemTime>,
    pub last_send: Option<Instant>,
    /// Largest lateness of a send behind its scheduled time (the generator could not keep up
    /// when this is large); zero for unpaced runs.
    pub max_lag: Duration,
    /// Sending stopped before the plan was done (cancelled).
    pub stopped_early: bool,
}

pub(super) fn producer_config(spec: &RunSpec) -> ClientConfig {
    let mut cfg = client_config(&spec.brokers, &spec.properties);
    cfg.set("linger.ms", "5")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097152")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", "30000");
    cfg
}

fn create_producer(spec: &RunSpec) -> Result<FutureProducer, BenchError> {
    producer_config(spec)
        .create()
        .map_err(|source| BenchError::Client {
            what: "producer",
            brokers: spec.brokers.clone(),
            source,
        })
}

/// Produces the plan on its schedule until done or `stop` fires; returns once every delivery
/// report is in.
pub(super) async fn produce(
    spec: RunSpec,
    plan: Arc<Plan>,
    log: Arc<SendLog>,
    stop: CancellationToken,
) -> Result<Sent, BenchError> {
    let producer = create_producer(&spec)?;
    let mut factory = RecordFactory::new(
        WireCodec::new(&spec.wire),
        spec.format,
        spec.seed,
        &spec.reply_topic,
        spec.timeout_ms,
    );
    let ids = spec.ids();
    let pacer = Pacer::new(spec.rate, plan.len().min(log.len() as u64));
    prepare(&producer, &spec).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let deliveries = tokio::spawn(await_deliveries(rx, log.clone()));

    let mut sent = Sent::default();
    let (mut id, mut buf) = (String::new(), Vec::with_capacity(8 * 1024));
    let start = Instant::now();
    let mut next = 0u64;
    'schedule: while next < pacer.total() {
        let due = pacer.due_by(start.elapsed());
        while next < due {
            let seq = next;
            if pacer.is_paced() {
                let lag = start.elapsed().saturating_sub(pacer.due_at(seq));
                sent.max_lag = sent.max_lag.max(lag);
            }
            ids.write(seq, &mut id);
            factory.encode(seq, plan.kind(seq), &id, now_ms(), &mut buf);
            let topic = spec.topics.topic(plan.tier(seq));
            loop {
                let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                    key: spec.correlation_header.as_str(),
                    value: Some(id.as_bytes()),
                });
                let record = FutureRecord::to(topic)
                    .key(id.as_bytes())
                    .payload(&buf)
                    .headers(headers);
                let at = Instant::now();
                log.mark_sent(seq, at);
                match producer.send_result(record) {
                    Ok(fut) => {
                        if sent.first_send.is_none() {
                            sent.first_send = Some(at);
                            sent.first_send_wall = Some(std::time::SystemTime::now());
                        }
                        sent.last_send = Some(at);
                        // The receiver only goes away if its task panicked; then the join
                        // below reports it.
                        let _ = tx.send((seq, fut));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // librdkafka's queue is full: wait for deliveries to free room.
                        log.clear(seq);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                            _ = stop.cancelled() => {
                                sent.stopped_early = true;
                                break 'schedule;
                            }
                        }
                    }
                    Err((e, _)) => {
                        log.mark_failed(seq);
                        sent.failed += 1;
                        sent.first_error.get_or_insert_with(|| e.to_string());
                        break;
                    }
                }
            }
            next += 1;
            sent.attempted = next;
            if next.is_multiple_of(256) {
                log.set_progress(next);
                // Unpaced runs would otherwise hold this worker for the whole backlog.
                tokio::task::yield_now().await;
                if stop.is_cancelled() {
                    sent.stopped_early = next < pacer.total();
                    break 'schedule;
                }
            }
        }
        log.set_progress(next);
        if next >= pacer.total() {
            break;
        }
        let at = tokio::time::Instant::from_std(start + pacer.due_at(next));
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.cancelled() => {
                sent.stopped_early = true;
                break;
            }
        }
    }
    log.set_progress(next);
    drop(tx);
    let (delivered, failed, error) = deliveries
        .await
        .map_err(|e| BenchError::Task(e.to_string()))?;
    sent.delivered = delivered;
    sent.failed += failed;
    if sent.first_error.is_none() {
        sent.first_error = error;
    }
    Ok(sent)
}

/// Fetches the tier topics' metadata (which also connects to their leaders) before the clock
/// starts, so the first requests of a run do not pay for the producer's start-up.
async fn prepare(producer: &FutureProducer, spec: &RunSpec) -> Result<(), BenchError> {
    let producer = producer.clone();
    let topics: Vec<String> = Tier::ALL
        .iter()
        .map(|&t| spec.topics.topic(t).to_owned())
        .collect();
    tokio::task::spawn_blocking(move || {
        for t in &topics {
            rdkafka::producer::Producer::client(&producer)
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .map_err(|source| BenchError::Kafka {
                    op: "metadata",
                    source,
                })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| BenchError::Task(e.to_string()))?
}

/// Awaits delivery reports in send order; marks failed requests in the log.
async fn await_deliveries(
    mut rx: mpsc::UnboundedReceiver<(u64, DeliveryFuture)>,
    log: Arc<SendLog>,
) -> (u64, u64, Option<String>) {
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    while let Some((seq, fut)) = rx.recv().await {
        let error = match fut.await {
            Ok(Ok(_)) => None,
            Ok(Err((e, _))) => Some(e.to_string()),
            Err(_) => Some("producer dropped the delivery report".to_owned()),
        };
        match error {
            None => ok += 1,
            Some(e) => {
                log.mark_failed(seq);
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    (ok, failed, first_error)
}

/// Sends a probe request to every tier topic once a second until each tier has answered one;
/// returns how long that took. Then, for `sustain`, sends warm-up requests at the run's rate
/// (round-robin over the tiers) and waits for their replies: a just-started broker JVM compiles
/// its hot paths and the server's batcher finds its batch size in the first seconds under load,
/// which a run should not measure. Used before timed runs so a consumer-group join, model load
/// or client start-up is not measured as request latency. Warm-up replies are ignored by the
/// run's collector.
pub async fn warm_up(
    spec: &RunSpec,
    limit: Duration,
    sustain: Duration,
) -> Result<Duration, BenchError> {
    let producer = create_producer(spec)?;
    let consumer = reply_consumer(spec, ReplyStart::End).await?;
    let codec = WireCodec::new(&spec.wire);
    let mut factory = RecordFactory::new(
        codec.clone(),
        spec.format,
        spec.seed,
        &spec.reply_topic,
        None,
    );
    let ids = spec.ids();
    let start = Instant::now();
    let mut probe = tokio::time::interval(Duration::from_secs(1));
    let mut answered = [false; 4];
    let mut n = 0;
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Err(BenchError::WarmUpTimedOut(limit)),
            _ = probe.tick() => {
                for tier in Tier::ALL.into_iter().filter(|t| !answered[t.index()]) {
                    let id = ids.warm_up(n);
                    n += 1;
                    factory.encode(0, Kind::Valid, &id, now_ms(), &mut buf);
                    let record = FutureRecord::to(spec.topics.topic(tier))
                        .key(id.as_bytes())
                        .payload(&buf);
                    producer
                        .send_result(record)
                        .map_err(|(source, _)| BenchError::Kafka { op: "produce", source })?;
                }
            }
            m = consumer.recv() => {
                use rdkafka::Message as _;
                let Ok(m) = m else { continue };
                let Some(reply) = m.payload().and_then(|p| codec.decode_reply(p).ok()) else { continue };
                if ids.classify(&reply.request_id) == IdKind::WarmUp {
                    // No priority is set, so the served tier is the topic's.
                    answered[reply.tier.index()] = true;
                    if answered.iter().all(|a| *a) {
                        break;
                    }
                }
            }
        }
    }
    let first = start.elapsed();
    if sustain.is_zero() || spec.rate <= 0.0 {
        return Ok(first);
    }
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.rate));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let until = tokio::time::Instant::now() + sustain;
    let (mut sent, mut replied) = (0u64, 0u64);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = pace.tick() => {
                let id = ids.warm_up(n);
                n += 1;
                factory.encode(0, Kind::Valid, &id, now_ms(), &mut buf);
                let record = FutureRecord::to(spec.topics.topic(Tier::ALL[(sent % 4) as usize]))
                    .key(id.as_bytes())
                    .payload(&buf);
                producer
                    .send_result(record)
                    .map_err(|(source, _)| BenchError::Kafka { op: "produce", source })?;
                sent += 1;
            }
            m = consumer.recv() => {
                use rdkafka::Message as _;
                if m.ok().and_then(|m| m.payload().and_then(|p| codec.decode_reply(p).ok()))
                    .is_some_and(|r| ids.classify(&r.request_id) == IdKind::WarmUp) {
                    replied += 1;
                }
            }
        }
    }
    // Let the warm-up load drain (bounded) so the run starts on an idle pipeline.
    let drain = tokio::time::Instant::now() + Duration::from_secs(10);
    while replied < sent {
        tokio::select! {
            _ = tokio::time::sleep_until(drain) => break,
            m = consumer.recv() => {
                use rdkafka::Message as _;
                if m.ok().and_then(|m| m.payload().and_then(|p| codec.decode_reply(p).ok()))
                    .is_some_and(|r| ids.classify(&r.request_id) == IdKind::WarmUp) {
                    replied += 1;
                }
            }
        }
    }
    Ok(first)
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "producer_tests.rs"]
mod tests;
