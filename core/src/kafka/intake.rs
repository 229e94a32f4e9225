//! Hand-off of everything the consumer thread produces: admitted requests to the four tier
//! channels and immediate outcomes (dead letters, error replies) to the replier's channel, with
//! backpressure by pausing topics instead of blocking the polling thread (or, with
//! `when_queue_full: reject`, load shedding: a request finding its channel full is handed back
//! as `Offer::Full` for an OVERLOADED reply).
//!
//! Invariants:
//! - nothing handed in is dropped while its partition is assigned: a request whose tier channel
//!   is full waits in that tier's stash (FIFO, so a tier's order is kept), an outcome whose
//!   channel is full waits in the outcome backlog; only a revoke or shutdown removes them, and
//!   it returns their origins so the caller can abandon them (never committed past);
//! - backpressure never pauses a topic for another tier's queue: a topic is paused only while
//!   records read from it wait for their *own* tier's channel, or while the outcome backlog
//!   (which every topic feeds) is not empty. A request demoted to a lower tier (its `priority`)
//!   waits in that tier's stash without pausing its source topic, at most a channel's capacity
//!   of them per tier; past that it is handed back as `Offer::Full` for an OVERLOADED reply, so
//!   a producer on a high tier cannot hold that tier's traffic to a lower tier's rate;
//! - the polling thread never waits here: every call returns at once.
//!
//! A paused topic is resumed once none of its records is stashed, the outcome backlog is empty
//! *and* the channel it last overflowed has half its capacity free: without that hysteresis a
//! saturated tier would pause and resume its topic on every record, and each resume makes
//! librdkafka fetch again.

use std::collections::VecDeque;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::offsets::PartitionKey;
use crate::config::QueueFull;
use crate::pipeline::{Admitted, Origin, Outcome};
use crate::tier::Tier;

/// Result of offering one request.
#[derive(Debug)]
pub enum Offer {
    /// In its tier channel.
    Sent,
    /// Kept in its tier's stash; the caller pauses topics per [`Intake::pauses_due`].
    Stashed,
    /// No room, and waiting is not allowed (rejecting mode, or a demoted request finding its
    /// tier's stash at its bound): handed back for an OVERLOADED reply.
    Full(Box<Admitted>),
    /// The channel's receiver is gone (the pipeline is shutting down): the request is handed
    /// back so the caller can abandon its origin.
    Closed(Box<Admitted>),
}

/// Result of offering one immediate outcome.
#[derive(Debug)]
pub enum OutcomeOffer {
    /// In the replier's channel.
    Sent,
    /// Kept in the outcome backlog; every topic is paused until it is flushed.
    Queued,
    /// The replier is gone: handed back so the caller can abandon its origin.
    Closed(Box<Outcome>),
}

/// A stashed request and whether it counts against its source topic (not demoted) or against
/// the demoted bound of its tier.
#[derive(Debug)]
struct Stashed {
    admitted: Admitted,
    demoted: bool,
}

/// Per-tier senders, the replier's sender, and what they had no room for.
#[derive(Debug)]
pub struct Intake {
    senders: Option<[Sender<Admitted>; 4]>,
    outcomes: Option<Sender<Outcome>>,
    /// By served tier.
    stash: [VecDeque<Stashed>; 4],
    /// Outcomes waiting for room in the replier's channel, in order.
    backlog: VecDeque<Outcome>,
    /// Stashed records per topic tier (the topic they were read from), demoted ones excluded.
    held: [usize; 4],
    /// Stashed demoted records per served tier.
    demoted: [usize; 4],
    /// Topic tiers whose assigned partitions are paused.
    paused: [bool; 4],
    /// Per topic tier: the served tier whose full channel last made it stash.
    blocked_on: [Option<usize>; 4],
    /// `when_queue_full: reject`: hand back instead of stashing.
    reject_when_full: bool,
}

impl Intake {
    pub fn new(
        senders: [Sender<Admitted>; 4],
        outcomes: Sender<Outcome>,
        when_full: QueueFull,
    ) -> Self {
        Self {
            senders: Some(senders),
            outcomes: Some(outcomes),
            stash: Default::default(),
            backlog: VecDeque::new(),
            held: [0; 4],
            demoted: [0; 4],
            paused: [false; 4],
            blocked_on: [None; 4],
            reject_when_full: when_full == QueueFull::Reject,
        }
    }

    /// Sends `a` to its tier channel, or stashes it behind earlier stashed requests of its tier.
    pub fn offer(&mut self, a: Admitted) -> Offer {
        let tier = a.tier.index();
        let Some(senders) = &self.senders else {
            return Offer::Closed(Box::new(a));
        };
        let a = if self.stash[tier].is_empty() {
            match senders[tier].try_send(a) {
                Ok(()) => return Offer::Sent,
                Err(TrySendError::Closed(a)) => return Offer::Closed(Box::new(a)),
                Err(TrySendError::Full(a)) => a,
            }
        } else {
            a
        };
        if self.reject_when_full {
            return Offer::Full(Box::new(a));
        }
        let demoted = a.tier != a.origin.topic_tier;
        if demoted && self.demoted[tier] >= senders[tier].max_capacity() {
            return Offer::Full(Box::new(a));
        }
        self.push_stash(Stashed {
            admitted: a,
            demoted,
        });
        Offer::Stashed
    }

    /// Sends `outcome` to the replier, or queues it behind earlier queued outcomes.
    pub fn offer_outcome(&mut self, outcome: Outcome) -> OutcomeOffer {
        let Some(tx) = &self.outcomes else {
            return OutcomeOffer::Closed(Box::new(outcome));
        };
        if !self.backlog.is_empty() {
            self.backlog.push_back(outcome);
            return OutcomeOffer::Queued;
        }
        match tx.try_send(outcome) {
            Ok(()) => OutcomeOffer::Sent,
            Err(TrySendError::Full(outcome)) => {
                self.backlog.push_back(outcome);
                OutcomeOffer::Queued
            }
            Err(TrySendError::Closed(outcome)) => OutcomeOffer::Closed(Box::new(outcome)),
        }
    }

    fn push_stash(&mut self, s: Stashed) {
        let (topic, served) = (
            s.admitted.origin.topic_tier.index(),
            s.admitted.tier.index(),
        );
        if s.demoted {
            self.demoted[served] += 1;
        } else {
            self.held[topic] += 1;
            self.blocked_on[topic] = Some(served);
        }
        self.stash[served].push_back(s);
    }

    fn pop_stash(&mut self, tier: usize) -> Option<Stashed> {
        let s = self.stash[tier].pop_front()?;
        self.uncount(&s);
        Some(s)
    }

    fn uncount(&mut self, s: &Stashed) {
        if s.demoted {
            self.demoted[s.admitted.tier.index()] -= 1;
        } else {
            self.held[s.admitted.origin.topic_tier.index()] -= 1;
        }
    }

    pub fn has_stash(&self) -> bool {
        self.stash.iter().any(|s| !s.is_empty())
    }

    /// Outcomes waiting for the replier.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Whether the caller must keep calling `flush` and `resumes_due`: something is stashed or
    /// queued, or a topic is paused.
    pub fn needs_attention(&self) -> bool {
        self.has_stash() || !self.backlog.is_empty() || self.paused.iter().any(|&p| p)
    }

    /// Whether the channel of served tier `tier` is at least half empty (or gone).
    fn has_room(&self, tier: usize) -> bool {
        self.senders.as_ref().is_none_or(|s| {
            let tx = &s[tier];
            tx.capacity() * 2 >= tx.max_capacity()
        })
    }

    /// Moves queued outcomes and stashed requests into their channels while there is room.
    /// Returns the number sent, or `Err(Closed)` when a channel is closed (what waits is left
    /// for `close`).
    pub fn flush(&mut self) -> Result<usize, Closed> {
        let mut sent = self.flush_outcomes()?;
        for tier in 0..4 {
            while let Some(s) = self.pop_stash(tier) {
                let Some(senders) = &self.senders else {
                    self.push_front(tier, s);
                    return Err(Closed::Tier(Tier::ALL[tier]));
                };
                let Stashed { admitted, demoted } = s;
                match senders[tier].try_send(admitted) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(admitted) | TrySendError::Closed(admitted)) => {
                        let closed = senders[tier].is_closed();
                        self.push_front(tier, Stashed { admitted, demoted });
                        if closed {
                            return Err(Closed::Tier(Tier::ALL[tier]));
                        }
                        break;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Moves queued outcomes into the replier's channel while there is room; returns how many.
    pub fn flush_outcomes(&mut self) -> Result<usize, Closed> {
        let mut sent = 0;
        let Some(tx) = &self.outcomes else {
            return Ok(0);
        };
        while let Some(outcome) = self.backlog.pop_front() {
            match tx.try_send(outcome) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(outcome)) => {
                    self.backlog.push_front(outcome);
                    break;
                }
                Err(TrySendError::Closed(outcome)) => {
                    self.backlog.push_front(outcome);
                    return Err(Closed::Outcomes);
                }
            }
        }
        Ok(sent)
    }

    fn push_front(&mut self, tier: usize, s: Stashed) {
        if s.demoted {
            self.demoted[tier] += 1;
        } else {
            self.held[s.admitted.origin.topic_tier.index()] += 1;
        }
        self.stash[tier].push_front(s);
    }

    /// Topic tiers that now must be paused but are not yet; marks them paused.
    pub fn pauses_due(&mut self) -> Vec<Tier> {
        self.flip(|me, t| !me.paused[t] && (me.held[t] > 0 || !me.backlog.is_empty()))
    }

    /// Paused topic tiers with no stashed record left, no outcome queued and room in the
    /// channel they overflowed; marks them running.
    pub fn resumes_due(&mut self) -> Vec<Tier> {
        let resumed = self.flip(|me, t| {
            me.paused[t]
                && me.held[t] == 0
                && me.backlog.is_empty()
                && me.blocked_on[t].is_none_or(|served| me.has_room(served))
        });
        for t in &resumed {
            self.blocked_on[t.index()] = None;
        }
        resumed
    }

    fn flip(&mut self, select: impl Fn(&Self, usize) -> bool) -> Vec<Tier> {
        let mut out = Vec::new();
        for t in Tier::ALL {
            if select(self, t.index()) {
                self.paused[t.index()] = !self.paused[t.index()];
                out.push(t);
            }
        }
        out
    }

    /// By `Tier::index`: whether backpressure wants the tier's topic paused (the consumer also
    /// pauses it for the tier gate).
    pub fn paused(&self) -> [bool; 4] {
        self.paused
    }

    /// Removes the stashed requests and queued outcomes read from `partitions` (being
    /// revoked); returns their origins. Pause flags are left to `resumes_due`.
    pub fn drop_partitions(&mut self, partitions: &[PartitionKey]) -> Vec<Origin> {
        let revoked = |o: &Origin| partitions.contains(&(o.topic_tier, o.partition));
        let mut dropped = Vec::new();
        for tier in 0..4 {
            let (gone, kept): (VecDeque<Stashed>, VecDeque<Stashed>) =
                std::mem::take(&mut self.stash[tier])
                    .into_iter()
                    .partition(|s| revoked(&s.admitted.origin));
            self.stash[tier] = kept;
            for s in gone {
                self.uncount(&s);
                dropped.push(s.admitted.origin);
            }
        }
        self.backlog.retain(|outcome| {
            let origin = outcome.origin();
            if revoked(&origin) {
                dropped.push(origin);
                return false;
            }
            true
        });
        dropped
    }

    /// Empties every stash and the backlog and drops the senders, which tells the batcher and
    /// the replier that no more work comes. Returns the origins of what waited.
    pub fn close(&mut self) -> Vec<Origin> {
        self.senders = None;
        self.outcomes = None;
        let mut dropped: Vec<Origin> = self.backlog.drain(..).map(|o| o.origin()).collect();
        for tier in 0..4 {
            while let Some(s) = self.pop_stash(tier) {
                dropped.push(s.admitted.origin);
            }
        }
        dropped
    }
}

/// Which channel's receiver is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Tier(Tier),
    Outcomes,
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
