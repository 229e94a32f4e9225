//! The batching strategy seam: *when* a batch closes and *how many* requests each queue gives to
//! it. `State` owns the queues and enforces what no strategy may
//! break — never an empty batch, never more than the target size or the memory bound, expired
//! requests never batched, earliest expiry first within a queue — so a custom strategy can be
//! plugged in without touching the state or the task.
//!
//! Invariant of `PriorityStrategy` (the default): strict priority between tiers, except that a
//! lower tier holding `boost_threshold` requests, or whose oldest request waited `aging_limit`,
//! is owed slots of every batch while higher tiers are busy (no starvation): `boost_quota` of a
//! full-size batch, proportionally fewer (at least one) of a smaller one, and all boosted tiers
//! together never more than half the batch. The highest waiting tier so keeps at least half of
//! every batch of two or more: under a backlog every lower tier is boosted (long and aged), and
//! a small adaptive target (a batch of 6 against a quota of 8) would otherwise give the whole
//! batch to them. A batch of one goes by strict priority; a lower tier's requests are then
//! protected by the starvation bound alone (answered OVERLOADED, never silently held).

use tokio::time::Instant;

use super::policy::BatchPolicy;
use crate::config::StrategyKind;
use crate::pipeline::FlushReason;

/// The strategy `kind` names.
pub fn strategy_for(kind: StrategyKind) -> Box<dyn BatchStrategy> {
    match kind {
        StrategyKind::Priority => Box::new(PriorityStrategy),
        StrategyKind::Latency => Box::new(LatencyStrategy),
        StrategyKind::Memory => Box::new(MemoryStrategy),
    }
}

/// What a strategy sees of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub len: usize,
    /// Admission of the oldest queued request.
    pub oldest: Option<Instant>,
}

/// What a strategy sees of the whole state.
#[derive(Debug, Clone, Copy)]
pub struct QueueView<'a> {
    /// By queue index (the tier's index with priority queueing on; only `[0]` with it off).
    pub queues: [QueueStats; 4],
    pub len: usize,
    /// Tensor bytes queued.
    pub bytes: usize,
    /// Current cap on batch size (the adaptive target, or `max_batch_size`).
    pub target: usize,
    pub policy: &'a BatchPolicy,
}

impl QueueView<'_> {
    pub fn oldest(&self) -> Option<Instant> {
        self.queues.iter().filter_map(|q| q.oldest).min()
    }
}

/// Decides when batches close and which queues fill them.
pub trait BatchStrategy: Send {
    /// Why a batch should close at `now`, or `None` to keep waiting. Only asked when requests
    /// are queued.
    fn due(&self, view: &QueueView<'_>, now: Instant) -> Option<FlushReason>;
    /// When `due` may turn true without a new arrival (a wait running out), if ever.
    fn wake_at(&self, view: &QueueView<'_>) -> Option<Instant>;
    /// Requests to take from each queue for a batch of at most `room`. The state clamps the
    /// plan to the queue lengths and `room`, and fills what a plan leaves in priority order,
    /// so a plan can never produce an empty or oversized batch.
    fn plan(&self, view: &QueueView<'_>, room: usize, now: Instant) -> [usize; 4];
    /// Short name for logs and statistics.
    fn name(&self) -> &'static str;
}

/// The default: per-tier waits, an absolute timeout, strict priority with boost and aging.
#[derive(Debug, Default, Clone, Copy)]
pub struct PriorityStrategy;

impl PriorityStrategy {
    fn wait_of(policy: &BatchPolicy, queue: usize) -> std::time::Duration {
        policy.tier_wait[if policy.priority { queue } else { 0 }]
    }

    /// Whether queue `q` is owed a share of the next batch.
    fn boosted(view: &QueueView<'_>, q: usize, now: Instant) -> bool {
        let p = view.policy;
        let queue = view.queues[q];
        let higher_waiting = view.queues[..q].iter().any(|h| h.len > 0);
        let aged = queue
            .oldest
            .is_some_and(|o| now.saturating_duration_since(o) >= p.aging_limit);
        higher_waiting && (queue.len >= p.boost_threshold || aged)
    }
}

/// Slots owed to each boosted queue (`boosted[q]`) in a batch of `room`, by queue index: the
/// quota scaled to the batch (`boost_quota` of `max_batch_size`, at least one), evenly capped so
/// that together they take at most half the batch; when the cap leaves less than one slot each,
/// the queues whose oldest request waited longest get one. No allocation: it runs per batch.
fn boost_shares(view: &QueueView<'_>, boosted: [bool; 4], room: usize) -> [usize; 4] {
    let p = view.policy;
    let cap = room / 2;
    let count = boosted.iter().filter(|&&b| b).count();
    let mut shares = [0; 4];
    if count == 0 || cap == 0 {
        return shares;
    }
    let scaled = (p.boost_quota * room / p.max_batch_size.max(1)).max(1);
    let each = scaled.min(cap / count);
    if each > 0 {
        for q in 0..4 {
            if boosted[q] {
                shares[q] = each;
            }
        }
        return shares;
    }
    // Fewer slots than boosted queues: one each to the `cap` oldest.
    let mut by_age = [0, 1, 2, 3];
    by_age.sort_by_key(|&q| (!boosted[q], view.queues[q].oldest));
    for &q in by_age.iter().take(cap.min(count)) {
        shares[q] = 1;
    }
    shares
}

impl BatchStrategy for PriorityStrategy {
    fn due(&self, view: &QueueView<'_>, now: Instant) -> Option<FlushReason> {
        closes(view, now, self.wake_at(view))
    }

    fn wake_at(&self, view: &QueueView<'_>) -> Option<Instant> {
        // Fewer than min_batch_size queued: only the batch timeout, no tier wait.
        wake(view, view.len >= view.policy.min_batch_size)
    }

    fn plan(&self, view: &QueueView<'_>, room: usize, now: Instant) -> [usize; 4] {
        let mut take = [0; 4];
        let mut left = room;
        if view.policy.priority {
            let boosted = std::array::from_fn(|q| q > 0 && Self::boosted(view, q, now));
            let shares = boost_shares(view, boosted, room);
            for (q, share) in shares.into_iter().enumerate() {
                take[q] = share.min(view.queues[q].len).min(left);
                left -= take[q];
            }
        }
        for (q, slot) in take.iter_mut().enumerate() {
            let more = (view.queues[q].len - *slot).min(left);
            *slot += more;
            left -= more;
        }
        take
    }

    fn name(&self) -> &'static str {
        "priority"
    }
}

/// The batch timeout of the oldest request, or the first queue's tier wait running out sooner
/// when `tier_waits` count.
fn wake(view: &QueueView<'_>, tier_waits: bool) -> Option<Instant> {
    let p = view.policy;
    let mut at = view.oldest()? + p.batch_timeout;
    if tier_waits {
        for (q, stats) in view.queues.iter().enumerate() {
            if let Some(oldest) = stats.oldest {
                at = at.min(oldest + PriorityStrategy::wait_of(p, q));
            }
        }
    }
    Some(at)
}

/// Why a batch closes at `now` for reasons every strategy shares: full (size or bytes), the
/// batch timeout of its oldest request, or the strategy's own wake-up time (`wake_at`) passed.
fn closes(view: &QueueView<'_>, now: Instant, wake_at: Option<Instant>) -> Option<FlushReason> {
    if view.len >= view.target || view.bytes >= view.policy.max_batch_bytes {
        return Some(FlushReason::Full);
    }
    if now >= view.oldest()? + view.policy.batch_timeout {
        return Some(FlushReason::Timeout);
    }
    match wake_at {
        Some(at) if now >= at => Some(FlushReason::Wait),
        _ => None,
    }
}

/// Memory-aware (`batch_processing.strategy: memory`): the default's rules; what differs is what
/// a request weighs against `max_batch_bytes`: its tensors plus the model's measured working
/// memory per row (`BatchPolicy::row_overhead_bytes`, which the state adds for this strategy),
/// so a batch closes, full, before its activations would pass the bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStrategy;

impl BatchStrategy for MemoryStrategy {
    fn due(&self, view: &QueueView<'_>, now: Instant) -> Option<FlushReason> {
        PriorityStrategy.due(view, now)
    }

    fn wake_at(&self, view: &QueueView<'_>) -> Option<Instant> {
        PriorityStrategy.wake_at(view)
    }

    fn plan(&self, view: &QueueView<'_>, room: usize, now: Instant) -> [usize; 4] {
        PriorityStrategy.plan(view, room, now)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Latency first (`batch_processing.strategy: latency`): closes a batch the moment a critical
/// request is queued or any queued request's tier wait has run out, whatever `min_batch_size`
/// says (the batch timeout and fullness close it too), and fills it in strict tier order. Under
/// a backlog a lower tier then waits for the higher ones to empty; only the starvation bound
/// (an OVERLOADED reply) limits its wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct LatencyStrategy;

impl BatchStrategy for LatencyStrategy {
    fn due(&self, view: &QueueView<'_>, now: Instant) -> Option<FlushReason> {
        if view.len >= view.target || view.bytes >= view.policy.max_batch_bytes {
            return Some(FlushReason::Full);
        }
        if view.policy.priority && view.queues[0].len > 0 {
            return Some(FlushReason::Wait);
        }
        closes(view, now, self.wake_at(view))
    }

    fn wake_at(&self, view: &QueueView<'_>) -> Option<Instant> {
        wake(view, true)
    }

    fn plan(&self, view: &QueueView<'_>, room: usize, _now: Instant) -> [usize; 4] {
        let mut take = [0; 4];
        let mut left = room;
        for (q, slot) in take.iter_mut().enumerate() {
            *slot = view.queues[q].len.min(left);
            left -= *slot;
        }
        take
    }

    fn name(&self) -> &'static str {
        "latency"
    }
}

#[cfg(test)]
#[path = "strategy_tests.rs"]
mod tests;
