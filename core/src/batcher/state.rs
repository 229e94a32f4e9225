//! The batcher's pure state: per-tier queues (earliest expiry first) and the rules that decide
//! when a batch is due and which requests it takes. No I/O and no clock of its own: every method
//! takes `now`, so the rules are unit-tested with a paused tokio clock.
//!
//! Invariants: a batch is never empty, never larger than the current target (≤
//! `max_batch_size`) and never over `max_batch_bytes` unless a single request is; a request whose
//! deadline or starvation bound has passed is never put in a batch (it is handed back as expired,
//! with why); within a tier requests leave earliest expiry first, and in arrival order among
//! requests with the same expiry rule; two batches start at least `min_interval` apart.

use tokio::time::Instant;

use super::policy::BatchPolicy;
use super::queue::{Entry, Expiry, TierQueue};
use super::strategy::{strategy_for, BatchStrategy, QueueStats, QueueView};
use crate::pipeline::{Admitted, FlushReason};
use crate::tier::Tier;

/// A formed batch and the requests that expired while it was formed.
#[derive(Debug, Default)]
pub struct Selection {
    pub batch: Vec<Admitted>,
    pub expired: Vec<(Admitted, Expiry)>,
}

pub struct State {
    policy: BatchPolicy,
    strategy: Box<dyn BatchStrategy>,
    queues: [TierQueue; 4],
    len: usize,
    seq: u64,
    target: usize,
    last_start: Option<Instant>,
}

impl State {
    /// A state running the strategy `policy.strategy` names.
    pub fn new(policy: BatchPolicy) -> Self {
        let strategy = strategy_for(policy.strategy);
        Self::with_strategy(policy, strategy)
    }

    pub fn with_strategy(policy: BatchPolicy, strategy: Box<dyn BatchStrategy>) -> Self {
        Self {
            target: policy.max_batch_size,
            policy,
            strategy,
            queues: Default::default(),
            len: 0,
            seq: 0,
            last_start: None,
        }
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    pub fn strategy_name(&self) -> &'static str {
        self.strategy.name()
    }

    /// Applies a reloaded policy (a changed `strategy` takes over from the next batch). Queued
    /// requests keep the expiry they were given.
    pub fn set_policy(&mut self, policy: BatchPolicy) {
        self.target = self.target.min(policy.max_batch_size).max(1);
        if policy.strategy != self.policy.strategy {
            self.strategy = strategy_for(policy.strategy);
        }
        self.policy = policy;
    }

    /// Caps batches at `target` (the adaptive controller's choice), within 1..=max_batch_size.
    pub fn set_target(&mut self, target: usize) {
        self.target = target.clamp(1, self.policy.max_batch_size);
    }

    pub fn target(&self) -> usize {
        self.target
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queued requests per served tier (with priority queueing off, counted in the one queue).
    pub fn depth(&self, tier: Tier) -> usize {
        if self.policy.priority {
            self.queues[tier.index()].len()
        } else {
            self.queues[0].iter().filter(|a| a.tier == tier).count()
        }
    }

    /// Requests in the queue a request of `tier` would join.
    pub fn queued_with(&self, tier: Tier) -> usize {
        self.queues[self.policy.queue_of(tier)].len()
    }

    /// The highest tier with a queued request.
    pub fn top_tier(&self) -> Option<Tier> {
        Tier::ALL.into_iter().find(|&t| self.depth(t) > 0)
    }

    /// Whether a request of `tier` may be queued now.
    pub fn has_room(&self, tier: Tier) -> bool {
        self.queues[self.policy.queue_of(tier)].len() < self.policy.tier_capacity
    }

    /// Queues a request. The caller checks `has_room` first; pushing past it is allowed (it
    /// never loses a request) but breaks the memory bound, so it is a logic error upstream.
    pub fn push(&mut self, a: Admitted) {
        debug_assert!(self.has_room(a.tier), "push past capacity");
        let q = self.policy.queue_of(a.tier);
        self.seq += 1;
        self.queues[q].push(Entry::new(a, self.policy.starvation_bound), self.seq);
        self.len += 1;
    }

    fn view(&self) -> QueueView<'_> {
        QueueView {
            queues: std::array::from_fn(|q| QueueStats {
                len: self.queues[q].len(),
                oldest: self.queues[q].oldest(),
            }),
            len: self.len,
            bytes: self.queues.iter().map(TierQueue::bytes).sum::<usize>()
                + self.len.saturating_mul(self.policy.row_overhead_bytes),
            target: self.target,
            policy: &self.policy,
        }
    }

    /// The earliest start the minimum batch interval allows.
    fn earliest_start(&self) -> Option<Instant> {
        let interval = self.policy.min_interval;
        self.last_start
            .filter(|_| !interval.is_zero())
            .map(|s| s + interval)
    }

    /// The earliest instant at which a batch is due, or `None` when nothing is queued.
    pub fn flush_at(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let at = self.strategy.wake_at(&self.view())?;
        Some(self.earliest_start().map_or(at, |s| at.max(s)))
    }

    /// The earliest instant a queued request expires (deadline or starvation bound).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queues.iter().filter_map(TierQueue::next_expiry).min()
    }

    /// Why a batch is due at `now`, or `None` if it should keep waiting for more requests.
    pub fn ready(&self, now: Instant) -> Option<FlushReason> {
        if self.len == 0 || self.earliest_start().is_some_and(|s| now < s) {
            return None;
        }
        self.strategy.due(&self.view(), now)
    }

    /// Removes every request that expires at or before `at` (the caller may pass `now` plus the
    /// expected batch latency: a request that cannot meet its deadline is answered at once).
    pub fn expire(&mut self, at: Instant) -> Vec<(Admitted, Expiry)> {
        let mut out = Vec::new();
        for q in &mut self.queues {
            q.pop_expired(at, &mut out);
        }
        self.len -= out.len();
        out.into_iter()
            .map(|e| {
                let why = e.expires.map_or(Expiry::Deadline, |(_, why)| why);
                (e.admitted, why)
            })
            .collect()
    }

    /// Takes the next batch: expired requests first leave (returned apart), then the strategy's
    /// plan is taken queue by queue, earliest expiry first, and any room it leaves is filled in
    /// priority order — within the target size and the batch memory bound.
    pub fn next_batch(&mut self, now: Instant) -> Selection {
        let mut sel = Selection {
            expired: self.expire(now),
            batch: Vec::new(),
        };
        if self.len == 0 {
            return sel;
        }
        self.last_start = Some(now);
        let plan = self.strategy.plan(&self.view(), self.target, now);
        let mut bytes = 0;
        let mut left = self.target;
        for pass in [Some(plan), None] {
            for q in 0..self.queues.len() {
                let want = pass.map_or(left, |p| p[q].min(left));
                let took = self.take(q, want, &mut bytes, &mut sel.batch);
                left -= took;
                if took < want && !self.queues[q].is_empty() {
                    return sel; // the memory bound closed the batch
                }
            }
        }
        sel
    }

    /// Moves up to `n` requests of queue `q` into `batch`, stopping before the memory bound.
    fn take(&mut self, q: usize, n: usize, bytes: &mut usize, batch: &mut Vec<Admitted>) -> usize {
        let mut took = 0;
        while took < n {
            let Some(next) = self.queues[q].front_bytes() else {
                break;
            };
            let next = next.saturating_add(self.policy.row_overhead_bytes);
            if !batch.is_empty() && *bytes + next > self.policy.max_batch_bytes {
                break;
            }
            let Some(e) = self.queues[q].pop() else { break };
            *bytes += next;
            self.len -= 1;
            batch.push(e.admitted);
            took += 1;
        }
        took
    }
}
