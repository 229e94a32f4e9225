//! The load generator behind `kbatch bench` (and the traffic of `kbatch demo`).
//!
//! ```text
//! plan (seeded: tier and kind per request) ─► producer (paced on an absolute schedule)
//!        │                                        │ send instant per request ─► SendLog
//!        ▼                                        ▼
//!   tier topics ──► kbatch ──► reply topic ──► collector (Matcher: id → send instant → histograms)
//!                                                  └─► LiveStats every second, BenchReport at the end
//! ```
//!
//! `--steps` runs one such load per offered rate in turn ([`steps`]); each report carries its
//! run second by second ([`timeline`]), which `--plot` draws.
//!
//! Invariant: every request id a run sends is `<run id>-<sequence>`, so a reply maps back to its
//! send instant and tier without a shared map, and replies of other runs (or of older runs on a
//! shared reply topic) are counted as unknown instead of being mistaken for ours.

mod args;
mod collector;
mod live;
mod model;
mod pacing;
mod producer;
mod report;
mod steps;
mod timeline;
mod workload;

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use args::{framing_name, new_run_id, parse_framing, plan_size, BenchArgs};
pub use collector::{Collector, Match, Matcher, Tally};
pub use live::{LiveStats, TierLive};
pub use model::{run_model_bench, ModelBenchArgs, ModelBenchReport, ModelPoint};
pub use pacing::{parse_duration, Pacer};
pub use producer::{warm_up, SendLog, Sent};
pub use report::{BatchSummary, BenchReport, LatencySummary, PerTier, Throughput};
pub use steps::{saturation_rps, StepResult, StepRule, StepsReport};
pub use timeline::{LatencyBy, SecondLatency, Timeline, TimelineMark, TimelinePoint};
pub use workload::{
    IdKind, Kind, Plan, RecordFactory, RecordFormat, RequestIds, TierMix, MODEL_SHAPE,
};

use kbatch_core::config::{TierTopics, WireConfig};
use kbatch_core::telemetry::table::Table;
use kbatch_core::wire::SchemaVersion;

/// Errors of the load generator (`kbatch bench`, `kbatch bench-model`, the demo's load); only
/// the command's entry point (`main.rs`) turns them into `anyhow`.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("topics: {0}")]
    Topics(#[from] kbatch_core::kafka::KafkaError),
    #[error("creating {what}: {source}")]
    CreateTopics {
        what: String,
        // Boxed: the variant would make every `Result<_, BenchError>` large.
        source: Box<kbatch_core::kafka::KafkaError>,
    },
    #[error("configuration: {0}")]
    Config(#[from] kbatch_core::config::ConfigError),
    #[error("creating a Kafka {what} for {brokers}: {source}")]
    Client {
        what: &'static str,
        brokers: String,
        source: KafkaError,
    },
    #[error("Kafka {op} failed: {source}")]
    Kafka {
        op: &'static str,
        source: KafkaError,
    },
    #[error("creating topic {topic} failed: {code:?}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "topic {topic} was not ready with {partitions} partitions, each with a leader, after \
         {waited:?} (is the broker at {brokers} reachable?)"
    )]
    TopicNotReady {
        topic: String,
        partitions: i32,
        waited: Duration,
        brokers: String,
    },
    #[error(
        "no reply to a warm-up request within {0:?}: is `kbatch serve` running on these topics?"
    )]
    WarmUpTimedOut(Duration),
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Everything one load run needs, independent of where the values came from (CLI, demo).
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Bootstrap servers.
    pub brokers: String,
    /// Extra librdkafka properties for every client (TLS, SASL), from `kafka.properties`.
    pub properties: Vec<(String, String)>,
    /// Request topic per tier.
    pub topics: TierTopics,
    /// Topic the collector reads; set as every request's `reply_topic`.
    pub reply_topic: String,
    /// Read the reply topic from offset 0 (a topic made for this run) instead of from its
    /// current end (a shared topic holding older replies).
    pub reply_from_start: bool,
    /// Decode limits and schema ids.
    pub wire: WireConfig,
    /// Framing and contract version of the requests.
    pub format: RecordFormat,
    /// Header that carries the correlation id (the request id is sent in it).
    pub correlation_header: String,
    /// Requests to send.
    pub total: u64,
    /// Requests per second; 0 sends everything as fast as possible (backlog / drain test).
    pub rate: f64,
    /// Tier weights.
    pub mix: TierMix,
    /// Share of records that are invalid (half undecodable, half with a wrong shape).
    pub bad_fraction: f64,
    /// `timeout_ms` written into each request.
    pub timeout_ms: Option<i32>,
    /// Seed of the plan and of the tensor data.
    pub seed: u64,
    /// Longest wait for outstanding replies after the last send.
    pub wait: Duration,
    /// Run id: the prefix of every request id.
    pub run_id: String,
}

impl RunSpec {
    /// The request-id scheme of this run.
    pub fn ids(&self) -> RequestIds {
        RequestIds::new(&self.run_id)
    }
}

/// How a run is stopped early: the first signal stops sending (the run still waits, up to
/// `RunSpec::wait`, for replies to what was sent), the second stops waiting too.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    pub stop_sending: CancellationToken,
    pub stop_waiting: CancellationToken,
}

impl RunControl {
    /// Stops sending on the first Ctrl-C and waiting on the second. The task ends with the
    /// process (or when aborted through the returned handle).
    pub fn stop_on_ctrl_c(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("interrupted: sending stopped; waiting for outstanding replies (Ctrl-C again to stop now)");
            this.stop_sending.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                this.stop_waiting.cancel();
                this.stop_sending.cancel();
            }
        })
    }

    /// Stops both now.
    pub fn stop_all(&self) {
        self.stop_sending.cancel();
        self.stop_waiting.cancel();
    }
}

/// Runs one load: produces the plan on its schedule, collects replies until every expected one
/// arrived or `spec.wait` passed after sending ended, calling `live` about once a second.
/// `control` stops sending or waiting early. Returns the final report.
pub async fn execute(
    spec: &RunSpec,
    control: &RunControl,
    mut live: Option<&mut (dyn FnMut(&LiveStats) + Send)>,
) -> Result<BenchReport, BenchError> {
    let plan = std::sync::Arc::new(Plan::new(
        spec.total,
        &spec.mix,
        spec.bad_fraction,
        spec.seed,
    ));
    let log = std::sync::Arc::new(SendLog::new(spec.total as usize, Instant::now()));
    let mut matcher = Matcher::new(spec.ids(), plan.clone(), log.clone());
    if spec.rate <= 0.0 {
        matcher = matcher.latency_by_reply();
    }
    let collector = Collector::start(spec, matcher).await?;
    collector.restart_clock();

    let stop_sending = control.stop_sending.child_token();
    let stop_waiting = control.stop_waiting.clone();
    // Stopping the wait also stops sending.
    let link = {
        let (waiting, sending) = (stop_waiting.clone(), stop_sending.clone());
        tokio::spawn(async move {
            waiting.cancelled().await;
            sending.cancel();
        })
        .abort_handle()
    };
    let mut sender = tokio::spawn(producer::produce(
        spec.clone(),
        plan.clone(),
        log.clone(),
        stop_sending,
    ));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;

    // Phase 1: sending (and collecting at the same time).
    let sent = loop {
        tokio::select! {
            r = &mut sender => break r.map_err(|e| BenchError::Task(e.to_string()))??,
            _ = ticker.tick() => {
                if let Some(f) = live.as_deref_mut() {
                    f(&collector.snapshot());
                }
            }
        }
    };
    // Phase 2: waiting for the outstanding replies.
    let expected = plan.expected_replies(&log);
    let deadline = tokio::time::Instant::now() + spec.wait;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while collector.answered() < expected && !stop_waiting.is_cancelled() {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop_waiting.cancelled() => break,
            _ = poll.tick() => {}
            _ = ticker.tick() => {
                if let Some(f) = live.as_deref_mut() {
                    f(&collector.snapshot());
                }
            }
        }
    }
    link.abort();
    let tally = collector.stop().await?;
    Ok(BenchReport::build(spec, &plan, &log, &sent, &tally))
}

/// What `kbatch bench` measured: one run, or a step load (`--steps`). Its JSON is the report's
/// own (no wrapper), so both kinds carry `timeline` at the top level.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BenchOutcome {
    Run(Box<BenchReport>),
    Steps(StepsReport),
}

impl BenchOutcome {
    pub fn table(&self) -> Table {
        match self {
            Self::Run(r) => r.table(),
            Self::Steps(s) => s.table(),
        }
    }
}

/// Creates the reply topic of `spec` if it does not exist.
pub(crate) async fn ensure_reply_topic(spec: &RunSpec, partitions: i32) -> Result<(), BenchError> {
    kbatch_core::kafka::ensure_named_topics(
        &spec.brokers,
        &spec.properties,
        std::slice::from_ref(&spec.reply_topic),
        partitions,
    )
    .await
    .map_err(|source| BenchError::CreateTopics {
        what: format!("the reply topic {}", spec.reply_topic),
        source: Box::new(source),
    })
}

/// `kbatch bench`: loads the configuration, creates topics, runs the load or the steps
/// (progress on stderr) and returns the report; the caller prints it (and draws `--plot`).
pub async fn run(args: BenchArgs) -> Result<BenchOutcome, BenchError> {
    let loaded = kbatch_core::config::load(&args.load_options())?;
    let cfg = loaded.config;
    kbatch_core::telemetry::init_tracing(&kbatch_core::config::Logging {
        level: "warn".into(),
        format: cfg.logging.format,
    });
    if let Some(path) = &args.plot {
        // Found out now, not after a long run.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(BenchError::InvalidArgument(format!(
                "--plot {}: no folder {}",
                path.display(),
                dir.display()
            )));
        }
    }
    let step_specs = if args.steps.is_empty() {
        None
    } else {
        Some(args.step_specs(&cfg)?)
    };
    let spec = match &step_specs {
        Some(specs) => specs[0].clone(),
        None => args.run_spec(&cfg)?,
    };
    if args.create_topics {
        kbatch_core::kafka::ensure_topics(&spec.brokers, &cfg, args.partitions)
            .await
            .map_err(|source| BenchError::CreateTopics {
                what: "the request, reply and dead-letter topics".into(),
                source: Box::new(source),
            })?;
    }
    ensure_reply_topic(&spec, args.partitions).await?;
    match &step_specs {
        Some(specs) => eprintln!(
            "kbatch bench: step load {}/s, {} s each; p99 bound {} ms",
            specs
                .iter()
                .map(|s| s.rate.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            args.step_secs,
            args.max_p99_ms
        ),
        None => eprintln!("{}", spec.describe()),
    }
    if args.warmup {
        let took = warm_up(
            &spec,
            Duration::from_secs(args.wait_secs.max(30)),
            Duration::from_secs(args.warmup_secs),
        )
        .await?;
        eprintln!("warm-up: first reply after {:.2} s", took.as_secs_f64());
    }

    let control = RunControl::default();
    let signal = control.stop_on_ctrl_c();
    if let Some(specs) = &step_specs {
        let rule = StepRule {
            max_p99_ms: args.max_p99_ms,
            step_secs: args.step_secs,
        };
        let report = steps::run_steps(specs, &rule, args.partitions, &control, args.quiet).await;
        signal.abort();
        return report.map(BenchOutcome::Steps);
    }
    let mut progress = |s: &LiveStats| eprintln!("{s}");
    let live: Option<&mut (dyn FnMut(&LiveStats) + Send)> = if args.quiet {
        None
    } else {
        Some(&mut progress)
    };
    let report = execute(&spec, &control, live).await;
    signal.abort();
    report.map(|r| BenchOutcome::Run(Box::new(r)))
}

impl RunSpec {
    /// One line saying what the run will do.
    pub fn describe(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("at {}/s", self.rate)
        } else {
            "as a backlog (as fast as possible)".to_owned()
        };
        format!(
            "kbatch bench: {} requests {rate}, tiers {}, framing {} ({}), brokers {}, reply topic {}, run {}",
            self.total,
            self.mix,
            args::framing_name(self.format.framing),
            match self.format.contract {
                SchemaVersion::V1 => "version 1",
                SchemaVersion::V2 => "version 2",
            },
            self.brokers,
            self.reply_topic,
            self.run_id
        )
    }
}
