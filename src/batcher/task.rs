//! The batcher task: moves admitted requests from the per-tier channels into `State`, and hands
//! a batch to the inference workers whenever one is due and a worker is free.
//!
//! Invariants: a worker permit is reserved *before* a batch is popped (so the batch takes every
//! request that arrived while the previous one ran); a channel is read only while its tier has
//! room, which is what turns a slow model into backpressure on the consumer; a queued request is
//! answered by a timer at its deadline (DEADLINE_EXCEEDED) or starvation bound (OVERLOADED), not
//! when a batch happens to form; when every input channel has closed, everything still queued is
//! flushed (reason `drain`) before the task ends.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};

use super::state::{reason, State};
use super::{BatchPolicy, Expiry};
use crate::pipeline::{now_ms, Admitted, Batch, Outcome};
use crate::tier::Tier;
use crate::wire::Status;

/// The free inference workers and the queue to them.
#[derive(Clone)]
pub struct WorkerPool {
    /// One permit per idle worker; a batch carries its permit until the worker is done.
    pub idle: Arc<Semaphore>,
    pub batches: mpsc::Sender<Batch>,
}

/// Counters the task keeps for its report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatcherReport {
    pub batches: u64,
    pub requests: u64,
    /// Answered DEADLINE_EXCEEDED without running.
    pub expired: u64,
    /// Answered OVERLOADED: not batched within the starvation bound.
    pub starved: u64,
    pub by_reason: Vec<(&'static str, u64)>,
}

impl BatcherReport {
    fn count(&mut self, reason: &'static str) {
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.by_reason.push((reason, 1)),
        }
    }
}

/// Runs until every tier channel is closed and the queues are drained.
pub async fn run_batcher(
    policy: BatchPolicy,
    mut tiers: [mpsc::Receiver<Admitted>; 4],
    pool: WorkerPool,
    outcomes: mpsc::Sender<Outcome>,
    model: (String, String),
) -> BatcherReport {
    let mut state = State::new(policy);
    let mut open = [true; 4];
    let mut report = BatcherReport::default();
    loop {
        let draining = open.iter().all(|o| !o);
        if draining && state.is_empty() {
            break;
        }
        let due = if draining {
            (!state.is_empty()).then_some(reason::DRAIN)
        } else {
            state.ready(Instant::now())
        };
        // The flush timer matters only while no batch is due; the expiry timer always does
        // (a due batch may wait for a busy worker while a deadline passes).
        let flush = if due.is_none() {
            state.flush_at()
        } else {
            None
        };
        let wake = [flush, state.next_expiry()].into_iter().flatten().min();
        let room = Tier::ALL.map(|t| open[t.index()] && state.has_room(t));
        let [c, h, n, l] = &mut tiers;
        tokio::select! {
            biased;
            permit = pool.idle.clone().acquire_owned(), if due.is_some() => {
                let Ok(permit) = permit else { break };
                let reason = due.unwrap_or(reason::DRAIN);
                let sel = state.next_batch(Instant::now());
                answer_expired(sel.expired, &outcomes, &model, &mut report).await;
                if sel.batch.is_empty() {
                    continue;
                }
                report.batches += 1;
                report.requests += sel.batch.len() as u64;
                report.count(reason);
                let batch = Batch { requests: sel.batch, flush_reason: reason, formed_at: Instant::now(), permit: Some(permit) };
                if pool.batches.send(batch).await.is_err() {
                    tracing::error!("inference workers are gone; the batcher stops");
                    break;
                }
            }
            a = c.recv(), if room[0] => admit(a, &mut state, &mut open[0]),
            a = h.recv(), if room[1] => admit(a, &mut state, &mut open[1]),
            a = n.recv(), if room[2] => admit(a, &mut state, &mut open[2]),
            a = l.recv(), if room[3] => admit(a, &mut state, &mut open[3]),
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let expired = state.expire(Instant::now());
                answer_expired(expired, &outcomes, &model, &mut report).await;
            }
        }
    }
    report
}

fn admit(a: Option<Admitted>, state: &mut State, open: &mut bool) {
    match a {
        Some(a) => state.push(a),
        None => *open = false,
    }
}

async fn answer_expired(
    expired: Vec<(Admitted, Expiry)>,
    outcomes: &mpsc::Sender<Outcome>,
    model: &(String, String),
    report: &mut BatcherReport,
) {
    for (a, why) in expired {
        let (status, msg) = match why {
            Expiry::Deadline => {
                report.expired += 1;
                (
                    Status::DeadlineExceeded,
                    "deadline passed before the request could run",
                )
            }
            Expiry::Starved => {
                report.starved += 1;
                (
                    Status::Overloaded,
                    "not scheduled within the starvation bound; the server is overloaded",
                )
            }
        };
        let outcome = Outcome::error(a, status, msg.to_string(), (&model.0, &model.1), now_ms());
        if outcomes.send(outcome).await.is_err() {
            tracing::error!(?status, "replier is gone; an error reply was not sent");
        }
    }
}
