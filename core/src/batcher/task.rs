//! The batcher task: moves admitted requests from the per-tier channels into the `State` of the
//! model version each was routed to (one lane per version, through the deduplicating
//! `Coalescer`), hands a batch to the inference workers whenever one is due and a worker is
//! free, and learns from each finished batch (`BatchDone`): its lane's adaptive target, and the
//! results that deduplicated twins wait for.
//!
//! Models share the workers: when several lanes have a batch due, the one whose most urgent
//! queued request has the highest tier goes first, lanes of equal urgency take turns, so a slow
//! or busy model never holds another's critical requests behind its own lower tiers. A batch
//! never mixes versions. A lane of a retired version is dropped once it is empty and has no
//! batch running, which lets the registry unload the version.
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
use crate::model::ServedModel;
use crate::pipeline::{
    dedup_key, now_ms, Admitted, Batch, BatchDone, DedupKey, FlushCounts, FlushReason,
    LeaderResult, Outcome, WorkerPool,
};
use crate::resources::Utilization;
use crate::telemetry::stats::AdaptiveState;
use crate::telemetry::Telemetry;
use crate::tensor::Tensor;
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

/// One model version's queues and adaptive controller.
struct Lane {
    model: Arc<ServedModel>,
    state: State,
    adaptive: AdaptiveController,
    /// Batches handed to the workers and not yet reported done.
    running: usize,
}

/// The task's state besides the channels it selects on.
struct Batcher {
    lanes: Vec<Lane>,
    /// The service-wide policy and controller parameters (each lane applies its model's
    /// overrides on top).
    policy: BatchPolicy,
    adaptive: AdaptiveParams,
    /// Where the turn-taking among equally urgent lanes starts next.
    turn: usize,
    coalescer: Coalescer,
    outcomes: mpsc::Sender<Outcome>,
    report: BatcherReport,
    telemetry: Arc<Telemetry>,
}

/// Whether the `memory` strategy runs `model` without a measured working memory per row.
fn policy_is_memory_without_figure(policy: &BatchPolicy, model: &ServedModel) -> bool {
    policy.strategy == crate::config::StrategyKind::Memory
        && model.activation_bytes_per_row().is_none()
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
        mut utilization,
        telemetry,
        mut config,
    } = parts;
    let mut batcher = Batcher {
        lanes: Vec::new(),
        policy,
        adaptive,
        turn: 0,
        coalescer: Coalescer::new(dedup),
        outcomes,
        report: BatcherReport::default(),
        telemetry,
    };
    let mut open = [true; 4];
    let mut feedback_open = true;
    let mut sampled = true;
    let mut reloading = true;
    loop {
        let draining = open.iter().all(|o| !o);
        // Leaders still running settle through feedback; with every worker gone none will.
        let unsettled = feedback_open && batcher.coalescer.stats().pending > 0;
        batcher.drop_idle_lanes();
        if draining && batcher.is_empty() && !unsettled {
            break;
        }
        let due = batcher.due(Instant::now(), draining);
        // The flush timer matters only while no batch is due; the expiry timers always do
        // (a due batch may wait for a busy worker while a deadline passes).
        let flush = batcher.next_flush(due.map(|(lane, _)| lane), Instant::now());
        let wake = [
            flush,
            batcher
                .lanes
                .iter()
                .filter_map(|l| l.state.next_expiry())
                .min(),
            batcher.coalescer.next_deadline(),
            batcher.coalescer.next_purge(),
        ]
        .into_iter()
        .flatten()
        .min();
        batcher.publish_depths();
        // Followers are bounded like queued requests (the queue bound, reloadable).
        let followers_cap = batcher.policy.tier_capacity * Tier::ALL.len();
        let followers_room = batcher.coalescer.stats().waiting < followers_cap;
        let room = Tier::ALL.map(|t| open[t.index()] && batcher.has_room(t) && followers_room);
        let [critical, high, normal, low] = &mut tiers;
        tokio::select! {
            biased;
            done = feedback.recv(), if feedback_open => match done {
                Some(done) => batcher.on_done(done).await,
                None => feedback_open = false,
            },
            permit = pool.idle.clone().acquire_owned(), if due.is_some() => {
                let Ok(permit) = permit else { break };
                // Chosen again now: while the worker was busy, a more urgent lane may have
                // become due.
                let Some((lane, reason)) = batcher.due(Instant::now(), draining) else {
                    continue;
                };
                let Some(batch) = batcher.form(lane, reason, permit).await else { continue };
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
    batcher.report.adaptive = batcher.lanes.first().map(|l| l.adaptive.snapshot());
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
            self.push(a);
            return;
        }
        // Admission hashes the input on the consumer thread; hash here only for requests
        // admitted before deduplication was switched on.
        let key = match a.dedup_key {
            Some(k) => k,
            None => dedup_key(a.model.id(), a.request.inputs.tensors()),
        };
        match self.coalescer.admit(a, key, Instant::now()) {
            Admit::Run(leader) => {
                a = leader;
                a.dedup_key = Some(key);
                self.push(a);
            }
            Admit::Cached(a, outputs) => {
                self.telemetry.metrics.dedup_hits.inc();
                self.answer_ok(a, &outputs).await
            }
            Admit::Joined => self.telemetry.metrics.dedup_joins.inc(),
        }
    }

    /// Queues `a` in the lane of its model version (a new lane for a version not seen yet).
    fn push(&mut self, a: Admitted) {
        let i = match self
            .lanes
            .iter()
            .position(|l| Arc::ptr_eq(&l.model, &a.model))
        {
            Some(i) => i,
            None => self.add_lane(a.model.clone()),
        };
        self.lanes[i].state.push(a);
    }

    fn add_lane(&mut self, model: Arc<ServedModel>) -> usize {
        let (policy, params) = self.settings_of(&model);
        let adaptive = AdaptiveController::new(params, Instant::now());
        let mut state = State::new(policy);
        state.set_target(adaptive.target());
        tracing::debug!(model = %model.id(), "batcher: new model lane");
        if policy_is_memory_without_figure(&self.policy, &model) {
            tracing::warn!(
                model = %model.id(),
                "memory strategy: this version's working memory per row was not measured \
                 (no arena statistics); its batches count their input tensors only"
            );
        }
        self.lanes.push(Lane {
            model,
            state,
            adaptive,
            running: 0,
        });
        self.lanes.len() - 1
    }

    /// A model's batching rules and adaptive parameters: the service's, with the model's
    /// overrides, the controller never targeting more than the model's largest batch.
    fn settings_of(&self, model: &ServedModel) -> (BatchPolicy, AdaptiveParams) {
        let policy = self
            .policy
            .for_model(model.batching())
            .with_activations(model.activation_bytes_per_row());
        let params = self.adaptive.capped_at(policy.max_batch_size);
        (policy, params)
    }

    /// Drops the lanes of retired versions that hold nothing and run nothing.
    fn drop_idle_lanes(&mut self) {
        self.lanes
            .retain(|l| !(l.model.is_retired() && l.state.is_empty() && l.running == 0));
    }

    fn is_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.state.is_empty())
    }

    /// Whether a request of `tier` may be queued: the service's queue bound covers every lane.
    fn has_room(&self, tier: Tier) -> bool {
        let queued: usize = self.lanes.iter().map(|l| l.state.queued_with(tier)).sum();
        queued < self.policy.tier_capacity
    }

    /// The lane whose batch goes next, and why: among lanes with a batch due, the highest tier
    /// queued wins; equal tiers take turns.
    fn due(&self, now: Instant, draining: bool) -> Option<(usize, FlushReason)> {
        let n = self.lanes.len();
        let mut best: Option<(usize, FlushReason, usize)> = None;
        for k in 0..n {
            let i = (self.turn + k) % n.max(1);
            let state = &self.lanes[i].state;
            let reason = if draining {
                (!state.is_empty()).then_some(FlushReason::Drain)
            } else {
                state.ready(now)
            };
            let (Some(reason), Some(top)) = (reason, state.top_tier()) else {
                continue;
            };
            if best.is_none_or(|(_, _, t)| top.index() < t) {
                best = Some((i, reason, top.index()));
            }
        }
        best.map(|(i, reason, _)| (i, reason))
    }

    /// When the batcher must look again without an event: the earliest flush time of the lanes
    /// with no batch due. With a batch due (`due`, waiting for a worker), only lanes whose
    /// flush time is still ahead count: one of them may become due with a higher tier and must
    /// go first, while a flush time already past belongs to a lane that lost the choice and
    /// would only wake the task in a loop.
    fn next_flush(&self, due: Option<usize>, now: Instant) -> Option<Instant> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != due)
            .filter_map(|(_, l)| l.state.flush_at())
            .filter(|&at| due.is_none() || at > now)
            .min()
    }

    /// Pops the next batch of lane `i`; `None` when only expired requests were left.
    async fn form(
        &mut self,
        i: usize,
        reason: FlushReason,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<Batch> {
        let now = Instant::now();
        // The lane after this one goes first among equals next time (lanes added meanwhile
        // included: the index is reduced when it is used).
        self.turn = i + 1;
        let lane = &mut self.lanes[i];
        let sel = lane.state.next_batch(now);
        let model = lane.model.clone();
        self.answer_expired(sel.expired).await;
        if sel.batch.is_empty() {
            return None;
        }
        let lane = &mut self.lanes[i];
        lane.adaptive
            .on_dispatch(sel.batch.len(), reason == FlushReason::Full, now);
        lane.running += 1;
        self.report.batches += 1;
        self.report.requests += sel.batch.len() as u64;
        self.report.by_reason.add(reason);
        self.telemetry.metrics.batch(reason, sel.batch.len());
        self.telemetry
            .metrics
            .model_batch(model.id(), sel.batch.len());
        self.telemetry.stats.batch(sel.batch.len());
        Some(Batch {
            model,
            requests: sel.batch,
            flush_reason: reason,
            formed_at: now,
            permit: Some(permit),
            retry: self.policy.retry,
        })
    }

    /// A reloaded configuration: new bounds and waits for what is queued and what comes next.
    fn on_reload(&mut self, cfg: &Config) {
        self.policy = BatchPolicy::from_config(cfg);
        self.adaptive = AdaptiveParams::from_config(cfg);
        for i in 0..self.lanes.len() {
            let (policy, params) = self.settings_of(&self.lanes[i].model);
            let lane = &mut self.lanes[i];
            lane.state.set_policy(policy);
            lane.adaptive.set_params(params);
            lane.state.set_target(lane.adaptive.target());
        }
        self.coalescer.set_params(DedupParams::from_config(cfg));
        self.publish_adaptive();
        tracing::info!(
            max_batch_size = cfg.batch_processing.max_batch_size,
            "batcher: reloaded configuration applied"
        );
    }

    /// New resource readings: over a threshold, the target shrinks for the next batch.
    fn on_utilization(&mut self, u: Utilization) {
        for lane in &mut self.lanes {
            lane.adaptive.on_utilization(u.memory(), u.gpu);
            lane.state.set_target(lane.adaptive.target());
        }
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
            let depth: usize = self.lanes.iter().map(|l| l.state.depth(t)).sum();
            self.telemetry.metrics.tier(t).queue_depth.set(depth as i64);
        }
    }

    /// The adaptive gauges follow the busiest lane (highest throughput): its batch size is the
    /// one that matters most.
    fn publish_adaptive(&self) {
        let Some(s) = self
            .lanes
            .iter()
            .map(|l| l.adaptive.snapshot())
            .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
        else {
            return;
        };
        let m = &self.telemetry.metrics;
        m.adaptive_target.set(s.target as i64);
        m.adaptive_throughput.set(s.throughput_rps);
        m.adaptive_batch_latency_ms.set(s.batch_latency_ms);
        self.telemetry.stats.set_adaptive(s);
    }

    /// A worker finished a batch: learn its latency, settle its deduplicated leaders.
    async fn on_done(&mut self, done: BatchDone) {
        let now = Instant::now();
        if let Some(lane) = self
            .lanes
            .iter_mut()
            .find(|l| Arc::ptr_eq(&l.model, &done.model))
        {
            lane.running = lane.running.saturating_sub(1);
            lane.adaptive
                .on_complete(done.size, done.inference, done.ok, now);
            lane.state.set_target(lane.adaptive.target());
        }
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
        let expired: Vec<_> = self
            .lanes
            .iter_mut()
            .flat_map(|l| l.state.expire(now))
            .collect();
        self.answer_expired(expired).await;
        for f in self.coalescer.cancel_expired(now) {
            self.report.expired += 1;
            self.answer_error(f, Status::DeadlineExceeded, DEADLINE_MSG)
                .await;
        }
        if self.coalescer.next_purge().is_some_and(|at| at <= now) {
            let purged = self.coalescer.purge(now);
            if purged.results > 0 {
                tracing::info!(
                    results = purged.results,
                    bytes = purged.bytes,
                    cached = self.coalescer.stats().cached,
                    "deduplication: expired results released"
                );
            }
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
        let outcome = Outcome::error(a, status, msg.to_string(), now_ms());
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!(?status, "replier is gone; an error reply was not sent");
        }
    }

    /// Answers a request that was not run itself (a cached result or its leader's): its
    /// timings say so with batch size 0.
    async fn answer_ok(&mut self, a: Admitted, outputs: &Arc<[Tensor]>) {
        let timings = Timings {
            queue_wait_us: crate::pipeline::micros(a.admitted_at.elapsed()),
            ..Timings::default()
        };
        let outcome = Outcome::ok(a, outputs.to_vec(), timings, now_ms());
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!("replier is gone; a deduplicated reply was not sent");
        }
    }
}

const DEADLINE_MSG: &str = "deadline passed before the request could run";
const STARVED_MSG: &str = "not scheduled within the starvation bound; the server is overloaded";
