//! The batcher's pure state: per-tier FIFO queues and the rules that decide when a batch is due
//! and which requests it takes. No I/O and no clock of its own: every method takes `now`, so the
//! rules are unit-tested with a paused tokio clock.
//!
//! Invariants: a batch is never empty and never larger than `max_batch_size`; a request whose
//! deadline has passed is never put in a batch (it is handed back as expired instead); within a
//! tier, requests leave in arrival order.

use std::collections::VecDeque;
use tokio::time::Instant;

use super::policy::BatchPolicy;
use crate::pipeline::Admitted;
use crate::tier::Tier;

/// Why a batch was closed (a metric label).
pub mod reason {
    pub const FULL: &str = "full";
    pub const WAIT: &str = "wait";
    pub const TIMEOUT: &str = "timeout";
    pub const DRAIN: &str = "drain";
}

/// A formed batch and the requests that expired while it was formed.
#[derive(Debug, Default)]
pub struct Selection {
    pub batch: Vec<Admitted>,
    pub expired: Vec<Admitted>,
}

pub struct State {
    policy: BatchPolicy,
    queues: [VecDeque<Admitted>; 4],
    len: usize,
}

impl State {
    pub fn new(policy: BatchPolicy) -> Self {
        Self {
            policy,
            queues: Default::default(),
            len: 0,
        }
    }

    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queued requests per tier (by served tier, also with priority queueing off).
    pub fn depth(&self, tier: Tier) -> usize {
        if self.policy.priority {
            self.queues[tier.index()].len()
        } else {
            self.queues[0].iter().filter(|a| a.tier == tier).count()
        }
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
        self.queues[q].push_back(a);
        self.len += 1;
    }

    fn oldest(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front())
            .map(|a| a.admitted_at)
            .min()
    }

    /// The earliest instant at which a batch is due, or `None` when nothing is queued.
    pub fn flush_at(&self) -> Option<Instant> {
        let oldest = self.oldest()?;
        let mut at = oldest + self.policy.batch_timeout;
        if self.len >= self.policy.min_batch_size {
            for (q, queue) in self.queues.iter().enumerate() {
                if let Some(front) = queue.front() {
                    at = at.min(front.admitted_at + self.wait_of(q));
                }
            }
        }
        Some(at)
    }

    fn wait_of(&self, queue: usize) -> std::time::Duration {
        self.policy.tier_wait[if self.policy.priority { queue } else { 0 }]
    }

    /// Why a batch is due at `now`, or `None` if it should keep waiting for more requests.
    pub fn ready(&self, now: Instant) -> Option<&'static str> {
        if self.len == 0 {
            return None;
        }
        if self.len >= self.policy.max_batch_size {
            return Some(reason::FULL);
        }
        let oldest = self.oldest()?;
        if now >= oldest + self.policy.batch_timeout {
            return Some(reason::TIMEOUT);
        }
        match self.flush_at() {
            Some(at) if now >= at => Some(reason::WAIT),
            _ => None,
        }
    }

    /// Takes the next batch: boosted lower tiers get their quota first (starvation freedom),
    /// the rest is filled in strict priority order. Expired requests met on the way are
    /// returned apart and never batched.
    pub fn next_batch(&mut self, now: Instant) -> Selection {
        let mut sel = Selection::default();
        let max = self.policy.max_batch_size;
        if self.policy.priority {
            for q in 1..self.queues.len() {
                if self.boosted(q, now) {
                    let quota = self.policy.boost_quota.min(max);
                    self.take(q, quota, now, &mut sel);
                }
            }
        }
        for q in 0..self.queues.len() {
            let room = max - sel.batch.len();
            if room == 0 {
                break;
            }
            self.take(q, room, now, &mut sel);
        }
        sel
    }

    /// Whether queue `q` is owed a share of the next batch.
    fn boosted(&self, q: usize, now: Instant) -> bool {
        let queue = &self.queues[q];
        let higher_waiting = self.queues[..q].iter().any(|h| !h.is_empty());
        let aged = queue.front().is_some_and(|f| {
            now.saturating_duration_since(f.admitted_at) >= self.policy.aging_limit
        });
        higher_waiting && (queue.len() >= self.policy.boost_threshold || aged)
    }

    fn take(&mut self, q: usize, mut room: usize, now: Instant, sel: &mut Selection) {
        while room > 0 {
            let Some(a) = self.queues[q].pop_front() else {
                break;
            };
            self.len -= 1;
            if a.deadline.is_some_and(|d| d <= now) {
                sel.expired.push(a);
            } else {
                sel.batch.push(a);
                room -= 1;
            }
        }
    }

    /// Removes every queued request whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<Admitted> {
        let mut expired = Vec::new();
        for queue in &mut self.queues {
            let before = queue.len();
            let mut kept = VecDeque::with_capacity(before);
            for a in queue.drain(..) {
                if a.deadline.is_some_and(|d| d <= now) {
                    expired.push(a);
                } else {
                    kept.push_back(a);
                }
            }
            *queue = kept;
        }
        self.len -= expired.len();
        expired
    }
}
