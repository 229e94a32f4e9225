//! Which tier topics the consumer reads now: while a higher tier has records waiting in Kafka,
//! lower tiers are held back (their partitions paused) so the broker's fetches go to the higher
//! tier and its records are read first. Pure state: the consumer feeds it each tier's lag and
//! in-flight count and applies the holds it returns.
//!
//! Invariants:
//! - the critical tier is never held, and a tier is held only while some higher tier *has a
//!   backlog*: its lag is at least `share`, or has been positive for at least [`SETTLE`] (one
//!   record fetched and about to be polled is not a backlog: holding for it would pause and
//!   re-fetch the lower tiers for every higher-tier request of a steady stream), or its lag is
//!   not known yet; and that tier
//!   is being read: a record of it was read, or it was assigned, within [`STALE`] (a lag that
//!   stays without records, such as a transaction marker at the end of a partition or a
//!   partition kbatch cannot fetch, holds nothing for long). A tier with no assigned partition
//!   has no lag: it cannot be read here anyway. A higher tier whose own queue is full (paused
//!   by backpressure) holds lower tiers back too: its records wait in Kafka behind a full
//!   queue, and the log end librdkafka reports for a paused partition stops moving, so its lag
//!   alone would understate them;
//! - a held tier keeps a small share in memory: it is read again once fewer than half of
//!   `share` of its records are in flight (read and not yet answered) and it has been held for
//!   [`SHARE_PERIOD`], and held again at `share`. (Each such read costs a fetch that is mostly
//!   thrown away when the tier is paused again, so it is rationed in time.) With `share` = the batcher's `priority_boost_threshold`, a held tier never queues
//!   enough to be boosted by length over the backlog of a higher tier, but always has requests
//!   queued for the batcher's aging rule, which puts them in a batch once they waited
//!   `batch_timeout`: a flood of higher-tier traffic slows a lower tier to that trickle, never
//!   stops it, and no request read is held in memory towards its starvation bound;
//! - an idle or lightly loaded system is never held: a lower tier with little in flight is
//!   always below its share.

use std::time::{Duration, Instant};

use crate::tier::Tier;

/// How long a higher tier's lag must stay positive before it holds lower tiers back.
pub const SETTLE: Duration = Duration::from_millis(20);
/// A higher tier that read nothing (and was not assigned) for this long holds nothing back.
pub const STALE: Duration = Duration::from_millis(500);
/// A held tier is read for its share at most once per this period.
pub const SHARE_PERIOD: Duration = Duration::from_secs(1);

/// Why a tier is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// This higher tier has records waiting in Kafka.
    Lag(Tier),
    /// This higher tier's lag is not known yet (no fetch answered since its assignment).
    LagUnknown(Tier),
    /// This higher tier's queue is full (its topic is paused by backpressure).
    QueueFull(Tier),
}

impl HoldReason {
    /// Label value for metrics and `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Lag(_) => "higher_tier_lag",
            HoldReason::LagUnknown(_) => "higher_tier_lag_unknown",
            HoldReason::QueueFull(_) => "higher_tier_queue_full",
        }
    }

    /// The higher tier that holds this one back.
    pub fn blocker(self) -> Tier {
        match self {
            HoldReason::Lag(t) | HoldReason::LagUnknown(t) | HoldReason::QueueFull(t) => t,
        }
    }
}

/// What the gate decides from, per tier (index = `Tier::index`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateInputs {
    /// Records waiting in Kafka for this instance: the sum over the tier's assigned partitions
    /// of (log end − next offset to read); `None` while a partition's log end or read position
    /// is unknown; `Some(0)` when none of its partitions is assigned here.
    pub lag: [Option<i64>; 4],
    /// Records read from the tier's topic and not yet answered.
    pub in_flight: [usize; 4],
    /// Records read from the tier's topic so far (a counter: the gate looks at its changes).
    pub read: [u64; 4],
    /// The tier's topic is paused because its queue is full.
    pub queue_full: [bool; 4],
}

/// One tier's state after a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierGateState {
    pub held: Option<HoldReason>,
    /// A higher tier is waiting, but this tier is read for its share.
    pub reading_for_share: bool,
}

/// A tier whose hold changed in the last decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateChange {
    pub tier: Tier,
    pub held: bool,
}

/// The hold state of the four tier topics. See the module invariants.
#[derive(Debug, Clone)]
pub struct TierGate {
    enabled: bool,
    /// A tier read for its share is held again at this many in flight.
    share: usize,
    state: [TierGateState; 4],
    /// Holds started so far, per tier.
    holds: [u64; 4],
    last: GateInputs,
    /// Per tier: since when its lag has been positive (or unknown).
    waiting_since: [Option<Instant>; 4],
    /// Per tier: when it last read a record or was assigned.
    progress_at: [Option<Instant>; 4],
    /// Per tier: when its current hold started.
    held_since: [Option<Instant>; 4],
}

impl TierGate {
    /// `enabled: false` never holds anything (the broker's fetch order decides).
    pub fn new(enabled: bool, share: usize) -> Self {
        Self {
            enabled,
            share: share.max(1),
            state: [TierGateState::default(); 4],
            holds: [0; 4],
            last: GateInputs::default(),
            waiting_since: [None; 4],
            progress_at: [None; 4],
            held_since: [None; 4],
        }
    }

    /// A reloaded `tier_aware_intake` / `priority_boost_threshold`: the next `decide` follows
    /// them (disabled: every hold is released there).
    pub fn configure(&mut self, enabled: bool, share: usize) {
        self.enabled = enabled;
        self.share = share.max(1);
    }

    /// Partitions of `tier` were assigned at `now`: its lag is worth waiting for (up to
    /// [`STALE`]) even before it reads anything.
    pub fn assigned(&mut self, tier: Tier, now: Instant) {
        self.progress_at[tier.index()] = Some(now);
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A tier read for its share is held again at this many in flight.
    pub fn share(&self) -> usize {
        self.share
    }

    /// A held tier is read again below this many in flight.
    fn read_below(&self) -> usize {
        self.share.div_ceil(2)
    }

    /// Whether `tier` is read only for its share: each record read from it may reach the
    /// share, so the caller decides again right away rather than at its next interval.
    pub fn reading_for_share(&self, tier: Tier) -> bool {
        self.state[tier.index()].reading_for_share
    }

    /// Whether `tier`'s partitions are to be paused by the gate.
    pub fn is_held(&self, tier: Tier) -> bool {
        self.state[tier.index()].held.is_some()
    }

    pub fn state(&self, tier: Tier) -> TierGateState {
        self.state[tier.index()]
    }

    /// Holds started for `tier` so far.
    pub fn holds(&self, tier: Tier) -> u64 {
        self.holds[tier.index()]
    }

    /// The inputs of the last decision.
    pub fn last_inputs(&self) -> &GateInputs {
        &self.last
    }

    /// Decides every tier's hold from `inputs` at `now`; returns the tiers whose hold changed.
    pub fn decide(&mut self, inputs: &GateInputs, now: Instant) -> Vec<GateChange> {
        let backlog = self.backlogs(inputs, now);
        self.last = *inputs;
        let mut changes = Vec::new();
        for tier in Tier::ALL {
            let t = tier.index();
            let was_held = self.state[t].held.is_some();
            let blocker = if self.enabled {
                backlog[..t].iter().find_map(|b| *b)
            } else {
                None
            };
            let in_flight = inputs.in_flight[t];
            let share_due = self.held_since[t]
                .is_none_or(|since| now.saturating_duration_since(since) >= SHARE_PERIOD);
            let held = match blocker {
                None => None,
                // Held tiers are read again below half the share (at most once a period); read
                // tiers are held from it.
                Some(_) if was_held && share_due && in_flight < self.read_below() => None,
                Some(_) if !was_held && in_flight < self.share => None,
                Some(reason) => Some(reason),
            };
            self.state[t] = TierGateState {
                held,
                reading_for_share: blocker.is_some() && held.is_none(),
            };
            if held.is_some() != was_held {
                if held.is_some() {
                    self.holds[t] += 1;
                    self.held_since[t] = Some(now);
                }
                changes.push(GateChange {
                    tier,
                    held: held.is_some(),
                });
            }
        }
        changes
    }

    /// Per tier: the hold reason it gives lower tiers, if it has a backlog now (see the module
    /// invariants). Updates the waiting and progress instants.
    fn backlogs(&mut self, inputs: &GateInputs, now: Instant) -> [Option<HoldReason>; 4] {
        let mut out = [None; 4];
        for tier in Tier::ALL {
            let t = tier.index();
            if inputs.read[t] != self.last.read[t] {
                self.progress_at[t] = Some(now);
            }
            if inputs.queue_full[t] {
                out[t] = Some(HoldReason::QueueFull(tier));
                continue;
            }
            let waiting = inputs.lag[t].is_none_or(|lag| lag > 0);
            if !waiting {
                self.waiting_since[t] = None;
                continue;
            }
            let since = *self.waiting_since[t].get_or_insert(now);
            let settled = now.saturating_duration_since(since) >= SETTLE;
            let fresh =
                self.progress_at[t].is_some_and(|at| now.saturating_duration_since(at) < STALE);
            if !fresh {
                continue;
            }
            out[t] = match inputs.lag[t] {
                None => Some(HoldReason::LagUnknown(tier)),
                Some(lag) if settled || lag >= self.share as i64 => Some(HoldReason::Lag(tier)),
                Some(_) => None,
            };
        }
        out
    }
}

#[cfg(test)]
#[path = "tier_gate_tests.rs"]
mod tests;
