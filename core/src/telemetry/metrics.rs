//! The Prometheus registry and every metric kbatch exports (catalogue: `docs/metrics.md`).
//!
//! Invariants: names follow `kbatch_<area>_<name>_<unit>[_total]`; every label has a small fixed
//! value set (`tier`, `status`, `flush_reason`, `error_type`, `stage`, `result`, and the assigned
//! `topic`/`partition` for lag), so series never grow with traffic; per-tier handles are resolved
//! once here, so recording on the hot path is an atomic add, not a label lookup.

use std::cell::RefCell;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::models::ModelsView;
use crate::model::ModelId;
use crate::pipeline::FlushReason;
use crate::tier::Tier;
use crate::wire::Status;

/// Buckets of `kbatch_prediction_latency_ms` (ms): the bounds the dashboards and alert rules
/// of the service kbatch replaces were built on, kept so they keep working.
pub const PREDICTION_LATENCY_BUCKETS_MS: [f64; 8] = [10., 25., 50., 75., 100., 250., 500., 1000.];
/// End-to-end and queue-wait buckets (ms): sub-millisecond to the 30 s starvation bound.
const LATENCY_BUCKETS_MS: [f64; 16] = [
    0.5, 1., 2.5, 5., 10., 25., 50., 75., 100., 250., 500., 1000., 2500., 5000., 10000., 30000.,
];
const INFERENCE_BUCKETS_MS: [f64; 12] = [
    0.1, 0.25, 0.5, 1., 2.5, 5., 10., 25., 50., 100., 250., 1000.,
];

/// `[1, 5, 10, 20, 32]` (the buckets existing dashboards use), then doubling up to the
/// configured maximum batch size.
pub fn batch_size_buckets(max_batch_size: usize) -> Vec<f64> {
    let mut b: Vec<f64> = vec![1., 5., 10., 20., 32.];
    let mut next = 64.0;
    while next <= max_batch_size as f64 {
        b.push(next);
        next *= 2.0;
    }
    let max = max_batch_size as f64;
    if b.last().is_some_and(|&l| l < max) {
        b.push(max);
    }
    b
}

/// What went wrong, for `kbatch_errors_total{error_type, stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Undecodable record, dead-lettered (stage `admission`).
    Decode,
    InvalidInput,
    UnknownModel,
    DeadlineExceeded,
    Overloaded,
    Rejected,
    /// The model failed a batch (stage `inference`).
    Model,
    Internal,
    /// A reply its topic refused, sent to the DLQ (stage `reply`).
    ReplyUndeliverable,
    /// An outcome given up after retries (stage `reply`).
    Delivery,
    /// A failed offset commit (stage `commit`).
    Commit,
    /// A client-level error reported by librdkafka (stage `kafka`).
    Kafka,
    /// A configuration reload rejected (stage `config`).
    Reload,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Decode,
        ErrorKind::InvalidInput,
        ErrorKind::UnknownModel,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Overloaded,
        ErrorKind::Rejected,
        ErrorKind::Model,
        ErrorKind::Internal,
        ErrorKind::ReplyUndeliverable,
        ErrorKind::Delivery,
        ErrorKind::Commit,
        ErrorKind::Kafka,
        ErrorKind::Reload,
    ];

    /// `(error_type, stage)` labels.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::Decode => ("decode_error", "admission"),
            ErrorKind::InvalidInput => ("invalid_input", "admission"),
            ErrorKind::UnknownModel => ("unknown_model", "admission"),
            ErrorKind::DeadlineExceeded => ("deadline_exceeded", "batcher"),
            ErrorKind::Overloaded => ("overloaded", "batcher"),
            ErrorKind::Rejected => ("rejected", "admission"),
            ErrorKind::Model => ("model_error", "inference"),
            ErrorKind::Internal => ("internal", "inference"),
            ErrorKind::ReplyUndeliverable => ("reply_undeliverable", "reply"),
            ErrorKind::Delivery => ("delivery_failed", "reply"),
            ErrorKind::Commit => ("commit_failed", "commit"),
            ErrorKind::Kafka => ("kafka_error", "kafka"),
            ErrorKind::Reload => ("reload_rejected", "config"),
        }
    }

    /// The error a non-OK reply status stands for.
    pub fn of_status(s: Status) -> Option<ErrorKind> {
        Some(match s {
            Status::Ok => return None,
            Status::InvalidInput => ErrorKind::InvalidInput,
            Status::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Status::ModelError => ErrorKind::Model,
            Status::Overloaded => ErrorKind::Overloaded,
            Status::Rejected => ErrorKind::Rejected,
            Status::UnknownModel => ErrorKind::UnknownModel,
            Status::Internal => ErrorKind::Internal,
        })
    }
}

/// The per-tier series, resolved once.
pub struct TierMetrics {
    /// Records read from this tier's topic.
    pub consumed: IntCounter,
    /// Requests admitted to this tier's queue (after demotion).
    pub admitted: IntCounter,
    pub queue_depth: IntGauge,
    /// Records waiting in Kafka for this instance, as the tier-aware intake sees them (-1: not
    /// known yet).
    pub intake_lag: IntGauge,
    /// Records read from this tier's topic and not yet answered.
    pub intake_in_flight: IntGauge,
    /// 1 while the tier-aware intake holds this tier's topic back for a higher tier.
    pub intake_held: IntGauge,
    pub queue_wait_ms: Histogram,
    pub end_to_end_ms: Histogram,
    /// Delivered replies by status, indexed by `Status as usize`.
    pub replies: Vec<IntCounter>,
    pub dead_letters: IntCounter,
}

/// The `reason` label values of `kbatch_intake_holds_total` (the kafka layer's hold reasons).
pub const INTAKE_HOLD_REASONS: [&str; 3] = [
    "higher_tier_lag",
    "higher_tier_lag_unknown",
    "higher_tier_queue_full",
];

/// Every metric kbatch exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    tiers: Vec<TierMetrics>,
    pub prediction_latency_ms: Histogram,
    pub batch_size: Histogram,
    batches: IntCounterVec,
    pub inference_ms: Histogram,
    pub gpu_utilization: Gauge,
    pub memory_utilization: Gauge,
    pub resident_memory_bytes: IntGauge,
    pub consumer_lag: IntGaugeVec,
    pub paused_topics: IntGauge,
    pub live: IntGauge,
    /// The running `alert_threshold_latency_ms` / `alert_threshold_error_rate` (reloadable),
    /// for dashboards to draw the line the alert rules use.
    pub alert_latency_threshold_ms: Gauge,
    pub alert_error_rate_threshold: Gauge,
    pub delivery_retries: IntCounter,
    pub deliveries_retrying: IntGauge,
    pub dedup_hits: IntCounter,
    pub dedup_joins: IntCounter,
    pub adaptive_target: IntGauge,
    pub adaptive_throughput: Gauge,
    pub adaptive_batch_latency_ms: Gauge,
    errors: Vec<IntCounter>,
    reloads: IntCounterVec,
    intake_holds: IntCounterVec,
    model_versions: IntGaugeVec,
    model_load_failures: IntCounterVec,
    model_batches: IntCounterVec,
    model_requests: IntCounterVec,
}

/// The registry being filled, and the names registered (families with no series yet, such as
/// lag before an assignment, are missing from `gather`, but their names are still exported).
struct Builder {
    r: Registry,
    names: RefCell<Vec<String>>,
}

impl Builder {
    /// Registers `m`; every name is a constant here, so a clash is a programming error caught
    /// by the unit tests, and `Metrics::new` reports it rather than panicking.
    fn reg<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        m: M,
    ) -> Result<M, prometheus::Error> {
        for d in m.desc() {
            self.names.borrow_mut().push(d.fq_name.clone());
        }
        self.r.register(Box::new(m.clone()))?;
        Ok(m)
    }
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, prometheus::Error> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

impl Metrics {
    pub fn new(max_batch_size: usize) -> Result<Self, prometheus::Error> {
        let r = Builder {
            r: Registry::new(),
            names: RefCell::new(Vec::new()),
        };
        let tiers = tier_metrics(&r)?;
        let errors_vec = r.reg(IntCounterVec::new(
            Opts::new("kbatch_errors_total", "Errors by type and pipeline stage."),
            &["error_type", "stage"],
        )?)?;
        let errors = ErrorKind::ALL
            .iter()
            .map(|e| {
                let (t, s) = e.labels();
                errors_vec.with_label_values(&[t, s])
            })
            .collect();
        let m = Self {
            prediction_latency_ms: r.reg(hist(
                "kbatch_prediction_latency_ms",
                "Time from admission to outcome ready per request (queue, batch, model), ms.",
                &PREDICTION_LATENCY_BUCKETS_MS,
            )?)?,
            batch_size: r.reg(hist(
                "kbatch_batch_size",
                "Requests per batch run by the model.",
                &batch_size_buckets(max_batch_size),
            )?)?,
            batches: r.reg(IntCounterVec::new(
                Opts::new(
                    "kbatch_batcher_batches_total",
                    "Batches formed, by flush reason.",
                ),
                &["flush_reason"],
            )?)?,
            inference_ms: r.reg(hist(
                "kbatch_inference_duration_ms",
                "Model run time per batch, ms.",
                &INFERENCE_BUCKETS_MS,
            )?)?,
            gpu_utilization: r.reg(Gauge::new(
                "kbatch_gpu_utilization_ratio",
                "GPU compute utilization, 0..1 (absent reading: -1).",
            )?)?,
            memory_utilization: r.reg(Gauge::new(
                "kbatch_memory_utilization_ratio",
                "Memory in use over the binding limit (cgroup or machine; GPU when fuller), 0..1.",
            )?)?,
            resident_memory_bytes: r.reg(IntGauge::new(
                "kbatch_process_resident_memory_bytes",
                "Resident set size of the kbatch process.",
            )?)?,
            consumer_lag: r.reg(IntGaugeVec::new(
                Opts::new(
                    "kbatch_consumer_lag_records",
                    "Records between the partition's high watermark and kbatch's committed offset.",
                ),
                &["topic", "partition"],
            )?)?,
            paused_topics: r.reg(IntGauge::new(
                "kbatch_consumer_paused_topics",
                "Tier topics paused by backpressure.",
            )?)?,
            live: r.reg(IntGauge::new(
                "kbatch_liveness_ratio",
                "1 when the last liveness check (every health_check_interval) passed, else 0.",
            )?)?,
            alert_latency_threshold_ms: r.reg(Gauge::new(
                "kbatch_alert_latency_threshold_ms",
                "performance_monitoring.alert_threshold_latency_ms of the running configuration.",
            )?)?,
            alert_error_rate_threshold: r.reg(Gauge::new(
                "kbatch_alert_error_rate_threshold_ratio",
                "performance_monitoring.alert_threshold_error_rate of the running configuration.",
            )?)?,
            delivery_retries: r.reg(IntCounter::new(
                "kbatch_delivery_retries_total",
                "Reply and dead-letter records sent again after a transient delivery failure.",
            )?)?,
            deliveries_retrying: r.reg(IntGauge::new(
                "kbatch_delivery_retry_backlog_records",
                "Outcomes waiting to be sent again after a transient failure (their offsets wait too).",
            )?)?,
            dedup_hits: r.reg(IntCounter::new(
                "kbatch_dedup_hits_total",
                "Requests answered from the deduplication cache.",
            )?)?,
            dedup_joins: r.reg(IntCounter::new(
                "kbatch_dedup_joins_total",
                "Requests that waited for an identical request already queued or running.",
            )?)?,
            adaptive_target: r.reg(IntGauge::new(
                "kbatch_adaptive_target_batch_size",
                "Batch size the adaptive controller currently targets.",
            )?)?,
            adaptive_throughput: r.reg(Gauge::new(
                "kbatch_adaptive_throughput_requests_per_second",
                "Requests per second dispatched over the controller's last interval.",
            )?)?,
            adaptive_batch_latency_ms: r.reg(Gauge::new(
                "kbatch_adaptive_batch_latency_ms",
                "The controller's moving average of inference time per batch, ms.",
            )?)?,
            errors,
            reloads: r.reg(IntCounterVec::new(
                Opts::new(
                    "kbatch_config_reloads_total",
                    "Configuration reloads by result.",
                ),
                &["result"],
            )?)?,
            intake_holds: r.reg(IntCounterVec::new(
                Opts::new(
                    "kbatch_intake_holds_total",
                    "Times the tier-aware intake started holding a tier topic back, by tier and reason.",
                ),
                &["tier", "reason"],
            )?)?,
            model_versions: r.reg(IntGaugeVec::new(
                Opts::new(
                    "kbatch_model_version_info",
                    "Model versions the registry knows, by state (ready, draining, failed): 1 per version.",
                ),
                &["model", "version", "state"],
            )?)?,
            model_load_failures: r.reg(IntCounterVec::new(
                Opts::new(
                    "kbatch_model_load_failures_total",
                    "Model versions that failed to load, validate or warm up (never served).",
                ),
                &["model"],
            )?)?,
            model_batches: r.reg(IntCounterVec::new(
                Opts::new("kbatch_model_batches_total", "Batches run, by model version."),
                &["model", "version"],
            )?)?,
            model_requests: r.reg(IntCounterVec::new(
                Opts::new(
                    "kbatch_model_requests_total",
                    "Requests batched for the model, by model version.",
                ),
                &["model", "version"],
            )?)?,
            tiers,
            names: r.names.take(),
            registry: r.r,
        };
        // Exported at zero from the start, so rate() and alerts see the series before the
        // first event.
        for result in ["applied", "rejected"] {
            m.reloads.with_label_values(&[result]);
        }
        for reason in FlushReason::ALL {
            m.batches.with_label_values(&[reason.as_str()]);
        }
        // Critical is never held back.
        for tier in &Tier::ALL[1..] {
            for reason in INTAKE_HOLD_REASONS {
                m.intake_holds.with_label_values(&[tier.as_str(), reason]);
            }
        }
        Ok(m)
    }

    pub fn tier(&self, t: Tier) -> &TierMetrics {
        &self.tiers[t.index()]
    }

    pub fn batch(&self, flush_reason: FlushReason, size: usize) {
        self.batches
            .with_label_values(&[flush_reason.as_str()])
            .inc();
        self.batch_size.observe(size as f64);
    }

    /// The tier-aware intake started holding `tier` back for `reason` (a `HoldReason` label).
    pub fn intake_hold(&self, tier: Tier, reason: &str) {
        self.intake_holds
            .with_label_values(&[tier.as_str(), reason])
            .inc();
    }

    /// One batch of `size` requests formed for `model`.
    pub fn model_batch(&self, model: &ModelId, size: usize) {
        let labels = [model.name.as_str(), model.version.as_str()];
        self.model_batches.with_label_values(&labels).inc();
        self.model_requests
            .with_label_values(&labels)
            .inc_by(size as u64);
    }

    /// Replaces the registry's version series with `view`'s (versions no longer known, and
    /// states left, disappear, so the label set stays what the repository holds).
    pub fn set_models(&self, view: &ModelsView) {
        self.model_versions.reset();
        for m in &view.models {
            for v in &m.versions {
                self.model_versions
                    .with_label_values(&[m.name.as_str(), v.version.as_str(), v.state.as_str()])
                    .set(1);
            }
        }
    }

    /// A version of `model` failed to load, validate or warm up.
    pub fn model_load_failed(&self, model: &str) {
        self.model_load_failures.with_label_values(&[model]).inc();
    }

    /// Drops the per-version batch counters of versions that are gone (the label set stays
    /// bounded by what the repository holds).
    pub fn forget_model_version(&self, model: &ModelId) {
        let labels = [model.name.as_str(), model.version.as_str()];
        let _ = self.model_batches.remove_label_values(&labels);
        let _ = self.model_requests.remove_label_values(&labels);
    }

    pub fn error(&self, e: ErrorKind) {
        self.errors[e as usize].inc();
    }

    /// Errors of kind `e` so far.
    pub fn error_count(&self, e: ErrorKind) -> u64 {
        self.errors[e as usize].get()
    }

    /// Brings the reload counters up to the reloader's totals (counters only grow).
    pub fn sync_reloads(&self, applied: u64, rejected: u64) {
        let up = |result: &str, total: u64| {
            let c = self.reloads.with_label_values(&[result]);
            let delta = total.saturating_sub(c.get());
            c.inc_by(delta);
            delta
        };
        up("applied", applied);
        let new_rejections = up("rejected", rejected);
        self.errors[ErrorKind::Reload as usize].inc_by(new_rejections);
    }

    /// The text exposition format (what `/metrics` serves).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding to a Vec cannot fail on I/O; a collector error would leave the page short,
        // which a scrape shows, rather than taking the endpoint down.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Names of every metric family registered (the alert and dashboard tests check against it).
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn tier_metrics(r: &Builder) -> Result<Vec<TierMetrics>, prometheus::Error> {
    let counter = |name: &str, help: &str, labels: &[&str]| {
        r.reg(IntCounterVec::new(Opts::new(name, help), labels)?)
    };
    let consumed = counter(
        "kbatch_consumer_records_total",
        "Records read from each tier's topic.",
        &["tier"],
    )?;
    let admitted = counter(
        "kbatch_requests_admitted_total",
        "Requests admitted to a tier's queue (after demotion).",
        &["tier"],
    )?;
    let replies = counter(
        "kbatch_replies_total",
        "Replies delivered, by tier and status.",
        &["tier", "status"],
    )?;
    let dead = counter(
        "kbatch_dead_letters_total",
        "Records delivered to the dead-letter topic, by the tier topic they were read from.",
        &["tier"],
    )?;
    let depth = r.reg(IntGaugeVec::new(
        Opts::new(
            "kbatch_batcher_queue_depth_requests",
            "Requests queued per tier.",
        ),
        &["tier"],
    )?)?;
    let gauge = |name: &str, help: &str| r.reg(IntGaugeVec::new(Opts::new(name, help), &["tier"])?);
    let lag = gauge(
        "kbatch_intake_lag_records",
        "Records waiting in Kafka on this instance's partitions of each tier topic: log end minus next offset to read (-1: not known yet).",
    )?;
    let in_flight = gauge(
        "kbatch_intake_in_flight_records",
        "Records read from each tier topic and not yet answered.",
    )?;
    let held = gauge(
        "kbatch_intake_held_topics",
        "1 while the tier-aware intake holds a tier topic back because a higher tier has records waiting.",
    )?;
    let hist_vec = |name: &str, help: &str| {
        r.reg(prometheus::HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_MS.to_vec()),
            &["tier"],
        )?)
    };
    let wait = hist_vec(
        "kbatch_queue_wait_ms",
        "Time from admission to the start of the request's batch, ms.",
    )?;
    let e2e = hist_vec(
        "kbatch_request_end_to_end_latency_ms",
        "Time from the request record's timestamp to its reply's delivery, ms.",
    )?;
    Ok(Tier::ALL
        .iter()
        .map(|t| {
            let l = [t.as_str()];
            TierMetrics {
                consumed: consumed.with_label_values(&l),
                admitted: admitted.with_label_values(&l),
                queue_depth: depth.with_label_values(&l),
                intake_lag: lag.with_label_values(&l),
                intake_in_flight: in_flight.with_label_values(&l),
                intake_held: held.with_label_values(&l),
                queue_wait_ms: wait.with_label_values(&l),
                end_to_end_ms: e2e.with_label_values(&l),
                replies: Status::ALL
                    .iter()
                    .map(|s| replies.with_label_values(&[t.as_str(), s.as_str()]))
                    .collect(),
                dead_letters: dead.with_label_values(&l),
            }
        })
        .collect())
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
