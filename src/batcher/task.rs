//! The batcher task: moves admitted requests from the per-tier channels into `State`, and hands
//! a batch to the inference workers whenever one is due and a worker is free.
//!
//! Invariants: a worker permit is reserved *before* a batch is popped (so the batch takes every
//! request that arrived while the previous one ran); a channel is read only while its tier has
//! room, which is what turns a slow model into backpressure on the consumer; when every input
//! channel has closed, everything still queued is flushed (reason `drain`) before the task ends.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, Instant};

use super::state::{reason, State};
use super::BatchPolicy;
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
    pub expired: u64,
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
        let wake = state.flush_at();
        let room = Tier::ALL.map(|t| open[t.index()] && state.has_room(t));
        let [c, h, n, l] = &mut tiers;
        tokio::select! {
            biased;
            permit = pool.idle.clone().acquire_owned(), if due.is_some() => {
                let Ok(permit) = permit else { break };
                let reason = due.unwrap_or(reason::DRAIN);
                let sel = state.next_batch(Instant::now());
                report.expired += sel.expired.len() as u64;
                answer_expired(sel.expired, &outcomes, &model).await;
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
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if due.is_none() && wake.is_some() => {}
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
    expired: Vec<Admitted>,
    outcomes: &mpsc::Sender<Outcome>,
    model: &(String, String),
) {
    for a in expired {
        let msg = "deadline passed before the request could run".to_string();
        let outcome = Outcome::error(
            a,
            Status::DeadlineExceeded,
            msg,
            (&model.0, &model.1),
            now_ms(),
        );
        if outcomes.send(outcome).await.is_err() {
            tracing::error!("replier is gone; a DEADLINE_EXCEEDED reply was not sent");
        }
    }
}
