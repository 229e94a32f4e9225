//! `kbatch demo`: the whole service on one machine in one command. It picks a broker (the one
//! given, else Apache Kafka as a child process when it is installed, else tansu when it is,
//! else librdkafka's in-process mock cluster), creates the
//! topics, runs the serving pipeline in-process, drives it with the load generator and prints a
//! live summary every second and a report at the end.
//!
//! Invariant: everything the demo starts it also stops, in reverse order: load, then the
//! pipeline (which drains), then the broker, also on Ctrl-C and on errors (a broker child is
//! killed when its handle drops).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::bench::{
    self, new_run_id, parse_duration, BenchError, LiveStats, RunControl, RunSpec, TierMix,
};
use crate::launcher::{KafkaHome, KafkaOptions, KafkaProcess, TansuProcess};
use crate::source::ConfigSource;
use kbatch_core::config::{Config, Framing};
use kbatch_core::kafka::{all_topics, ensure_named_topics, ensure_topics};

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
    /// Write the final load report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
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
                println!(
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

/// The serving pipeline, behind one function so the demo depends on `app::serve` in one place.
async fn serve_pipeline(config: Config, cancel: CancellationToken) -> Result<String, String> {
    kbatch_core::app::serve(config, cancel)
        .await
        .map(|report| report.to_string())
        .map_err(|e| e.to_string())
}

/// `kbatch demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
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
    println!("{}", broker.describe());

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
        bail!("the demo's configuration is invalid:\n{}", list.join("\n"));
    }
    let outcome = run_with_broker(&args, cfg, &broker, reply_topic, reply_from_start, run_id).await;
    broker.stop().await;
    outcome
}

async fn pick_broker(args: &DemoArgs, topics: &[String]) -> anyhow::Result<DemoBroker> {
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
            println!("starting Apache Kafka {} ...", home.version());
            return Ok(DemoBroker::Kafka(
                KafkaProcess::start(&home, &kafka_options(args)).await?,
            ));
        }
        if let Some(home) = KafkaHome::locate(None) {
            println!("starting Apache Kafka {} ...", home.version());
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

async fn run_with_broker(
    args: &DemoArgs,
    cfg: Config,
    broker: &DemoBroker,
    reply_topic: String,
    reply_from_start: bool,
    run_id: String,
) -> anyhow::Result<()> {
    let brokers = broker.bootstrap().to_owned();
    let props: Vec<(String, String)> = cfg
        .kafka
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !matches!(broker, DemoBroker::Mock(_)) {
        ensure_topics(&brokers, &cfg, args.partitions)
            .await
            .context("creating the topics")?;
    }
    ensure_named_topics(
        &brokers,
        &props,
        std::slice::from_ref(&reply_topic),
        args.partitions,
    )
    .await
    .context("creating the reply topic")?;

    let total = bench::plan_size(args.rate, None, Some(args.duration))?;
    let spec = RunSpec {
        brokers: brokers.clone(),
        properties: props,
        topics: cfg.kafka.topics.clone(),
        reply_topic,
        reply_from_start,
        wire: cfg.wire.clone(),
        framing: Framing::Confluent,
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
        bail!("--bad-fraction must be in 0..=1");
    }

    println!(
        "pipeline: model {} ({}), max batch {}, group {}",
        cfg.model.name,
        cfg.model.model_path().display(),
        cfg.batch_processing.max_batch_size,
        cfg.kafka.group_id
    );
    let serve_stop = CancellationToken::new();
    let mut serving = tokio::spawn(serve_pipeline(cfg.clone(), serve_stop.clone()));
    let control = RunControl::default();
    let signal = control.stop_on_ctrl_c();

    let mut ended = None;
    let warmup = Duration::from_secs(args.warmup_secs);
    let result = drive((&spec, warmup), &control, &mut serving, &mut ended).await;
    signal.abort();

    // Stop the pipeline (it drains what it took) unless it already ended.
    serve_stop.cancel();
    let served = match ended {
        Some(r) => r,
        None => {
            let limit =
                Duration::from_millis(cfg.kafka.shutdown_timeout_ms) + Duration::from_secs(10);
            match tokio::time::timeout(limit, &mut serving).await {
                Ok(r) => flatten(r),
                Err(_) => {
                    serving.abort();
                    Err(format!("the pipeline did not stop within {limit:?}"))
                }
            }
        }
    };

    let report = result?;
    println!("\n{}", report.render_text());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    match served {
        Ok(serve_report) => println!("pipeline report:\n{serve_report}"),
        Err(e) => bail!("serving pipeline: {e}"),
    }
    Ok(())
}

type Serving = tokio::task::JoinHandle<Result<String, String>>;

/// Warm-up, then the timed load with a live line per second. If the pipeline ends first, its
/// outcome goes to `ended` (the handle must not be awaited again) and the load fails.
async fn drive(
    (spec, warmup): (&RunSpec, Duration),
    control: &RunControl,
    serving: &mut Serving,
    ended: &mut Option<Result<String, String>>,
) -> anyhow::Result<bench::BenchReport> {
    println!(
        "warming up: a first request per tier, then {} s at {}/s (not measured) ...",
        warmup.as_secs(),
        spec.rate
    );
    let warm = bench::warm_up(spec, Duration::from_secs(60), warmup);
    let took = tokio::select! {
        r = warm => r?,
        r = &mut *serving => return Err(pipeline_ended(ended.insert(flatten(r)))),
        _ = control.stop_sending.cancelled() => bail!("interrupted during warm-up"),
    };
    println!(
        "first reply after {:.2} s, warm-up load done; sending {} requests at {}/s, tiers {}",
        took.as_secs_f64(),
        spec.total,
        spec.rate,
        spec.mix
    );
    let mut print = |s: &LiveStats| println!("{s}");
    let load = bench::execute(spec, control, Some(&mut print));
    tokio::select! {
        r = load => Ok(r?),
        r = &mut *serving => Err(pipeline_ended(ended.insert(flatten(r)))),
    }
}

fn flatten(r: Result<Result<String, String>, tokio::task::JoinError>) -> Result<String, String> {
    r.unwrap_or_else(|e| Err(format!("the pipeline task panicked: {e}")))
}

fn pipeline_ended(r: &Result<String, String>) -> anyhow::Error {
    match r {
        Ok(report) => anyhow!("the serving pipeline stopped early:\n{report}"),
        Err(e) => anyhow!("the serving pipeline failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mock_broker_serves_metadata_for_its_topics_and_stops() {
        let topics = vec!["demo.a".to_owned(), "demo.b".to_owned()];
        let mock = MockBroker::start(topics.clone(), 2).unwrap();
        // The topics exist already: this only checks metadata (the mock has no CreateTopics).
        ensure_named_topics(mock.bootstrap(), &[], &topics, 2)
            .await
            .unwrap();
        mock.stop();
    }
}
