//! The batcher task: moves admitted requests from the per-tier channels into `State` (through
//! the deduplicating `Coalescer`), hands a batch to the inference workers whenever one is due and
//! a worker is free, and learns from each finished batch (`BatchDone`): the adaptive target, and
//! the results that deduplicated twins wait for.
//!
//! Invariants: a worker permit is reserved *before* a batch is popped (so the batch takes every
//! request that arrived while the previous one ran); a channel is read only while its tier has
//! room and the followers waiting on deduplicated leaders stay within `max_queue_size`, which is
//! what turns a slow model into backpressure on the consumer; a queued request is answered by a
//! timer at its deadline (DEADLINE_EXCEEDED) or starvation bound (OVERLOADED), not when a batch
//! happens to form; a follower is answered with its leader's result, re-admitted if the leader
//! fails or expires, or answered DEADLINE_EXCEEDED at its own deadline; when every input channel
//! has closed, everything still queued is flushed (reason `drain`) and every deduplicated leader
//! settled before the task ends.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::adaptive::{AdaptiveController, AdaptiveParams};
use super::dedup::{Admit, Coalescer, DedupParams, DedupStats};
use super::state::State;
use super::{BatchPolicy, Expiry};
use crate::config::Config;
use crate::pipeline::{
    dedup_key, now_ms, Admitted, Batch, BatchDone, DedupKey, FlushCounts, FlushReason,
    LeaderResult, ModelId, Outcome, WorkerPool,
};
use crate::resources::Utilization;
use crate::telemetry::stats::AdaptiveState;
use crate::telemetry::Telemetry;
use crate::tier::Tier;
use crate::wire::{Status, Timings};

/// Everything the batcher task is built from.
pub struct BatcherParts {
    pub policy: BatchPolicy,
    pub adaptive: AdaptiveParams,
    pub dedup: DedupParams,
    pub tiers: [mpsc::Receiver<Admitted>; 4],
    pub pool: WorkerPool,
    pub outcomes: mpsc::Sender<Outcome>,
    /// Finished batches, from the workers.
    pub feedback: mpsc::Receiver<BatchDone>,
    /// The served model (replies, deduplication keys).
    pub model: ModelId,
    /// Memory and GPU readings for the adaptive controller (`resources::run_sampler`); a
    /// channel whose sender is gone leaves the controller without them.
    pub utilization: watch::Receiver<Utilization>,
    pub telemetry: Arc<Telemetry>,
    /// Reloaded configurations (`config::reload`): batching, adaptive and deduplication
    /// settings apply from the next batch. A closed channel means no reloads.
    pub config: watch::Receiver<Arc<Config>>,
}

/// Counters the task keeps for its report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatcherReport {
    pub batches: u64,
    pub requests: u64,
    /// Answered DEADLINE_EXCEEDED without running.
    pub expired: u64,
    /// Answered OVERLOADED: not batched within the starvation bound.
    pub starved: u64,
    /// Batches per flush reason.
    pub by_reason: FlushCounts,
    pub dedup: DedupStats,
    /// The adaptive controller when the task ended.
    pub adaptive: Option<AdaptiveState>,
}

/// The task's state besides the channels it selects on.
struct Batcher {
    state: State,
    adaptive: AdaptiveController,
    coalescer: Coalescer,
    outcomes: mpsc::Sender<Outcome>,
    model: ModelId,
    report: BatcherReport,
    telemetry: Arc<Telemetry>,
}

/// Runs until every tier channel is closed and the queues are drained. The caller registers the
/// task's liveness (with every other stage's).
pub async fn run_batcher(parts: BatcherParts) -> BatcherReport {
    let BatcherParts {
        policy,
        adaptive,
        dedup,
        mut tiers,
        pool,
        outcomes,
        mut feedback,
        model,
        mut utilization,
        telemetry,
        mut config,
    } = parts;
    let now = Instant::now();
    let followers_cap = policy.tier_capacity * Tier::ALL.len();
    let mut batcher = Batcher {
        state: State::new(policy),
        adaptive: AdaptiveController::new(adaptive, now),
        coalescer: Coalescer::new(dedup),
        outcomes,
        model,
        report: BatcherReport::default(),
        telemetry,
    };
    batcher.state.set_target(batcher.adaptive.target());
    let mut open = [true; 4];
    let mut feedback_open = true;
    let mut sampled = true;
    let mut reloading = true;
    loop {
        let draining = open.iter().all(|o| !o);
        // Leaders still running settle through feedback; with every worker gone none will.
        let unsettled = feedback_open && batcher.coalescer.stats().pending > 0;
        if draining && batcher.state.is_empty() && !unsettled {
            break;
        }
        let due = if draining {
            (!batcher.state.is_empty()).then_some(FlushReason::Drain)
        } else {
            batcher.state.ready(Instant::now())
        };
        // The flush timer matters only while no batch is due; the expiry timers always do
        // (a due batch may wait for a busy worker while a deadline passes).
        let flush = if due.is_none() {
            batcher.state.flush_at()
        } else {
            None
        };
        let wake = [
            flush,
            batcher.state.next_expiry(),
            batcher.coalescer.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        batcher.publish_depths();
        let followers_room = batcher.coalescer.stats().waiting < followers_cap;
        let room =
            Tier::ALL.map(|t| open[t.index()] && batcher.state.has_room(t) && followers_room);
        let [critical, high, normal, low] = &mut tiers;
        tokio::select! {
            biased;
            done = feedback.recv(), if feedback_open => match done {
                Some(done) => batcher.on_done(done).await,
                None => feedback_open = false,
            },
            permit = pool.idle.clone().acquire_owned(), if due.is_some() => {
                let Ok(permit) = permit else { break };
                let reason = due.unwrap_or(FlushReason::Drain);
                let Some(batch) = batcher.form(reason, permit).await else { continue };
                if pool.batches.send(batch).await.is_err() {
                    tracing::error!("inference workers are gone; the batcher stops");
                    break;
                }
            }
            admitted = critical.recv(), if room[0] => batcher.receive(admitted, &mut open[0]).await,
            admitted = high.recv(), if room[1] => batcher.receive(admitted, &mut open[1]).await,
            admitted = normal.recv(), if room[2] => batcher.receive(admitted, &mut open[2]).await,
            admitted = low.recv(), if room[3] => batcher.receive(admitted, &mut open[3]).await,
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => batcher.on_timer().await,
            changed = utilization.changed(), if sampled => match changed {
                Ok(()) => batcher.on_utilization(*utilization.borrow_and_update()),
                Err(_) => sampled = false,
            },
            changed = config.changed(), if reloading => match changed {
                Ok(()) => {
                    let cfg = config.borrow_and_update().clone();
                    batcher.on_reload(&cfg);
                }
                Err(_) => reloading = false,
            },
        }
    }
    batcher.report.dedup = batcher.coalescer.stats();
    batcher.report.adaptive = Some(batcher.adaptive.snapshot());
    batcher.report
}

impl Batcher {
    async fn receive(&mut self, admitted: Option<Admitted>, open: &mut bool) {
        match admitted {
            Some(admitted) => self.admit(admitted).await,
            None => *open = false,
        }
    }

    /// Queues `a`, unless an identical request is already queued, running or cached.
    async fn admit(&mut self, mut a: Admitted) {
        if !self.coalescer.params().enabled {
            // A key hashed before deduplication was switched off must not make the worker
            // report this request as a leader.
            a.dedup_key = None;
            self.state.push(a);
            return;
        }
        // Admission hashes the input on the consumer thread; hash here only for requests
        // admitted before deduplication was switched on.
        let key = match a.dedup_key {
            Some(k) => k,
            None => dedup_key(&self.model, &a.request.shape, &a.request.data),
        };
        match self.coalescer.admit(a, key, Instant::now()) {
            Admit::Run(leader) => {
                a = leader;
                a.dedup_key = Some(key);
                self.state.push(a);
            }
            Admit::Cached(a, outputs) => {
                self.telemetry.metrics.dedup_hits.inc();
                self.answer_ok(a, &outputs).await
            }
            Admit::Joined => self.telemetry.metrics.dedup_joins.inc(),
        }
    }

    /// Pops the next batch; `None` when only expired requests were left.
    async fn form(
        &mut self,
        reason: FlushReason,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<Batch> {
        let now = Instant::now();
        let sel = self.state.next_batch(now);
        self.answer_expired(sel.expired).await;
        if sel.batch.is_empty() {
            return None;
        }
        self.adaptive
            .on_dispatch(sel.batch.len(), reason == FlushReason::Full, now);
        self.report.batches += 1;
        self.report.requests += sel.batch.len() as u64;
        self.report.by_reason.add(reason);
        self.telemetry.metrics.batch(reason, sel.batch.len());
        self.telemetry.stats.batch(sel.batch.len());
        Some(Batch {
            requests: sel.batch,
            flush_reason: reason,
            formed_at: now,
            permit: Some(permit),
        })
    }

    /// A reloaded configuration: new bounds and waits for what is queued and what comes next.
    fn on_reload(&mut self, cfg: &Config) {
        self.state.set_policy(BatchPolicy::from_config(cfg));
        self.adaptive.set_params(AdaptiveParams::from_config(cfg));
        self.state.set_target(self.adaptive.target());
        self.coalescer.set_params(DedupParams::from_config(cfg));
        self.publish_adaptive();
        tracing::info!(
            max_batch_size = cfg.batch_processing.max_batch_size,
            target = self.adaptive.target(),
            "batcher: reloaded configuration applied"
        );
    }

    /// New resource readings: over a threshold, the target shrinks for the next batch.
    fn on_utilization(&mut self, u: Utilization) {
        self.adaptive.on_utilization(u.memory(), u.gpu);
        self.state.set_target(self.adaptive.target());
        let m = &self.telemetry.metrics;
        // -1: no reading (no GPU, unreadable memory), which a 0 would misstate.
        m.gpu_utilization.set(u.gpu.unwrap_or(-1.0));
        m.memory_utilization.set(u.memory().unwrap_or(-1.0));
        m.resident_memory_bytes.set(
            u.rss_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        );
        self.publish_adaptive();
    }

    fn publish_depths(&self) {
        for t in Tier::ALL {
            let depth = self.state.depth(t) as i64;
            self.telemetry.metrics.tier(t).queue_depth.set(depth);
        }
    }

    fn publish_adaptive(&self) {
        let s = self.adaptive.snapshot();
        let m = &self.telemetry.metrics;
        m.adaptive_target.set(s.target as i64);
        m.adaptive_throughput.set(s.throughput_rps);
        m.adaptive_batch_latency_ms.set(s.batch_latency_ms);
        self.telemetry.stats.set_adaptive(s);
    }

    /// A worker finished a batch: learn its latency, settle its deduplicated leaders.
    async fn on_done(&mut self, done: BatchDone) {
        let now = Instant::now();
        self.adaptive
            .on_complete(done.size, done.inference, done.ok, now);
        self.state.set_target(self.adaptive.target());
        self.telemetry
            .metrics
            .inference_ms
            .observe(done.inference.as_secs_f64() * 1000.0);
        self.publish_adaptive();
        for LeaderResult { key, outputs } in done.results {
            match outputs {
                Some(outputs) => {
                    for f in self.coalescer.complete(&key, outputs.clone(), now) {
                        self.answer_ok(f, &outputs).await;
                    }
                }
                None => self.readmit(&key).await,
            }
        }
    }

    /// A leader failed or will never run: its followers are admitted again (one leads).
    async fn readmit(&mut self, key: &DedupKey) {
        for f in self.coalescer.fail(key) {
            Box::pin(self.admit(f)).await;
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let expired = self.state.expire(now);
        self.answer_expired(expired).await;
        for f in self.coalescer.cancel_expired(now) {
            self.report.expired += 1;
            self.answer_error(f, Status::DeadlineExceeded, DEADLINE_MSG)
                .await;
        }
    }

    async fn answer_expired(&mut self, expired: Vec<(Admitted, Expiry)>) {
        for (a, why) in expired {
            let key = a.dedup_key;
            let (status, msg) = match why {
                Expiry::Deadline => {
                    self.report.expired += 1;
                    (Status::DeadlineExceeded, DEADLINE_MSG)
                }
                Expiry::Starved => {
                    self.report.starved += 1;
                    (Status::Overloaded, STARVED_MSG)
                }
            };
            self.answer_error(a, status, msg).await;
            if let Some(key) = key {
                self.readmit(&key).await;
            }
        }
    }

    async fn answer_error(&mut self, a: Admitted, status: Status, msg: &str) {
        let outcome = Outcome::error(a, status, msg.to_string(), &self.model, now_ms());
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!(?status, "replier is gone; an error reply was not sent");
        }
    }

    /// Answers a request that was not run itself (a cached result or its leader's): its
    /// timings say so with batch size 0.
    async fn answer_ok(&mut self, a: Admitted, outputs: &Arc<[f32]>) {
        let timings = Timings {
            queue_wait_us: crate::pipeline::micros(a.admitted_at.elapsed()),
            ..Timings::default()
        };
        let outcome = Outcome::ok(a, &self.model, outputs.to_vec(), timings, now_ms());
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!("replier is gone; a deduplicated reply was not sent");
        }
    }
}

const DEADLINE_MSG: &str = "deadline passed before the request could run";
const STARVED_MSG: &str = "not scheduled within the starvation bound; the server is overloaded";
