//! The `kbatch` command line. Only argument parsing and dispatch live here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kbatch::output::ReportArgs;
use kbatch::source::ConfigSource;
use kbatch_core::config::load;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "kbatch",
    version,
    about = "Kafka-native dynamic-batching inference on ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured model: consume the tier topics, batch, infer, reply.
    Serve(ServeArgs),
    /// Load, merge and validate the configuration; print it (YAML) or every error with its source.
    ValidateConfig(ConfigSource),
    /// Print the Prometheus alert rules of the configuration (its latency and error-rate
    /// thresholds): `kbatch alert-rules --profile P > kbatch-alerts.yml`.
    AlertRules(ConfigSource),
    /// Load generator: send requests to the tier topics (fixed rate or backlog), measure replies.
    Bench(kbatch::bench::BenchArgs),
    /// Raw ONNX Runtime throughput of the configured model per batch size (no Kafka).
    BenchModel(kbatch::bench::ModelBenchArgs),
    /// Draw an SVG chart from JSON reports (a bench run's timeline, items/s per batch size).
    Plot(kbatch::plot::PlotArgs),
    /// Broker (given, tansu or in-process mock) + pipeline + load, with a live summary.
    Demo(kbatch::demo::DemoArgs),
    /// Create the four tier topics, the reply topic and the dead-letter topic.
    CreateTopics(kbatch::topics::CreateTopicsArgs),
    /// Print a running instance's statistics (its `/stats` endpoint).
    Stats(StatsArgs),
    /// List a running instance's models, versions and their state (its `/models` endpoint).
    Models(StatsArgs),
    /// Exit 0 when an instance's probe answers 200 (container health checks: images have no curl).
    Probe(ProbeArgs),
    /// Run a local Apache Kafka broker (KRaft, one node) until SIGTERM or Ctrl-C.
    Broker(BrokerArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    source: ConfigSource,
    /// The report at exit: a table on stdout, or JSON (`--json`), and a JSON file (`--report`).
    #[command(flatten)]
    output: ReportArgs,
}

#[derive(Args)]
struct BrokerArgs {
    /// Kafka installation (a folder with `libs/kafka_2.13-*.jar`); default `.kbatch/kafka`,
    /// where scripts/install-kafka.sh puts it.
    #[arg(long, env = "KBATCH_KAFKA_HOME")]
    kafka_home: Option<PathBuf>,
    /// Client port on 127.0.0.1; a free one by default.
    #[arg(long)]
    port: Option<u16>,
    /// JVM heap.
    #[arg(long, default_value = "512m")]
    heap: String,
    /// Extra broker property (repeatable), e.g. `--property log.retention.ms=60000`.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

#[derive(Args)]
struct ProbeArgs {
    /// The instance's HTTP endpoint (`host:port`).
    #[arg(long, default_value = "127.0.0.1:9090", env = "KBATCH_ENDPOINT")]
    endpoint: String,
    /// The path to GET: /healthz (liveness) or /ready (readiness).
    #[arg(default_value = "/healthz")]
    path: String,
}

#[derive(Args)]
struct StatsArgs {
    /// The instance's HTTP endpoint (`http.bind`:`http.port`).
    #[arg(long, default_value = "127.0.0.1:9090", env = "KBATCH_ENDPOINT")]
    endpoint: String,
    /// Print the JSON document as served instead of the summary.
    #[arg(long)]
    json: bool,
    /// API key for an instance with `security.api_keys` (sent as `X-API-Key`).
    #[arg(long, env = "KBATCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl StatsArgs {
    /// The API key header, when one is given.
    fn headers(&self) -> Vec<(&str, &str)> {
        self.api_key
            .as_deref()
            .map(|k| ("X-API-Key", k))
            .into_iter()
            .collect()
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::ValidateConfig(args) => return validate_config(&args),
        Command::AlertRules(args) => alert_rules(&args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve(args))),
        Command::Bench(args) => runtime().and_then(|rt| {
            let (output, plot) = (args.output.clone(), args.plot.clone());
            let report = rt.block_on(kbatch::bench::run(args))?;
            output.emit(&report.table(), &report)?;
            // After the report: a chart that fails to draw loses no figures.
            if let Some(path) = plot {
                kbatch::plot::write_bench_chart(&report, &path)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }),
        Command::Plot(args) => kbatch::plot::run(&args).map_err(Into::into),
        Command::BenchModel(args) => kbatch::bench::run_model_bench(&args)
            .map_err(anyhow::Error::from)
            .and_then(|report| Ok(args.output.emit(&report.table(), &report)?)),
        Command::Demo(args) => runtime().and_then(|rt| {
            let output = args.output.clone();
            let report = rt.block_on(kbatch::demo::run(args))?;
            Ok(output.emit(&report.table(), &report)?)
        }),
        Command::CreateTopics(args) => runtime().and_then(|rt| {
            for topic in rt.block_on(kbatch::topics::create_topics(&args))? {
                println!("{} ({} partitions)", topic.name, topic.partitions);
            }
            Ok(())
        }),
        Command::Probe(args) => runtime().and_then(|rt| {
            rt.block_on(kbatch_core::telemetry::client::probe(
                &args.endpoint,
                &args.path,
            ))
            .map_err(Into::into)
        }),
        Command::Broker(args) => runtime().and_then(|rt| rt.block_on(broker(args))),
        Command::Stats(args) => print_page(&args, Page::Stats),
        Command::Models(args) => print_page(&args, Page::Models),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A running instance's page that `kbatch` prints.
enum Page {
    Stats,
    Models,
}

/// Prints `page` of the instance at `args.endpoint` (`kbatch stats`, `kbatch models`).
fn print_page(args: &StatsArgs, page: Page) -> anyhow::Result<()> {
    use kbatch_core::telemetry::client::{models_with_headers, stats_with_headers};
    let headers = args.headers();
    let (endpoint, json) = (args.endpoint.as_str(), args.json);
    let text = runtime()?.block_on(async {
        match page {
            Page::Stats => stats_with_headers(endpoint, json, &headers).await,
            Page::Models => models_with_headers(endpoint, json, &headers).await,
        }
    })?;
    print!("{text}");
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(kbatch_core::app::async_workers(
            cores,
            std::env::var("TOKIO_WORKER_THREADS").ok(),
        ))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// `kbatch serve`: runs until a signal has drained the pipeline, then logs the summary as one
/// event's fields (for log pipelines) and prints it (for the person who stopped it).
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = load(&args.source.load_options())?;
    kbatch_core::telemetry::init_tracing(&loaded.config.logging);
    for note in &loaded.notes {
        tracing::info!(note = note.as_str(), "configuration adjusted");
    }
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let opts = kbatch_core::app::ServeOptions {
        telemetry: None,
        reload: Some(args.source.load_options()),
    };
    let report = kbatch_core::app::serve_with(loaded.config, cancel, opts).await?;
    report.log_stopped();
    args.output.emit(&report.table(), &report)?;
    Ok(())
}

/// `kbatch broker`: start, print where it answers, wait for a signal, stop cleanly.
async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    use kbatch::launcher::{KafkaHome, KafkaOptions, KafkaProcess};
    let root = args
        .kafka_home
        .unwrap_or_else(|| PathBuf::from(kbatch::launcher::kafka::DEFAULT_HOME));
    let home = KafkaHome::at(&root)?;
    let properties = args
        .properties
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--property {kv:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = KafkaOptions {
        port: args.port,
        heap: args.heap,
        properties,
        ..KafkaOptions::default()
    };
    let kafka = KafkaProcess::start(&home, &opts).await?;
    // Scripts wait for this line (and read the address from it).
    println!(
        "kafka {} ready at {} in {:.1} s",
        kafka.version(),
        kafka.bootstrap(),
        kafka.started_in().as_secs_f64()
    );
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone()).await;
    let stop = kafka.stop().await;
    println!(
        "kafka stopped {} in {:.1} s",
        if stop.clean { "cleanly" } else { "by SIGKILL" },
        stop.took.as_secs_f64()
    );
    Ok(())
}

/// SIGTERM or Ctrl-C starts a graceful drain; a second one is left to the default handler.
async fn cancel_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
    }
    cancel.cancel();
}

/// `kbatch alert-rules`: the rules for the loaded configuration, on stdout.
fn alert_rules(args: &ConfigSource) -> anyhow::Result<()> {
    let loaded = load(&args.load_options())?;
    let source = match (&args.profile, &args.config) {
        (Some(p), _) if !p.is_empty() => format!("profile {p}"),
        (_, Some(file)) => file.display().to_string(),
        _ if !args.overrides.is_empty() => "the defaults with --set overrides".to_owned(),
        _ => kbatch::alerts::DEFAULTS.to_owned(),
    };
    print!("{}", kbatch::alerts::render(&loaded.config, &source));
    Ok(())
}

/// `yaml` with each top-level section line followed by how a reload treats it.
fn with_reload_notes(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 1024);
    for line in yaml.lines() {
        out.push_str(line);
        let section = line
            .strip_suffix(':')
            .filter(|s| !s.starts_with([' ', '#']));
        if let Some(section) = section {
            out.push_str("  # ");
            out.push_str(&kbatch_core::config::reload::reload_note(section));
        }
        out.push('\n');
    }
    out
}

fn validate_config(args: &ConfigSource) -> ExitCode {
    match load(&args.load_options()) {
        Ok(loaded) => {
            let files: Vec<String> = loaded
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            println!(
                "# effective configuration (files: {}; secrets shown as {})",
                if files.is_empty() {
                    "none".into()
                } else {
                    files.join(", ")
                },
                kbatch_core::config::REDACTED
            );
            for note in &loaded.notes {
                println!("# note: {note}");
            }
            println!(
                "# each section says how a running `kbatch serve` takes a change to it: live \
                 (from the next batch, on file change or SIGHUP) or restart"
            );
            // API keys and sensitive librdkafka properties are masked: this output gets pasted.
            match serde_yaml::to_string(&kbatch_core::config::redacted(&loaded.config)) {
                Ok(yaml) => print!("{}", with_reload_notes(&yaml)),
                Err(e) => {
                    eprintln!("error: cannot print the configuration: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
