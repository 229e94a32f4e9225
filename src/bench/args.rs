//! Command-line arguments of `kbatch bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::pacing::parse_duration;
use super::{BenchError, RecordFormat, RunSpec, TierMix};
use crate::output::ReportArgs;
use crate::source::ConfigSource;
use kbatch_core::config::{Config, Framing, LoadOptions};
use kbatch_core::wire::SchemaVersion;

/// Requests sent when neither `--count` nor `--duration` says how many.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Backlog size when `--backlog` is given without `--count`.
const DEFAULT_BACKLOG: u64 = 10_000;

/// `kbatch bench`: sends requests to the tier topics at a fixed rate (or as a backlog) and
/// measures the replies.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Bootstrap servers; default `kafka.brokers` from the configuration
    /// (`KBATCH_KAFKA__BROKERS`).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Requests to send (default: rate × duration; 10,000 with --backlog).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Requests per second; 0 sends everything as fast as possible (same as --backlog).
    #[arg(long, short, default_value_t = 1000.0)]
    pub rate: f64,
    /// Produce every request first, as fast as possible, then wait for the replies (drain test).
    #[arg(long)]
    pub backlog: bool,
    /// How long to send at --rate (e.g. 30s, 2m); with --count, whichever ends first.
    #[arg(long, short, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Tier weights critical,high,normal,low.
    #[arg(long, default_value = "10,20,40,30")]
    pub tier_mix: TierMix,
    /// Reply topic set in every request; default a new topic per run,
    /// `inference.replies.bench-<run id>`. With a shared topic, other runs' replies count as unknown.
    #[arg(long)]
    pub reply_topic: Option<String>,
    /// `timeout_ms` written into every request (the server answers DEADLINE_EXCEEDED past it).
    #[arg(long)]
    pub timeout_ms: Option<i32>,
    /// Share of records that are bad: half undecodable (dead-lettered, no reply), half with a
    /// wrong shape (answered INVALID_INPUT).
    #[arg(long, default_value_t = 0.0)]
    pub bad_fraction: f64,
    /// Request framing: confluent, single-object or json.
    #[arg(long, default_value = "confluent", value_parser = parse_framing)]
    pub framing: Framing,
    /// Request contract: v1 (`shape`/`data`, float32) or v2 (the same tensor as a named
    /// version-2 tensor).
    #[arg(long, default_value = "v1", value_parser = parse_contract)]
    pub contract: SchemaVersion,
    /// Seed of the tier/kind plan and of the tensor data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest wait for outstanding replies after the last send (seconds).
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
    /// The final report: a table on stdout, or JSON (`--json`), and a JSON file (`--report`).
    #[command(flatten)]
    pub output: ReportArgs,
    /// Create the tier, reply and dead-letter topics first (--partitions each).
    #[arg(long)]
    pub create_topics: bool,
    /// Partitions of topics this command creates.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Send probe requests until one is answered before the timed run, then load at the run's
    /// rate for `--warmup-secs` (not measured).
    #[arg(long)]
    pub warmup: bool,
    /// Seconds of warm-up load at the run's rate after the first reply (with `--warmup`).
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// No per-second progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Step load: run each of these rates (requests/s, rising) for `--step-secs` in turn, each
    /// with its own requests and reply matching, and report the saturation rate (replaces
    /// --rate, --count and --duration).
    #[arg(long, value_delimiter = ',', value_name = "RATES",
          conflicts_with_all = ["backlog", "count", "duration"])]
    pub steps: Vec<f64>,
    /// Seconds each step of `--steps` sends for.
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,
    /// The latency bound of `--steps`: the saturation rate is the highest offered rate whose
    /// end-to-end p99 is within it (ms), every request answered, and every lower step too.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// Also draw the run as an SVG chart: p50/p99 per tier and the send and reply rates,
    /// second by second.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
}

impl BenchArgs {
    pub fn load_options(&self) -> LoadOptions {
        self.source.load_options()
    }

    /// The run these arguments describe, with defaults from `cfg`.
    pub fn run_spec(&self, cfg: &Config) -> Result<RunSpec, BenchError> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(BenchError::InvalidArgument(format!(
                "--rate must be ≥ 0, got {}",
                self.rate
            )));
        }
        let rate = if self.backlog { 0.0 } else { self.rate };
        let total = plan_size(rate, self.count, self.duration)?;
        self.spec_at(cfg, rate, total)
    }

    /// One run per rate of `--steps`, each `--step-secs` long with its own run id (and its own
    /// reply topic unless `--reply-topic` names a shared one).
    pub fn step_specs(&self, cfg: &Config) -> Result<Vec<RunSpec>, BenchError> {
        let invalid = |m: String| Err(BenchError::InvalidArgument(m));
        if self.steps.is_empty() {
            return invalid("--steps needs at least one rate".into());
        }
        if let Some(r) = self.steps.iter().find(|r| !r.is_finite() || **r <= 0.0) {
            return invalid(format!("--steps: every rate must be > 0, got {r}"));
        }
        if self.steps.windows(2).any(|w| w[1] <= w[0]) {
            return invalid("--steps: rates must rise from step to step".into());
        }
        if self.step_secs == 0 {
            return invalid("--step-secs must be at least 1".into());
        }
        if !self.max_p99_ms.is_finite() || self.max_p99_ms <= 0.0 {
            return invalid(format!("--max-p99-ms must be > 0, got {}", self.max_p99_ms));
        }
        let secs = Duration::from_secs(self.step_secs);
        self.steps
            .iter()
            .map(|&rate| self.spec_at(cfg, rate, plan_size(rate, None, Some(secs))?))
            .collect()
    }

    /// A run of `total` requests at `rate` with a new run id.
    fn spec_at(&self, cfg: &Config, rate: f64, total: u64) -> Result<RunSpec, BenchError> {
        let invalid = |m: String| Err(BenchError::InvalidArgument(m));
        if !(0.0..=1.0).contains(&self.bad_fraction) {
            return invalid(format!(
                "--bad-fraction must be in 0..=1, got {}",
                self.bad_fraction
            ));
        }
        if self.timeout_ms.is_some_and(|t| t < 0) {
            return invalid("--timeout-ms must be ≥ 0".into());
        }
        let run_id = new_run_id();
        let (reply_topic, reply_from_start) = match &self.reply_topic {
            Some(t) => (t.clone(), false),
            None => (format!("inference.replies.bench-{run_id}"), true),
        };
        Ok(RunSpec {
            brokers: self
                .brokers
                .clone()
                .unwrap_or_else(|| cfg.kafka.brokers.clone()),
            properties: cfg.kafka.property_pairs(),
            topics: cfg.kafka.topics.clone(),
            reply_topic,
            reply_from_start,
            wire: cfg.wire.clone(),
            format: RecordFormat {
                framing: self.framing,
                contract: self.contract,
            },
            correlation_header: cfg.replies.correlation_header.clone(),
            total,
            rate,
            mix: self.tier_mix,
            bad_fraction: self.bad_fraction,
            timeout_ms: self.timeout_ms,
            seed: self.seed,
            wait: Duration::from_secs(self.wait_secs),
            run_id,
        })
    }
}

/// How many requests a run sends: `--count`, else rate × duration (10 s by default); with both,
/// whichever is smaller. An unpaced run needs a count.
pub fn plan_size(
    rate: f64,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<u64, BenchError> {
    let by_time = |d: Duration| (rate * d.as_secs_f64()).round() as u64;
    let n = match (rate > 0.0, count, duration) {
        (false, Some(n), _) => n,
        (false, None, _) => DEFAULT_BACKLOG,
        (true, Some(n), Some(d)) => n.min(by_time(d)),
        (true, Some(n), None) => n,
        (true, None, d) => by_time(d.unwrap_or(DEFAULT_DURATION)),
    };
    if n == 0 {
        return Err(BenchError::InvalidArgument(
            "the run would send no requests: raise --count, --rate or --duration".into(),
        ));
    }
    Ok(n)
}

/// A short random id (8 hex digits) naming one run.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `--contract`: v1 or v2.
pub fn parse_contract(s: &str) -> Result<SchemaVersion, String> {
    match s {
        "v1" | "1" => Ok(SchemaVersion::V1),
        "v2" | "2" => Ok(SchemaVersion::V2),
        other => Err(format!("unknown contract {other:?}: expected v1 or v2")),
    }
}

/// The name `--framing` takes for `f`.
pub fn framing_name(f: Framing) -> &'static str {
    match f {
        Framing::Confluent => "confluent",
        Framing::SingleObject => "single-object",
        Framing::Json => "json",
    }
}

/// `confluent`, `single-object` (or `single_object`), `json`.
pub fn parse_framing(s: &str) -> Result<Framing, String> {
    match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "confluent" => Ok(Framing::Confluent),
        "single_object" => Ok(Framing::SingleObject),
        "json" => Ok(Framing::Json),
        _ => Err(format!(
            "framing `{s}`: expected confluent, single-object or json"
        )),
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
