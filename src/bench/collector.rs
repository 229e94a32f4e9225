//! The receiving side of a run: reads the reply topic, matches each reply to its request and
//! keeps the tallies the live view and the final report are made from.
//!
//! Invariant: a request counts as answered once, on its first reply; any later reply for the
//! same id is a duplicate, and a reply whose id this run never sent (or whose send failed) is
//! unknown. Latency is reply-received instant minus send instant on one monotonic clock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::live::{LiveStats, TierLive};
use super::producer::producer_config;
use super::timeline::{self, Seconds};
use super::workload::{IdKind, Kind, Plan, RequestIds};
use super::{BenchError, RunSpec, SendLog};
use kbatch_core::kafka::plain_client_config as client_config;
use kbatch_core::tier::Tier;
use kbatch_core::wire::{Reply, Status, Timings, WireCodec};

/// Highest latency recorded exactly (µs): one hour; anything slower is clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub(super) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

fn batch_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 20, 3).expect("static histogram bounds are valid")
}

/// What one reply was, relative to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// First reply to request `seq`.
    Answered {
        seq: u64,
        tier: Tier,
        latency: Duration,
    },
    /// Another reply to an already answered request.
    Duplicate { seq: u64 },
    /// A reply to a warm-up probe.
    WarmUp,
    /// Not a request of this run (another run, an old reply, or a request whose send failed).
    Unknown,
}

/// Counts and histograms of a run so far.
#[derive(Debug, Clone)]
pub struct Tally {
    pub answered: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub warm_up: u64,
    /// Reply records that could not be decoded as replies.
    pub undecodable: u64,
    /// Consumer errors seen (librdkafka retries them; shown so a broken link is visible).
    pub consumer_errors: u64,
    /// Answered requests whose status contradicts what was sent: a valid request answered
    /// INVALID_INPUT, or an invalid one answered anything else.
    pub unexpected_status: u64,
    /// First replies by status, indexed by `Status as usize`.
    pub statuses: [u64; 8],
    /// End-to-end latency (µs) of answered requests, per tier (sent tier).
    pub latency: [Histogram<u64>; 4],
    /// `timings.end_to_end_us` the server reported, all tiers.
    pub server_latency: Histogram<u64>,
    /// `timings.batch_size` of OK replies.
    pub batch_sizes: Histogram<u64>,
    /// Where the time of OK replies went, per tier (sent tier), indexed by [`Stage`].
    pub stages: [[Histogram<u64>; Stage::COUNT]; 4],
    /// End-to-end latency (µs) of answered requests by when they were sent: one histogram per
    /// [`WINDOW`] since sending started, so a tail that grows during a run shows.
    pub windows: Vec<Histogram<u64>>,
    /// Per second since the first send: latency per tier by send second, replies by receive
    /// second (the report's `timeline`).
    pub seconds: Seconds,
    /// The first send, the origin of `windows` and `seconds`; set with the first reply.
    pub origin: Option<Instant>,
    pub first_reply: Option<Instant>,
    pub last_reply: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            answered: 0,
            duplicates: 0,
            unknown: 0,
            warm_up: 0,
            undecodable: 0,
            consumer_errors: 0,
            unexpected_status: 0,
            statuses: [0; 8],
            latency: std::array::from_fn(|_| latency_histogram()),
            server_latency: latency_histogram(),
            batch_sizes: batch_histogram(),
            stages: std::array::from_fn(|_| std::array::from_fn(|_| latency_histogram())),
            windows: Vec::new(),
            seconds: Seconds::default(),
            origin: None,
            first_reply: None,
            last_reply: None,
        }
    }
}

/// One part of an OK reply's end-to-end latency, from the server's timings and the client's
/// clock (one machine, one clock: the parts add up to the end-to-end figure within a
/// millisecond, the resolution of record timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Record created (its timestamp) → admitted by the server: producer, broker, fetch,
    /// decoding and the wait in Kafka while lower tiers are held or topics paused.
    Intake,
    /// Admitted → its batch started.
    Queue,
    /// The batch's inference.
    Inference,
    /// Outcome ready → the reply received: reply produce, broker, the client's fetch.
    Reply,
}

impl Stage {
    pub const COUNT: usize = 4;
    pub const ALL: [Stage; Self::COUNT] = [Self::Intake, Self::Queue, Self::Inference, Self::Reply];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Queue => "queue",
            Self::Inference => "inference",
            Self::Reply => "reply",
        }
    }

    /// The parts of one OK reply, in µs, or `None` when the server measured no end-to-end time
    /// (a record timestamp it could not use).
    pub fn split(timings: &Timings, client_us: u64) -> Option<[u64; Self::COUNT]> {
        let server = u64::try_from(timings.end_to_end_us)
            .ok()
            .filter(|&s| s > 0)?;
        let queue = u64::try_from(timings.queue_wait_us).unwrap_or(0);
        let inference = u64::try_from(timings.inference_us).unwrap_or(0);
        Some([
            server.saturating_sub(queue).saturating_sub(inference),
            queue,
            inference,
            client_us.saturating_sub(server),
        ])
    }
}

/// Width of the report's latency windows.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Tallies since the last live snapshot.
#[derive(Debug)]
struct Interval {
    since: Instant,
    answered: u64,
    latency: [Histogram<u64>; 4],
    batch_sum: u64,
    batch_count: u64,
}

impl Interval {
    fn new(since: Instant) -> Self {
        Self {
            since,
            answered: 0,
            latency: std::array::from_fn(|_| latency_histogram()),
            batch_sum: 0,
            batch_count: 0,
        }
    }
}

/// Matches replies to the requests of one run (pure: no I/O, the clock is passed in).
#[derive(Debug)]
pub struct Matcher {
    ids: RequestIds,
    plan: Arc<Plan>,
    log: Arc<SendLog>,
    seen: Vec<bool>,
    tally: Tally,
    interval: Interval,
    started: Instant,
}

impl Matcher {
    pub fn new(ids: RequestIds, plan: Arc<Plan>, log: Arc<SendLog>) -> Self {
        let now = Instant::now();
        Self {
            ids,
            seen: vec![false; plan.len() as usize],
            plan,
            log,
            tally: Tally::default(),
            interval: Interval::new(now),
            started: now,
        }
    }

    /// Counts the timeline's latency by reply second (a backlog: every request is sent at once).
    pub fn latency_by_reply(mut self) -> Self {
        self.tally.seconds = timeline::Seconds::new(timeline::LatencyBy::Reply);
        self
    }

    /// Classifies `reply`, received at `at`, and updates the tallies.
    pub fn on_reply(&mut self, reply: &Reply, at: Instant) -> Match {
        let seq = match self.ids.classify(&reply.request_id) {
            IdKind::WarmUp => {
                self.tally.warm_up += 1;
                return Match::WarmUp;
            }
            IdKind::Foreign => {
                self.tally.unknown += 1;
                return Match::Unknown;
            }
            IdKind::Seq(seq) => seq,
        };
        let sent_at = match self.log.sent_at(seq) {
            Some(t) if (seq as usize) < self.seen.len() => t,
            _ => {
                self.tally.unknown += 1;
                return Match::Unknown;
            }
        };
        let t = &mut self.tally;
        t.first_reply.get_or_insert(at);
        t.last_reply = Some(at.max(t.last_reply.unwrap_or(at)));
        if std::mem::replace(&mut self.seen[seq as usize], true) {
            t.duplicates += 1;
            return Match::Duplicate { seq };
        }
        let tier = self.plan.tier(seq);
        let latency = at.saturating_duration_since(sent_at);
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        t.answered += 1;
        t.statuses[reply.status as usize] += 1;
        t.latency[tier.index()].saturating_record(us);
        // From the first send, so a run of whole windows has no stray last one. Kept from the
        // first reply on: a later failure of send 0 must not move the buckets.
        let origin = *t
            .origin
            .get_or_insert_with(|| self.log.sent_at(0).unwrap_or(self.started));
        t.seconds.record(
            tier,
            timeline::bucket(origin, sent_at),
            timeline::bucket(origin, at),
            us,
        );
        let window =
            (sent_at.saturating_duration_since(origin).as_secs() / WINDOW.as_secs()) as usize;
        if t.windows.len() <= window {
            t.windows.resize_with(window + 1, latency_histogram);
        }
        t.windows[window].saturating_record(us);
        self.interval.latency[tier.index()].saturating_record(us);
        self.interval.answered += 1;
        // Zero or negative: the server did not measure it.
        if let Ok(server @ 1..) = u64::try_from(reply.timings.end_to_end_us) {
            t.server_latency.saturating_record(server);
        }
        if reply.status == Status::Ok {
            if let Ok(b) = u64::try_from(reply.timings.batch_size) {
                if b > 0 {
                    t.batch_sizes.saturating_record(b);
                    if let Some(parts) = Stage::split(&reply.timings, us) {
                        for (h, part) in t.stages[tier.index()].iter_mut().zip(parts) {
                            h.saturating_record(part.max(1));
                        }
                    }
                    self.interval.batch_sum += b;
                    self.interval.batch_count += 1;
                }
            }
        }
        let invalid = self.plan.kind(seq) == Kind::Invalid;
        if invalid != (reply.status == Status::InvalidInput) {
            t.unexpected_status += 1;
        }
        Match::Answered { seq, tier, latency }
    }

    /// Starts the live clock (elapsed time and the first interval) at `now`: when sending starts.
    pub fn restart_clock(&mut self, now: Instant) {
        self.started = now;
        self.interval = Interval::new(now);
    }

    /// A record on the reply topic that is not a reply.
    pub fn on_undecodable(&mut self) {
        self.tally.undecodable += 1;
    }

    pub fn on_consumer_error(&mut self) {
        self.tally.consumer_errors += 1;
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub fn into_tally(self) -> Tally {
        self.tally
    }

    /// The live view at `now`; starts a new interval.
    pub fn snapshot(&mut self, now: Instant) -> LiveStats {
        let iv = std::mem::replace(&mut self.interval, Interval::new(now));
        let tiers = std::array::from_fn(|i| {
            let h = &iv.latency[i];
            TierLive {
                tier: Tier::ALL[i],
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
            }
        });
        let statuses = Status::ALL
            .iter()
            .map(|&s| (s, self.tally.statuses[s as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        LiveStats {
            elapsed: now.saturating_duration_since(self.started),
            sent: self.log.progress(),
            answered: self.tally.answered,
            interval: now.saturating_duration_since(iv.since),
            interval_answered: iv.answered,
            statuses,
            tiers,
            batch_mean: (iv.batch_count > 0).then(|| iv.batch_sum as f64 / iv.batch_count as f64),
            duplicates: self.tally.duplicates,
            unknown: self.tally.unknown,
        }
    }
}

/// Where the reply consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyStart {
    /// Offset 0 of every partition: for a topic created for this run.
    Beginning,
    /// The high watermarks at start: for a shared topic with older replies in it.
    End,
}

/// A consumer assigned to every partition of `spec.reply_topic` (no group join: replies are
/// readable in milliseconds, and nothing is committed).
pub(super) async fn reply_consumer(
    spec: &RunSpec,
    start: ReplyStart,
) -> Result<StreamConsumer, BenchError> {
    let mut cfg = client_config(&spec.brokers, &spec.properties);
    cfg.set("group.id", format!("kbatch-bench-{}", spec.run_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cfg.create().map_err(|source| BenchError::Client {
        what: "reply consumer",
        brokers: spec.brokers.clone(),
        source,
    })?;
    let probe: BaseConsumer = cfg.create().map_err(|source| BenchError::Client {
        what: "metadata client",
        brokers: spec.brokers.clone(),
        source,
    })?;
    let topic = spec.reply_topic.clone();
    let brokers = spec.brokers.clone();
    // Metadata and watermarks block their thread.
    let offsets = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, Offset)>, BenchError> {
        let kafka = |op| move |source| BenchError::Kafka { op, source };
        let md = probe
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(kafka("metadata"))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(BenchError::TopicNotReady {
                topic: topic.clone(),
                partitions: 1,
                waited: Duration::from_secs(10),
                brokers,
            });
        }
        partitions
            .into_iter()
            .map(|p| match start {
                ReplyStart::Beginning => Ok((p, Offset::Beginning)),
                ReplyStart::End => {
                    let (_, high) = probe
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .map_err(kafka("watermarks"))?;
                    Ok((p, Offset::Offset(high)))
                }
            })
            .collect()
    })
    .await
    .map_err(|e| BenchError::Task(e.to_string()))??;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in offsets {
        tpl.add_partition_offset(&spec.reply_topic, p, offset)
            .map_err(|source| BenchError::Kafka {
                op: "assign",
                source,
            })?;
    }
    consumer.assign(&tpl).map_err(|source| BenchError::Kafka {
        op: "assign",
        source,
    })?;
    Ok(consumer)
}

/// The running collector task of one run.
pub struct Collector {
    matcher: Arc<Mutex<Matcher>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Collector {
    /// Assigns the reply consumer (before anything is sent) and starts reading.
    ///
    /// On a topic made for this run it also writes a marker record there and waits (up to
    /// 10 s) until the consumer reads it back: a fresh consumer needs a few hundred ms to find
    /// its partitions' leaders and start fetching, and replies waiting in the topic meanwhile
    /// would show up as latency. A shared topic is not written to (other readers would see the
    /// marker); use a warm-up there.
    pub async fn start(spec: &RunSpec, matcher: Matcher) -> Result<Self, BenchError> {
        let start = if spec.reply_from_start {
            ReplyStart::Beginning
        } else {
            ReplyStart::End
        };
        let consumer = reply_consumer(spec, start).await?;
        let codec = WireCodec::new(&spec.wire);
        let matcher = Arc::new(Mutex::new(matcher));
        let stop = CancellationToken::new();
        let marker = format!("kbatch-bench-ready-{}", spec.run_id).into_bytes();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(collect(
            consumer,
            codec,
            matcher.clone(),
            stop.clone(),
            (marker.clone(), Some(ready_tx)),
        ));
        let this = Self {
            matcher,
            stop,
            task,
        };
        if spec.reply_from_start {
            let producer: FutureProducer =
                producer_config(spec)
                    .create()
                    .map_err(|source| BenchError::Client {
                        what: "producer",
                        brokers: spec.brokers.clone(),
                        source,
                    })?;
            let record = FutureRecord::<[u8], [u8]>::to(&spec.reply_topic)
                .key(marker.as_slice())
                .payload(&[]);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(source, _)| BenchError::Kafka {
                    op: "produce (reply-topic marker)",
                    source,
                })?;
            if tokio::time::timeout(Duration::from_secs(10), ready_rx)
                .await
                .is_err()
            {
                tracing::warn!(topic = %spec.reply_topic, "reply consumer did not see its marker within 10 s; starting anyway");
            }
        }
        Ok(this)
    }

    fn lock(&self) -> MutexGuard<'_, Matcher> {
        // A panic while holding the lock leaves counters that are still meaningful.
        self.matcher.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the live clock now (see [`Matcher::restart_clock`]).
    pub fn restart_clock(&self) {
        self.lock().restart_clock(Instant::now());
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.lock().tally().answered
    }

    /// The live view; starts a new interval.
    pub fn snapshot(&self) -> LiveStats {
        self.lock().snapshot(Instant::now())
    }

    /// Stops reading and returns the final tallies.
    pub async fn stop(self) -> Result<Tally, BenchError> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| BenchError::Task(e.to_string()))?;
        let m = Arc::try_unwrap(self.matcher)
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .into_tally()
            })
            .unwrap_or_else(|shared| {
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .tally()
                    .clone()
            });
        Ok(m)
    }
}

/// The marker key this run writes to its own reply topic, and who waits for it.
type Marker = (Vec<u8>, Option<tokio::sync::oneshot::Sender<()>>);

async fn collect(
    consumer: StreamConsumer,
    codec: WireCodec,
    matcher: Arc<Mutex<Matcher>>,
    stop: CancellationToken,
    (marker, mut ready): Marker,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = consumer.recv() => m,
        };
        let at = Instant::now();
        if let Ok(m) = &msg {
            if m.key() == Some(marker.as_slice()) {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                continue;
            }
        }
        let mut m = matcher.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            Ok(msg) => match msg.payload().map(|p| codec.decode_reply(p)) {
                Some(Ok(reply)) => {
                    m.on_reply(&reply, at);
                }
                _ => m.on_undecodable(),
            },
            Err(e) => {
                m.on_consumer_error();
                drop(m);
                tracing::warn!(error = %e, "reply consumer error");
            }
        }
    }
}

#[cfg(test)]
#[path = "collector_tests.rs"]
mod tests;
