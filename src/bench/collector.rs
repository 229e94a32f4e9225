//! The receiving side of a run: reads the reply topic, matches each reply to its request and
//! keeps the tallies the live view and the final report are made from.
//!
//! Invariant: a request counts as answered once, on its first reply; any later reply for the
//! same id is a duplicate, and a reply whose id this run never sent (or whose send failed) is
//! unknown. Latency is reply-received instant minus send instant on one monotonic clock.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::admin::client_config;
use super::producer::producer_config;
use super::workload::{IdKind, Kind, Plan, RequestIds};
use super::{BenchError, RunSpec, SendLog};
use crate::tier::Tier;
use crate::wire::{Reply, Status, WireCodec};

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
            first_reply: None,
            last_reply: None,
        }
    }
}

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

/// One tier's latency over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLive {
    pub tier: Tier,
    /// Replies in the interval.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// What a run looks like right now (printed every second by the bench and the demo).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStats {
    /// Since the collector started.
    pub elapsed: Duration,
    /// Requests handed to the producer so far.
    pub sent: u64,
    /// Requests answered so far (first replies).
    pub answered: u64,
    /// Length of the interval the rate and percentiles cover.
    pub interval: Duration,
    pub interval_answered: u64,
    /// First replies by status so far (non-zero only).
    pub statuses: Vec<(Status, u64)>,
    /// Per-tier latency over the interval.
    pub tiers: [TierLive; 4],
    /// Mean `timings.batch_size` of OK replies in the interval.
    pub batch_mean: Option<f64>,
    pub duplicates: u64,
    pub unknown: u64,
}

impl LiveStats {
    /// Replies per second over the interval.
    pub fn rate(&self) -> f64 {
        let secs = self.interval.as_secs_f64();
        if secs > 0.0 {
            self.interval_answered as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LiveStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>6.1}s] sent {} answered {} ({:.0}/s)",
            self.elapsed.as_secs_f64(),
            self.sent,
            self.answered,
            self.rate()
        )?;
        f.write_str(" | p50/p99 ms:")?;
        for t in &self.tiers {
            if t.count == 0 {
                write!(f, " {} -", t.tier.as_str())?;
            } else {
                write!(
                    f,
                    " {} {:.1}/{:.1}",
                    t.tier.as_str(),
                    t.p50_us as f64 / 1000.0,
                    t.p99_us as f64 / 1000.0
                )?;
            }
        }
        if let Some(b) = self.batch_mean {
            write!(f, " | batch {b:.1}")?;
        }
        f.write_str(" |")?;
        for (s, n) in &self.statuses {
            write!(f, " {}={n}", s.as_str())?;
        }
        if self.duplicates > 0 {
            write!(f, " dup={}", self.duplicates)?;
        }
        if self.unknown > 0 {
            write!(f, " unknown={}", self.unknown)?;
        }
        Ok(())
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
mod tests {
    use super::*;
    use crate::bench::TierMix;
    use crate::wire::Timings;

    fn reply(id: &str, status: Status, batch: i32) -> Reply {
        Reply {
            request_id: id.to_owned(),
            status,
            error: None,
            model_name: "m".into(),
            model_version: "1".into(),
            output_shape: vec![3],
            outputs: vec![0.2, 0.3, 0.5],
            tier: Tier::Normal,
            timings: Timings {
                queue_wait_us: 10,
                batch_size: batch,
                inference_us: 100,
                end_to_end_us: 500,
            },
            completed_at_ms: 0,
        }
    }

    fn fixture(n: u64, bad: f64) -> (Matcher, Arc<SendLog>, Instant) {
        let base = Instant::now();
        let plan = Arc::new(Plan::new(n, &TierMix::default(), bad, 11));
        let log = Arc::new(SendLog::new(n as usize, base));
        let m = Matcher::new(RequestIds::new("run1"), plan, log.clone());
        (m, log, base)
    }

    #[test]
    fn first_reply_answers_and_later_ones_are_duplicates() {
        let (mut m, log, base) = fixture(10, 0.0);
        log.mark_sent(3, base + Duration::from_millis(5));
        let got = m.on_reply(
            &reply("run1-3", Status::Ok, 4),
            base + Duration::from_millis(12),
        );
        let Match::Answered { seq, latency, .. } = got else {
            panic!("expected an answer, got {got:?}");
        };
        assert_eq!((seq, latency), (3, Duration::from_millis(7)));
        let again = m.on_reply(
            &reply("run1-3", Status::Ok, 4),
            base + Duration::from_millis(20),
        );
        assert_eq!(again, Match::Duplicate { seq: 3 });
        let t = m.tally();
        assert_eq!((t.answered, t.duplicates, t.unknown), (1, 1, 0));
        assert_eq!(t.statuses[Status::Ok as usize], 1);
        assert_eq!(t.batch_sizes.len(), 1);
        assert_eq!(t.last_reply, Some(base + Duration::from_millis(20)));
        let tier = m.plan.tier(3);
        let h = &t.latency[tier.index()];
        assert_eq!(h.len(), 1);
        // hdrhistogram keeps three significant digits: 7,000 µs within 0.1 %.
        assert!(h.value_at_quantile(0.5).abs_diff(7000) <= 7);
    }

    #[test]
    fn foreign_unsent_failed_and_out_of_range_ids_are_unknown() {
        let (mut m, log, base) = fixture(10, 0.0);
        log.mark_sent(1, base);
        log.mark_failed(1);
        let at = base + Duration::from_millis(1);
        for id in [
            "other-1", "run1-1", "run1-2", "run1-10", "run1-x", "run1-01",
        ] {
            assert_eq!(
                m.on_reply(&reply(id, Status::Ok, 1), at),
                Match::Unknown,
                "{id}"
            );
        }
        assert_eq!(
            m.on_reply(&reply("run1-w0", Status::Ok, 1), at),
            Match::WarmUp
        );
        let t = m.tally();
        assert_eq!((t.answered, t.unknown, t.warm_up), (0, 6, 1));
        assert_eq!(
            t.first_reply, None,
            "unknown replies do not start the reply clock"
        );
    }

    #[test]
    fn statuses_that_contradict_the_request_kind_are_flagged() {
        let (mut m, log, base) = fixture(2000, 0.5);
        let (valid, invalid) = {
            let p = &m.plan;
            let find = |k| (0..p.len()).find(|&s| p.kind(s) == k).unwrap();
            (find(Kind::Valid), find(Kind::Invalid))
        };
        for s in [valid, invalid] {
            log.mark_sent(s, base);
        }
        let at = base + Duration::from_millis(1);
        m.on_reply(
            &reply(&format!("run1-{valid}"), Status::InvalidInput, 0),
            at,
        );
        m.on_reply(
            &reply(&format!("run1-{invalid}"), Status::InvalidInput, 0),
            at,
        );
        assert_eq!(m.tally().unexpected_status, 1);
        assert_eq!(m.tally().statuses[Status::InvalidInput as usize], 2);
        assert_eq!(
            m.tally().batch_sizes.len(),
            0,
            "only OK replies carry batch sizes"
        );
    }

    #[test]
    fn snapshot_covers_the_interval_and_resets_it() {
        let (mut m, log, base) = fixture(10, 0.0);
        for s in 0..4 {
            log.mark_sent(s, base);
            m.on_reply(
                &reply(&format!("run1-{s}"), Status::Ok, 2 * (s as i32 + 1)),
                base,
            );
        }
        let s = m.snapshot(m.started + Duration::from_secs(2));
        assert_eq!(s.answered, 4);
        assert_eq!(s.interval_answered, 4);
        assert_eq!(s.tiers.iter().map(|t| t.count).sum::<u64>(), 4);
        assert_eq!(s.batch_mean, Some(5.0));
        assert_eq!(s.statuses, vec![(Status::Ok, 4)]);
        assert!(s.to_string().contains("OK=4"), "{s}");
        let next = m.snapshot(m.started + Duration::from_secs(3));
        assert_eq!((next.answered, next.interval_answered), (4, 0));
        assert_eq!(next.rate(), 0.0);
        assert_eq!(next.batch_mean, None);
    }
}
