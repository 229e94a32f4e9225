//! Observability: logs (`logging`), the Prometheus registry (`metrics`), health (`health`),
//! running statistics (`stats`) and the HTTP endpoint serving them (`http`).
//!
//! Invariant: one `Telemetry` per serving instance, shared by every stage as an `Arc`; stages
//! record facts (a delivery, a batch, an error) through it and never read it back to decide
//! anything, so turning observability off cannot change what the pipeline does.

pub mod client;
mod error;
pub mod health;
pub mod http;
mod logging;
pub mod metrics;
pub mod models;
pub mod stats;
pub mod table;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

pub use error::TelemetryError;
pub use health::{Alive, Health, Reasons, Unhealthy};
pub use logging::{init_tracing, set_log_level};
pub use metrics::{ErrorKind, Metrics};
pub use stats::{Delivered, IntakeState, IntakeTier, Stats, StatsSnapshot};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::reload::ReloadCounters;
use crate::config::{Config, PerformanceMonitoring};

fn log_every(p: &PerformanceMonitoring) -> u64 {
    if p.enable_performance_tracking {
        p.log_interval_requests
    } else {
        0
    }
}

/// Metrics, health and statistics of one serving instance.
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub stats: Stats,
    /// Outcomes between two performance log lines (`log_interval_requests`; 0 = none);
    /// reloadable.
    log_every: AtomicU64,
    /// The configuration reloader's counters, mirrored into the metrics at each scrape.
    reloads: OnceLock<Arc<ReloadCounters>>,
    /// The HTTP endpoint's bound address, once it listens (port 0 picks one).
    http_addr: OnceLock<SocketAddr>,
}

impl Telemetry {
    pub fn new(cfg: &Config) -> Result<Arc<Self>, TelemetryError> {
        let stall = cfg.performance_monitoring.stall_bound();
        let telemetry = Self {
            metrics: Metrics::new(cfg.batch_processing.max_batch_size)?,
            health: Arc::new(Health::new(stall)),
            stats: Stats::new(),
            log_every: AtomicU64::new(log_every(&cfg.performance_monitoring)),
            reloads: OnceLock::new(),
            http_addr: OnceLock::new(),
        };
        telemetry.reconfigure(&cfg.performance_monitoring);
        Ok(Arc::new(telemetry))
    }

    /// One outcome acknowledged by the broker: metrics, statistics, and every
    /// `log_interval_requests` a performance log line.
    pub fn delivered(&self, d: &Delivered) {
        let t = self.metrics.tier(d.tier);
        match d.status {
            Some(s) => {
                t.replies[s as usize].inc();
                if let Some(e) = ErrorKind::of_status(s) {
                    self.metrics.error(e);
                }
                if s == crate::wire::Status::Ok {
                    let ms = |us: i64| us.max(0) as f64 / 1000.0;
                    t.queue_wait_ms.observe(ms(d.timings.queue_wait_us));
                    self.metrics.prediction_latency_ms.observe(ms(d
                        .timings
                        .queue_wait_us
                        .saturating_add(d.timings.inference_us)));
                }
            }
            None => {
                t.dead_letters.inc();
                self.metrics.error(if d.fallback {
                    ErrorKind::ReplyUndeliverable
                } else {
                    ErrorKind::Decode
                });
            }
        }
        t.end_to_end_ms
            .observe(d.end_to_end_us().max(0) as f64 / 1000.0);
        let n = self.stats.delivered(d);
        let every = self.log_every.load(Ordering::Relaxed);
        if every > 0 && n.is_multiple_of(every) {
            self.log_performance();
        }
    }

    fn log_performance(&self) {
        let s = self.stats.snapshot();
        tracing::info!(
            target: "kbatch::performance",
            requests = s.total_requests,
            throughput_rps = format!("{:.1}", s.throughput_rps),
            p50_ms = s.latency_ms.p50,
            p95_ms = s.latency_ms.p95,
            p99_ms = s.latency_ms.p99,
            avg_batch_size = format!("{:.1}", s.average_batch_size),
            avg_wait_ms = format!("{:.2}", s.average_wait_ms),
            error_rate = format!("{:.4}", s.error_rate),
            "performance"
        );
    }

    /// A reloaded `performance_monitoring` section.
    /// A reloaded `performance_monitoring`: the log interval and the stall bound apply at once.
    pub fn reconfigure(&self, p: &PerformanceMonitoring) {
        self.log_every.store(log_every(p), Ordering::Relaxed);
        self.health.set_stall_bound(p.stall_bound());
        let m = &self.metrics;
        m.alert_latency_threshold_ms
            .set(p.alert_threshold_latency_ms);
        m.alert_error_rate_threshold
            .set(p.alert_threshold_error_rate);
    }

    /// Outcomes between two performance log lines (0: none).
    pub fn log_every(&self) -> u64 {
        self.log_every.load(Ordering::Relaxed)
    }

    pub fn set_reload_counters(&self, c: Arc<ReloadCounters>) {
        let _ = self.reloads.set(c);
    }

    /// The Prometheus page, with the reload counters brought up to date first.
    pub fn render_metrics(&self) -> String {
        if let Some(c) = self.reloads.get() {
            self.metrics.sync_reloads(
                c.applied.load(Ordering::Relaxed),
                c.rejected.load(Ordering::Relaxed),
            );
        }
        self.metrics.render()
    }

    pub fn set_http_addr(&self, addr: SocketAddr) {
        // Set once by the one server; a second set would be a second server, which app.rs
        // never starts.
        let _ = self.http_addr.set(addr);
    }

    /// Where `/metrics` and the probes are served, once listening.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }
}
