//! Wiring of the serving pipeline and its ordered shutdown.
//!
//! Shutdown runs front to back through channel closure, so nothing accepted is dropped: the
//! cancel token stops the consumer taking records; it drops its senders; the batcher flushes what
//! is queued and drops the worker queue; the workers finish their batches and drop their outcome
//! senders; the replier delivers the last outcomes and ends; the consumer, which waited for the
//! tracker to report every taken record delivered (bounded by `kafka.shutdown_timeout_ms`),
//! commits and returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod error;
mod report;

pub use error::AppError;
pub use report::{
    BatchingSummary, Count, Counts, InferenceSummary, IntakeSummary, RepliesSummary, ServeReport,
    ServeSummary,
};

use crate::affinity::{self, CorePlan};
use crate::batcher::adaptive::AdaptiveParams;
use crate::batcher::dedup::DedupParams;
use crate::batcher::{run_batcher, BatchPolicy, BatcherParts};
use crate::config::reload::{follow, run_reloader, ReloadCounters};
use crate::config::{Config, Delivery, Device, LoadOptions};
use crate::inference::{spawn_workers, WorkerOutputs, WorkerReport};
use crate::kafka::{
    run_consumer, run_replier, run_transactional_replier, ConsumerInputs, SharedTracker,
};
use crate::pipeline::Admitted;
use crate::registry::{run_registry, LoadSettings, Registry, Routes};
use crate::resources::{run_sampler, GpuInUse, Sources, Utilization};
use crate::telemetry::health::run_liveness_checker;
use crate::telemetry::{set_log_level, Telemetry, TelemetryError};

/// Worker threads of the async runtime for `cores` cores (`TOKIO_WORKER_THREADS`, when set to a
/// positive number, wins). The async side is a handful of single tasks (batcher, replier, HTTP)
/// while the consumer, the inference workers and librdkafka have threads of their own, so a
/// worker per core only adds wake-ups and context switches (one worker drains faster than two
/// on 2 cores; docs/benchmarks.md has the measurement).
pub fn async_workers(cores: usize, env: Option<String>) -> usize {
    if let Some(n) = env.and_then(|v| v.trim().parse::<usize>().ok()) {
        if n > 0 {
            return n;
        }
    }
    if cores <= 4 {
        1
    } else {
        2
    }
}

/// ONNX Runtime sessions (one worker thread each) and intra-op threads per session.
///
/// `resource_management.thread_pool_size` is the inference thread budget, shared out as
/// `intra_op_threads` per session, but never more than the machine's cores minus one: the
/// Kafka clients, decoding and encoding need a core, and oversubscribed ORT threads spin
/// against them (on 2 cores one session with one thread drains fastest; docs/benchmarks.md).
pub fn inference_threads(cfg: &Config, cores: usize) -> InferenceThreads {
    let budget = cfg
        .resource_management
        .thread_pool_size
        .min(cores.saturating_sub(1))
        .max(1);
    let intra_op = cfg.model.intra_op_threads.clamp(1, budget);
    InferenceThreads {
        sessions: (budget / intra_op).max(1),
        intra_op,
    }
}

/// How the inference thread budget is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceThreads {
    /// ONNX Runtime sessions, one worker thread each.
    pub sessions: usize,
    /// Intra-op threads per session.
    pub intra_op: usize,
}

/// Serves until `cancel` fires (then drains) or a stage fails.
pub async fn serve(config: Config, cancel: CancellationToken) -> Result<ServeReport, AppError> {
    serve_with(config, cancel, ServeOptions::default()).await
}

/// What an embedding (tests, the demo) may hand to `serve_with`.
#[derive(Default)]
pub struct ServeOptions {
    /// Metrics, health and statistics to record into (a fresh set when `None`); keep a clone to
    /// read them, e.g. `Telemetry::http_addr` when `http.port` is 0.
    pub telemetry: Option<Arc<Telemetry>>,
    /// Where the running configuration came from: watched (and re-read on SIGHUP) for live
    /// reload. `None`: the configuration is fixed.
    pub reload: Option<LoadOptions>,
}

/// How often the configuration file's content is compared with the running one.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// `serve`, with the options above.
pub async fn serve_with(
    config: Config,
    cancel: CancellationToken,
    opts: ServeOptions,
) -> Result<ServeReport, AppError> {
    let cfg = Arc::new(config);
    let telemetry = match opts.telemetry {
        Some(t) => t,
        None => Telemetry::new(&cfg)?,
    };
    // Probes answer while the model loads (not ready yet), so an orchestrator can tell a slow
    // start from a dead one.
    let http = start_http(&cfg, &telemetry).await?;
    tokio::spawn(mark_draining(cancel.clone(), telemetry.clone()));
    let reload = start_reload(&cfg, opts.reload, &telemetry);
    let checker_stop = cancel.child_token();
    tokio::spawn(run_liveness_checker(
        telemetry.health.clone(),
        follow(reload.config.clone(), |c| {
            c.performance_monitoring.health_period()
        }),
        telemetry.metrics.live.clone(),
        checker_stop.clone(),
    ));
    // Counted before any pinning narrows this thread's mask.
    let cores = cores();
    let threads = inference_threads(&cfg, cores);
    let plan = core_plan(&cfg, threads);
    tracing::info!(
        sessions = threads.sessions,
        intra_op_threads = threads.intra_op,
        cores,
        "inference threads"
    );
    let registry = start_registry(&cfg, threads, plan.as_ref(), &telemetry).await?;
    telemetry.health.set_model_ready(true);
    let shared = Shared {
        telemetry: telemetry.clone(),
        config: reload.config.clone(),
    };
    let stages = Stages {
        threads,
        plan,
        routes: registry.routes,
    };
    let report = run_stages(cfg, stages, shared, cancel.clone()).await;
    registry.stop.cancel();
    reload.stop.cancel();
    checker_stop.cancel();
    telemetry.health.set_draining();
    if let Some(http) = http {
        http.stop.cancel();
        match http.task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP endpoint failed"),
            Err(e) => tracing::warn!(error = %e, "HTTP endpoint task failed"),
            Ok(Ok(())) => {}
        }
    }
    report
}

/// Readiness turns false as soon as shutdown starts, not when the drain ends.
async fn mark_draining(cancel: CancellationToken, telemetry: Arc<Telemetry>) {
    cancel.cancelled().await;
    telemetry.health.set_draining();
}

/// The HTTP endpoint's task and its stop switch (stopped after the pipeline has drained, so
/// the last scrape sees the final counts).
struct Http {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_http(cfg: &Config, telemetry: &Arc<Telemetry>) -> Result<Option<Http>, AppError> {
    if !cfg.http.enabled {
        return Ok(None);
    }
    let Some(addr) = cfg.http.addr() else {
        return Err(TelemetryError::BindAddress(cfg.http.bind.clone()).into());
    };
    let keys = crate::telemetry::http::ApiKeys::from_config(&cfg.security)?;
    let (_, serve) = crate::telemetry::http::bind_with(addr, telemetry.clone(), keys)
        .await
        .map_err(|source| TelemetryError::Listen { addr, source })?;
    // Its own token: the endpoint outlives the drain that `cancel` starts.
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(stop.clone()));
    Ok(Some(Http { stop, task }))
}

/// What every stage may observe besides its channels.
struct Shared {
    telemetry: Arc<Telemetry>,
    /// The running configuration, replaced on each applied reload.
    config: watch::Receiver<Arc<Config>>,
}

/// The reloader and what applies reloads outside the batcher (log level, log interval).
struct Reload {
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
}

fn start_reload(
    cfg: &Arc<Config>,
    opts: Option<LoadOptions>,
    telemetry: &Arc<Telemetry>,
) -> Reload {
    let (tx, rx) = watch::channel(cfg.clone());
    let stop = CancellationToken::new();
    if let Some(opts) = opts {
        let counters = Arc::new(ReloadCounters::default());
        telemetry.set_reload_counters(counters.clone());
        tokio::spawn(run_reloader(
            opts,
            cfg.clone(),
            tx,
            RELOAD_POLL,
            counters,
            stop.clone(),
        ));
        tokio::spawn(apply_reloads(rx.clone(), telemetry.clone(), stop.clone()));
    }
    Reload { config: rx, stop }
}

/// Applies what a reload changes outside the batcher.
async fn apply_reloads(
    mut config: watch::Receiver<Arc<Config>>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        let cfg = config.borrow_and_update().clone();
        match set_log_level(&cfg.logging.level) {
            Ok(true) => tracing::info!(level = %cfg.logging.level, "log level reloaded"),
            Ok(false) => {}
            // Validation accepted the level, so this is a filter syntax it cannot check.
            Err(e) => tracing::warn!(error = %e, "log level not reloaded"),
        }
        telemetry.reconfigure(&cfg.performance_monitoring);
    }
}

/// What the stages run on: the inference threads, where they are pinned, the served versions.
struct Stages {
    threads: InferenceThreads,
    plan: Option<CorePlan>,
    routes: Routes,
}

/// `resource_management.cpu_affinity_enabled`: splits the usable cores between inference and
/// the rest, and moves every thread running now onto the rest (threads created later inherit
/// it). `None` when off, or when the split cannot be made (logged).
fn core_plan(cfg: &Config, threads: InferenceThreads) -> Option<CorePlan> {
    if !cfg.resource_management.cpu_affinity_enabled {
        return None;
    }
    let planned = affinity::allowed_cores()
        .and_then(|allowed| CorePlan::split(&allowed, threads.sessions * threads.intra_op))
        .and_then(|plan| affinity::pin_process(&plan.io).map(|pinned| (plan, pinned)));
    match planned {
        Ok((plan, pinned)) => {
            tracing::info!(%plan, threads_moved = pinned, "CPU affinity");
            Some(plan)
        }
        Err(e) => {
            tracing::warn!(error = %e, "CPU affinity not applied; threads run on any core");
            None
        }
    }
}

/// Starts consumer, batcher, workers and replier, and waits for them to drain in order.
async fn run_stages(
    cfg: Arc<Config>,
    stages: Stages,
    shared: Shared,
    cancel: CancellationToken,
) -> Result<ServeReport, AppError> {
    let Stages {
        threads,
        plan,
        routes,
    } = stages;
    let telemetry = shared.telemetry;
    let tracker = SharedTracker::default();
    let max_batch = cfg.batch_processing.max_batch_size;
    // Room for a few batches of outcomes; the replier keeps thousands of deliveries in flight.
    let (outcome_tx, outcome_rx) = mpsc::channel(4 * max_batch.max(256));
    // Each hand-off channel holds as much as its tier's batcher queue. A small channel (64)
    // overflows on every fetched burst before the batcher task runs; each overflow pauses the
    // topic, librdkafka drops what it had prefetched and fetches it again, which more than
    // halved the drain rate (docs/benchmarks.md).
    let policy = BatchPolicy::from_config(&cfg);
    let (tier_txs, tier_rxs): (Vec<_>, Vec<_>) = (0..4)
        .map(|_| mpsc::channel::<Admitted>(policy.tier_capacity))
        .unzip();
    // Fires once the consumer has made its final commit and left: from then on the replier
    // stops retrying failed deliveries (their records are re-read by the next owner).
    let intake_done = CancellationToken::new();
    let replier = {
        let cfg = cfg.clone();
        let tracker = tracker.clone();
        let stage_telemetry = telemetry.clone();
        let cancel = cancel.clone();
        let intake_done = intake_done.clone();
        spawn_alive(&telemetry, "replier", async move {
            let result = match cfg.kafka.delivery {
                Delivery::AtLeastOnce => {
                    run_replier(cfg, outcome_rx, tracker, stage_telemetry, intake_done).await
                }
                Delivery::ExactlyOnce => {
                    run_transactional_replier(
                        cfg,
                        outcome_rx,
                        tracker,
                        stage_telemetry,
                        intake_done,
                    )
                    .await
                }
            };
            // A replier that fails (an aborted transaction) stops intake: nothing more could be
            // delivered, and the records read again after a restart are answered then.
            if result.is_err() {
                cancel.cancel();
            }
            result
        })
    };
    // Feedback per finished batch; the batcher reads it first, so a few slots per worker do.
    let (feedback_tx, feedback_rx) = mpsc::channel(16 * threads.sessions.max(1));
    let outputs = WorkerOutputs {
        outcomes: outcome_tx.clone(),
        feedback: feedback_tx,
    };
    let alive = (0..threads.sessions)
        .map(|i| telemetry.health.register(format!("inference-{i}")))
        .collect();
    let inference_cores = plan.as_ref().map(|p| p.inference.as_slice());
    let (pool, workers) = spawn_workers(alive, &outputs, inference_cores)?;
    drop(outputs);
    let (sampler, util_rx) = start_sampler(&cfg, &routes, &shared.config);
    let batcher = spawn_alive(
        &telemetry,
        "batcher",
        run_batcher(BatcherParts {
            policy,
            adaptive: AdaptiveParams::from_config(&cfg),
            dedup: DedupParams::from_config(&cfg),
            tiers: array(tier_rxs),
            pool,
            outcomes: outcome_tx.clone(),
            feedback: feedback_rx,
            utilization: util_rx,
            telemetry: telemetry.clone(),
            config: shared.config.clone(),
        }),
    );
    let inputs = ConsumerInputs {
        tiers: array(tier_txs),
        outcomes: outcome_tx,
        telemetry: telemetry.clone(),
        config: shared.config,
    };
    let consumer = spawn_alive(
        &telemetry,
        "consumer",
        run_consumer(cfg.clone(), routes, inputs, tracker, cancel.clone()),
    );

    // Any stage ending early stops intake, so the others drain instead of waiting forever.
    let guard = cancel.clone().drop_guard();
    let consumer = consumer.await.map_err(AppError::task("consumer"));
    intake_done.cancel();
    let consumer = consumer?;
    drop(guard);
    let batcher = batcher.await.map_err(AppError::task("batcher"))?;
    sampler.cancel.cancel();
    sampler
        .task
        .await
        .map_err(AppError::task("resource sampler"))?;
    let workers = join_workers(workers).await?;
    let replier = replier.await.map_err(AppError::task("replier"))?;
    Ok(ServeReport {
        consumer: consumer?,
        batcher,
        workers,
        replier: replier?,
    })
}

/// Spawns `fut` registered with the liveness probe for as long as it runs. Every stage's
/// liveness is registered here, in `run_stages` (the inference threads' too), so `/healthz`
/// lists exactly the stages this function starts.
fn spawn_alive<F>(
    telemetry: &Arc<Telemetry>,
    name: &str,
    fut: F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let alive = telemetry.health.register(name);
    tokio::spawn(async move {
        let out = fut.await;
        drop(alive);
        out
    })
}

async fn join_workers(
    workers: Vec<std::thread::JoinHandle<WorkerReport>>,
) -> Result<Vec<WorkerReport>, AppError> {
    tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
    .await
    .map_err(AppError::task("inference worker join"))
}

/// The resource sampler's task and its stop switch.
struct Sampler {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Samples memory (and the GPU, while a served version runs on one) every
/// `metrics_collection_interval` for the adaptive controller.
fn start_sampler(
    cfg: &Config,
    routes: &Routes,
    config: &watch::Receiver<Arc<Config>>,
) -> (Sampler, watch::Receiver<Utilization>) {
    let (tx, rx) = watch::channel(Utilization::default());
    let cancel = CancellationToken::new();
    let period = follow(config.clone(), |c| {
        c.performance_monitoring.metrics_period()
    });
    let gpu = gpu_in_use(routes.clone(), cfg.model.cuda_device_id);
    let task = tokio::spawn(run_sampler(
        Sources::host_with(gpu),
        period,
        tx,
        cancel.clone(),
    ));
    (Sampler { cancel, task }, rx)
}

/// The CUDA device while some served version runs on it: what the sessions chose, not what
/// `model.device` asked for (after a fallback to CPU, none).
fn gpu_in_use(routes: Routes, device_id: i32) -> GpuInUse {
    GpuInUse::new(move || {
        let table = routes.current();
        let on_cuda = table.served().any(|m| m.info().device == Device::Cuda);
        on_cuda.then_some(device_id)
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The model registry's task and its stop switch, and the routing table it publishes.
struct RegistryTask {
    routes: Routes,
    stop: CancellationToken,
}

/// Loads every model version of the repository (one session per inference worker each) and
/// starts the task that keeps them in step with it. Fails when the default model cannot serve.
async fn start_registry(
    cfg: &Config,
    threads: InferenceThreads,
    plan: Option<&CorePlan>,
    telemetry: &Arc<Telemetry>,
) -> Result<RegistryTask, AppError> {
    let mut settings = LoadSettings::from_config(cfg, threads.sessions, threads.intra_op);
    settings.intra_op_affinity = plan.and_then(|p| p.ort_intra_op_affinities(threads.intra_op));
    let (registry, routes) = Registry::start(settings, telemetry.clone()).await?;
    let stop = CancellationToken::new();
    tokio::spawn(run_registry(registry, stop.clone()));
    Ok(RegistryTask { routes, stop })
}

fn array<T>(v: Vec<T>) -> [T; 4] {
    v.try_into()
        .unwrap_or_else(|v: Vec<T>| panic!("expected 4 tiers, got {}", v.len()))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "live_tests.rs"]
mod live_tests;
