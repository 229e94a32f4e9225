//! `kbatch demo`: the whole service on one machine in one command. It picks a broker (the one
//! given, else Apache Kafka as a child process when it is installed, else tansu when it is,
//! else librdkafka's in-process mock cluster), creates the topics, runs the serving pipeline
//! in-process, drives it with the load generator, prints a live line every second (stderr) and
//! returns a `DemoReport`: what the client saw and what the pipeline counted.
//!
//! Invariant: everything the demo starts it also stops, in reverse order: load, then the
//! pipeline (which drains), then the broker, also on Ctrl-C and on errors (a broker child is
//! killed when its handle drops).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::bench::{
    self, new_run_id, parse_duration, BenchError, BenchReport, LiveStats, RecordFormat, RunControl,
    RunSpec, TierMix,
};
use crate::launcher::{KafkaHome, KafkaOptions, KafkaProcess, LaunchError, TansuProcess};
use crate::output::ReportArgs;
use crate::source::ConfigSource;
use kbatch_core::app::{AppError, ServeReport};
use kbatch_core::config::{Config, ConfigError, Framing};
use kbatch_core::kafka::{all_topics, ensure_named_topics, ensure_topics, KafkaError};
use kbatch_core::telemetry::table::Table;
use kbatch_core::wire::SchemaVersion;

/// Why the demo could not run to its report.
#[derive(Debug, Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the demo's configuration is invalid:\n{0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Broker(#[from] LaunchError),
    #[error("creating {what}: {source}")]
    Topics {
        what: &'static str,
        source: Box<KafkaError>,
    },
    #[error(transparent)]
    Load(#[from] BenchError),
    #[error("interrupted during warm-up")]
    Interrupted,
    #[error("the serving pipeline stopped before the load ended; what it counted:\n{0}")]
    PipelineStoppedEarly(Box<ServeReport>),
    #[error("the serving pipeline failed: {0}")]
    Pipeline(#[from] AppError),
    #[error("the serving pipeline did not stop within {0:?}")]
    PipelineStuck(Duration),
}

/// What one demo run measured: the broker, the load as the client saw it, and the pipeline's
/// own counts.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub broker: BrokerSummary,
    /// `model.name` of the served model.
    pub model: String,
    pub load: BenchReport,
    pub pipeline: ServeReport,
}

impl DemoReport {
    /// One table in three parts: the demo, the load, the pipeline.
    pub fn table(&self) -> Table {
        let mut t = Table::titled("kbatch demo");
        t.row("broker", &self.broker);
        if let Some(s) = self.broker.started_in_s {
            t.row("broker start-up", format!("{s:.1} s"));
        }
        t.row("model", &self.model);
        t.title("load, as the client saw it")
            .append(self.load.table())
            .title("pipeline, as the server counted it")
            .append(self.pipeline.table());
        t
    }
}

/// Which broker served the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// Given with `--brokers`.
    Given,
    /// Apache Kafka, a child process.
    Kafka,
    /// tansu, a child process.
    Tansu,
    /// librdkafka's in-process mock cluster.
    Mock,
}

/// The broker in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerSummary {
    pub kind: BrokerKind,
    /// Apache Kafka's version, when the demo started it.
    pub version: Option<String>,
    pub bootstrap: String,
    /// Seconds the demo waited for a broker it started to answer.
    pub started_in_s: Option<f64>,
}

impl fmt::Display for BrokerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BrokerKind::Given => write!(f, "{} (given with --brokers)", self.bootstrap),
            BrokerKind::Kafka => write!(
                f,
                "Apache Kafka {} at {} (child process)",
                self.version.as_deref().unwrap_or("?"),
                self.bootstrap
            ),
            BrokerKind::Tansu => write!(f, "tansu at {} (child process)", self.bootstrap),
            BrokerKind::Mock => write!(
                f,
                "librdkafka mock cluster at {} (in-process)",
                self.bootstrap
            ),
        }
    }
}

/// `kbatch demo`: a broker, the serving pipeline and a synthetic load, all in one process.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Use this broker instead of starting one (the demo creates its topics there).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Kafka installation (a folder with `libs/kafka_2.13-*.jar`) to start as the broker;
    /// default `.kbatch/kafka`, where scripts/install-kafka.sh puts it.
    #[arg(long, env = "KBATCH_KAFKA_HOME", conflicts_with = "brokers")]
    pub kafka_home: Option<PathBuf>,
    /// Start tansu (this binary) instead of Kafka: an explicit choice, never a default.
    #[arg(long, conflicts_with_all = ["brokers", "kafka_home"])]
    pub tansu_bin: Option<PathBuf>,
    /// Use librdkafka's in-process mock cluster even if Kafka is installed.
    #[arg(long, conflicts_with_all = ["brokers", "kafka_home", "tansu_bin"])]
    pub mock: bool,
    /// Requests per second.
    #[arg(long, short, default_value_t = 500.0)]
    pub rate: f64,
    /// How long to send (e.g. 20s, 2m); Ctrl-C stops early.
    #[arg(long, short, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Tier weights critical,high,normal,low.
    #[arg(long, default_value = "10,20,40,30")]
    pub tier_mix: TierMix,
    /// `timeout_ms` written into every request.
    #[arg(long)]
    pub timeout_ms: Option<i32>,
    /// Share of bad records (half undecodable, half wrong shape).
    #[arg(long, default_value_t = 0.0)]
    pub bad_fraction: f64,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Seconds of load at `--rate` before the measured run (broker JIT, batch size settling).
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,
    /// Longest wait for outstanding replies after sending ends (seconds).
    #[arg(long, default_value_t = 10)]
    pub wait_secs: u64,
    /// The final report: a table on stdout, or JSON (`--json`), and a JSON file (`--report`).
    #[command(flatten)]
    pub output: ReportArgs,
}

/// The broker the demo runs against.
pub enum DemoBroker {
    /// Given with `--brokers`.
    External(String),
    /// Apache Kafka as a child process (stopped cleanly, killed on drop).
    Kafka(KafkaProcess),
    /// A tansu child process, killed on drop.
    Tansu(TansuProcess),
    /// librdkafka's in-process mock cluster.
    Mock(MockBroker),
}

impl DemoBroker {
    pub fn bootstrap(&self) -> &str {
        match self {
            DemoBroker::External(b) => b,
            DemoBroker::Kafka(k) => k.bootstrap(),
            DemoBroker::Tansu(t) => t.bootstrap(),
            DemoBroker::Mock(m) => m.bootstrap(),
        }
    }

    /// What a report says about the broker.
    pub fn summary(&self) -> BrokerSummary {
        let (kind, version, started) = match self {
            DemoBroker::External(_) => (BrokerKind::Given, None, None),
            DemoBroker::Kafka(k) => (
                BrokerKind::Kafka,
                Some(k.version().to_owned()),
                Some(k.started_in().as_secs_f64()),
            ),
            DemoBroker::Tansu(_) => (BrokerKind::Tansu, None, None),
            DemoBroker::Mock(_) => (BrokerKind::Mock, None, None),
        };
        BrokerSummary {
            kind,
            version,
            bootstrap: self.bootstrap().to_owned(),
            started_in_s: started,
        }
    }

    /// One sentence for the start of the run, with what to expect of this broker.
    fn describe(&self) -> String {
        match self {
            DemoBroker::External(b) => format!("broker: {b} (given with --brokers)"),
            DemoBroker::Kafka(k) => format!(
                "broker: Apache Kafka {} at {} (child process from {}; KRaft, one node; \
                 started in {:.1} s)",
                k.version(),
                k.bootstrap(),
                k.home().display(),
                k.started_in().as_secs_f64()
            ),
            DemoBroker::Tansu(t) => format!(
                "broker: tansu {} at {} (child process, in-memory storage; a stand-in \
                 with known faults, see docs/testbench.md)",
                t.binary().display(),
                t.bootstrap()
            ),
            DemoBroker::Mock(m) => format!(
                "broker: librdkafka mock cluster at {} (in-process). Note: it consumes only \
                 ~1,200 msg/s, which caps the demo's throughput; run scripts/install-kafka.sh \
                 for a real broker.",
                m.bootstrap()
            ),
        }
    }

    /// Stops what the demo started (nothing for an external broker).
    pub async fn stop(self) {
        match self {
            DemoBroker::External(_) => {}
            DemoBroker::Kafka(k) => {
                let version = k.version().to_owned();
                let r = k.stop().await;
                eprintln!(
                    "broker: Kafka {version} {} in {:.1} s",
                    if r.clean {
                        "shut down cleanly"
                    } else {
                        "killed (no clean shutdown within 30 s)"
                    },
                    r.took.as_secs_f64()
                );
            }
            DemoBroker::Tansu(t) => t.stop().await,
            DemoBroker::Mock(m) => m.stop(),
        }
    }
}

/// librdkafka's mock cluster, held on its own thread (its handle is not `Send`) until stopped.
pub struct MockBroker {
    bootstrap: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockBroker {
    /// Starts a one-broker mock cluster holding `topics` (the mock has no CreateTopics API, so
    /// every topic the demo needs is made here).
    pub fn start(topics: Vec<String>, partitions: i32) -> Result<Self, BenchError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kbatch-mock-cluster".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(source) => {
                        let _ = ready_tx.send(Err(BenchError::Kafka {
                            op: "mock cluster",
                            source,
                        }));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(source) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(BenchError::Kafka {
                            op: "mock create_topic",
                            source,
                        }));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Held until `stop` (or the handle is dropped).
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| BenchError::Task(format!("cannot start the mock cluster thread: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| BenchError::Task("the mock cluster thread died".into()))??;
        Ok(Self {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Shuts the cluster down (after every client using it is gone).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `kbatch demo`: the run's report, for the caller to print.
pub async fn run(args: DemoArgs) -> Result<DemoReport, DemoError> {
    let mut cfg = kbatch_core::config::load(&args.source.load_options())?.config;
    // Warnings only, so the live lines stay readable (RUST_LOG overrides).
    kbatch_core::telemetry::init_tracing(&kbatch_core::config::Logging {
        level: "warn".into(),
        format: cfg.logging.format,
    });
    let run_id = new_run_id();
    // A reply topic per run, unless the server may only answer on its default topic.
    let (reply_topic, reply_from_start) = if cfg.replies.allow_request_reply_topic {
        (format!("inference.replies.demo-{run_id}"), true)
    } else {
        (cfg.replies.default_topic.clone(), false)
    };
    let mut topics = all_topics(&cfg);
    topics.push(reply_topic.clone());

    let broker = pick_broker(&args, &topics).await?;
    eprintln!("{}", broker.describe());

    cfg.kafka.brokers = broker.bootstrap().to_owned();
    cfg.kafka.group_id = format!("kbatch-demo-{run_id}");
    cfg.kafka.fetch_wait_max_ms = 10;
    if matches!(broker, DemoBroker::Tansu(_) | DemoBroker::Mock(_)) {
        // tansu holds a group join for about half the session timeout.
        cfg.kafka.session_timeout_ms = 6000;
    }
    let issues = kbatch_core::config::validate(&cfg, None);
    if !issues.is_empty() {
        let list: Vec<String> = issues.iter().map(|i| format!("  - {i}")).collect();
        broker.stop().await;
        return Err(DemoError::InvalidConfig(list.join("\n")));
    }
    let summary = broker.summary();
    let model = cfg.model.name.clone();
    let outcome = run_with_broker(&args, cfg, &broker, reply_topic, reply_from_start, run_id).await;
    broker.stop().await;
    let (load, pipeline) = outcome?;
    Ok(DemoReport {
        broker: summary,
        model,
        load,
        pipeline,
    })
}

async fn pick_broker(args: &DemoArgs, topics: &[String]) -> Result<DemoBroker, DemoError> {
    if let Some(b) = &args.brokers {
        return Ok(DemoBroker::External(b.clone()));
    }
    if let Some(bin) = &args.tansu_bin {
        let t = TansuProcess::start(bin).await?;
        return Ok(DemoBroker::Tansu(t));
    }
    if !args.mock {
        if let Some(home) = &args.kafka_home {
            // Named explicitly: a broken installation is an error, not a reason to fall back.
            let home = KafkaHome::at(home)?;
            eprintln!("starting Apache Kafka {} ...", home.version());
            return Ok(DemoBroker::Kafka(
                KafkaProcess::start(&home, &kafka_options(args)).await?,
            ));
        }
        if let Some(home) = KafkaHome::locate(None) {
            eprintln!("starting Apache Kafka {} ...", home.version());
            match KafkaProcess::start(&home, &kafka_options(args)).await {
                Ok(k) => return Ok(DemoBroker::Kafka(k)),
                Err(e) => eprintln!("warning: {e}; trying the next broker"),
            }
        }
        let tansu = PathBuf::from(crate::launcher::tansu::DEFAULT_BIN);
        if tansu.is_file() {
            eprintln!(
                "warning: Apache Kafka is not installed (scripts/install-kafka.sh); using tansu"
            );
            match TansuProcess::start(&tansu).await {
                Ok(t) => return Ok(DemoBroker::Tansu(t)),
                Err(e) => eprintln!("warning: {e}; falling back to the mock cluster"),
            }
        }
    }
    let mock = MockBroker::start(topics.to_vec(), args.partitions)?;
    Ok(DemoBroker::Mock(mock))
}

fn kafka_options(args: &DemoArgs) -> KafkaOptions {
    KafkaOptions {
        default_partitions: args.partitions.max(1) as u32,
        ..KafkaOptions::default()
    }
}

/// Topics, pipeline and load on a running broker: the load's report and the pipeline's.
async fn run_with_broker(
    args: &DemoArgs,
    cfg: Config,
    broker: &DemoBroker,
    reply_topic: String,
    reply_from_start: bool,
    run_id: String,
) -> Result<(BenchReport, ServeReport), DemoError> {
    let brokers = broker.bootstrap().to_owned();
    let props = cfg.kafka.property_pairs();
    if !matches!(broker, DemoBroker::Mock(_)) {
        ensure_topics(&brokers, &cfg, args.partitions)
            .await
            .map_err(|source| DemoError::Topics {
                what: "the topics",
                source: Box::new(source),
            })?;
    }
    ensure_named_topics(
        &brokers,
        &props,
        std::slice::from_ref(&reply_topic),
        args.partitions,
    )
    .await
    .map_err(|source| DemoError::Topics {
        what: "the reply topic",
        source: Box::new(source),
    })?;

    let total = bench::plan_size(args.rate, None, Some(args.duration))?;
    let spec = RunSpec {
        brokers: brokers.clone(),
        properties: props,
        topics: cfg.kafka.topics.clone(),
        reply_topic,
        reply_from_start,
        wire: cfg.wire.clone(),
        format: RecordFormat {
            framing: Framing::Confluent,
            contract: SchemaVersion::V1,
        },
        correlation_header: cfg.replies.correlation_header.clone(),
        total,
        rate: args.rate,
        mix: args.tier_mix,
        bad_fraction: args.bad_fraction,
        timeout_ms: args.timeout_ms,
        seed: 42,
        wait: Duration::from_secs(args.wait_secs),
        run_id,
    };
    if !(0.0..=1.0).contains(&spec.bad_fraction) {
        return Err(BenchError::InvalidArgument("--bad-fraction must be in 0..=1".into()).into());
    }

    eprintln!(
        "pipeline: default model {} (registry {}), max batch {}, group {}",
        cfg.model.name,
        cfg.model_registry.path.display(),
        cfg.batch_processing.max_batch_size,
        cfg.kafka.group_id
    );
    let serve_stop = CancellationToken::new();
    let mut serving: Serving =
        tokio::spawn(kbatch_core::app::serve(cfg.clone(), serve_stop.clone()));
    let control = RunControl::default();
    let signal = control.stop_on_ctrl_c();
    let warmup = Duration::from_secs(args.warmup_secs);
    let load = drive(&spec, warmup, &control, &mut serving).await;
    signal.abort();

    // Stop the pipeline (it drains what it took) unless it already ended.
    serve_stop.cancel();
    let limit = Duration::from_millis(cfg.kafka.shutdown_timeout_ms) + Duration::from_secs(10);
    match load {
        Ok(LoadEnd::Done(load)) => match stop_pipeline(serving, limit).await {
            Ok(pipeline) => Ok((load, pipeline)),
            Err(e) => {
                // The load's figures are still worth having.
                eprintln!(
                    "the load's report, before the pipeline's error:\n{}",
                    load.table()
                );
                Err(e)
            }
        },
        Ok(LoadEnd::PipelineEnded(Ok(report))) => {
            Err(DemoError::PipelineStoppedEarly(Box::new(report)))
        }
        Ok(LoadEnd::PipelineEnded(Err(e))) => Err(DemoError::Pipeline(e)),
        Err(e) => {
            // The load's error is the one to report; the pipeline only has to stop.
            if let Err(p) = stop_pipeline(serving, limit).await {
                eprintln!("also: {p}");
            }
            Err(e)
        }
    }
}

type Serving = tokio::task::JoinHandle<Result<ServeReport, AppError>>;

/// How the load phase ended.
enum LoadEnd {
    /// The load ran its course (or was interrupted); the pipeline is still running.
    Done(BenchReport),
    /// The pipeline ended first, with this result; the load is abandoned and the pipeline's
    /// task is finished (its handle must not be awaited again).
    PipelineEnded(Result<ServeReport, AppError>),
}

/// Warm-up, then the timed load with a live line per second, unless the pipeline ends first.
async fn drive(
    spec: &RunSpec,
    warmup: Duration,
    control: &RunControl,
    serving: &mut Serving,
) -> Result<LoadEnd, DemoError> {
    eprintln!(
        "warming up: a first request per tier, then {} s at {}/s (not measured) ...",
        warmup.as_secs(),
        spec.rate
    );
    let warm = bench::warm_up(spec, Duration::from_secs(60), warmup);
    let took = tokio::select! {
        r = warm => r?,
        r = &mut *serving => return Ok(LoadEnd::PipelineEnded(joined(r))),
        _ = control.stop_sending.cancelled() => return Err(DemoError::Interrupted),
    };
    eprintln!(
        "first reply after {:.2} s, warm-up load done; sending {} requests at {}/s, tiers {}",
        took.as_secs_f64(),
        spec.total,
        spec.rate,
        spec.mix
    );
    let mut print = |s: &LiveStats| eprintln!("{s}");
    let load = bench::execute(spec, control, Some(&mut print));
    tokio::select! {
        r = load => Ok(LoadEnd::Done(r?)),
        r = &mut *serving => Ok(LoadEnd::PipelineEnded(joined(r))),
    }
}

/// Waits up to `limit` for the cancelled pipeline to drain; aborts it past that.
async fn stop_pipeline(mut serving: Serving, limit: Duration) -> Result<ServeReport, DemoError> {
    match tokio::time::timeout(limit, &mut serving).await {
        Ok(r) => Ok(joined(r)?),
        Err(_) => {
            serving.abort();
            Err(DemoError::PipelineStuck(limit))
        }
    }
}

/// The pipeline task's result, a panic counted as a failed task.
fn joined(
    joined: Result<Result<ServeReport, AppError>, tokio::task::JoinError>,
) -> Result<ServeReport, AppError> {
    joined.unwrap_or_else(|source| {
        Err(AppError::Task {
            stage: "serving pipeline",
            source,
        })
    })
}

#[cfg(test)]
#[path = "demo_tests.rs"]
mod tests;
