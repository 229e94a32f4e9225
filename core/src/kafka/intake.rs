//! Hand-off of admitted requests to the four tier channels, with backpressure by pausing (or,
//! with `when_queue_full: reject`, load shedding: a request finding its channel full is handed
//! back as `Offer::Full` for an OVERLOADED reply, and nothing is stashed or paused).
//!
//! Invariant: an admitted request is never dropped here while its partition is assigned: when
//! its tier channel is full it waits in that tier's stash (FIFO, so a tier's order is kept), and
//! the topic it came from is reported for pausing until no stashed record of it is left. Only a
//! revoke or shutdown removes stashed records, and it returns their origins so the caller can
//! abandon them in the offset tracker (never committed past).
//!
//! A paused topic is resumed once none of its records is stashed *and* the channel it last
//! overflowed has half its capacity free: without that hysteresis a saturated tier would pause
//! and resume its topic on every record, and each resume makes librdkafka fetch again.

use std::collections::VecDeque;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::offsets::PartitionKey;
use crate::config::QueueFull;
use crate::pipeline::{Admitted, Origin};
use crate::tier::Tier;

/// Result of offering one request.
#[derive(Debug)]
pub enum Offer {
    /// In its tier channel.
    Sent,
    /// Kept in its tier's stash; the caller pauses topics per [`Intake::pauses_due`].
    Stashed,
    /// Rejecting mode, channel full: handed back for an OVERLOADED reply.
    Full(Box<Admitted>),
    /// The channel's receiver is gone (the pipeline is shutting down): the request is handed
    /// back so the caller can abandon its origin.
    Closed(Box<Admitted>),
}

/// Per-tier senders plus the stash of requests they had no room for.
#[derive(Debug)]
pub struct Intake {
    senders: Option<[Sender<Admitted>; 4]>,
    /// By served tier.
    stash: [VecDeque<Admitted>; 4],
    /// Stashed records per topic tier (the topic they were read from).
    held: [usize; 4],
    /// Topic tiers whose assigned partitions are paused.
    paused: [bool; 4],
    /// Per topic tier: the served tier whose full channel last made it stash.
    blocked_on: [usize; 4],
    /// `when_queue_full: reject`: hand back instead of stashing.
    reject_when_full: bool,
}

impl Intake {
    pub fn new(senders: [Sender<Admitted>; 4], when_full: QueueFull) -> Self {
        Self {
            senders: Some(senders),
            stash: Default::default(),
            held: [0; 4],
            paused: [false; 4],
            blocked_on: [0; 4],
            reject_when_full: when_full == QueueFull::Reject,
        }
    }

    /// Sends `a` to its tier channel, or stashes it behind earlier stashed requests of its tier.
    pub fn offer(&mut self, a: Admitted) -> Offer {
        let tier = a.tier.index();
        if !self.stash[tier].is_empty() {
            self.push_stash(a);
            return Offer::Stashed;
        }
        let Some(senders) = &self.senders else {
            return Offer::Closed(Box::new(a));
        };
        match senders[tier].try_send(a) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Full(a)) if self.reject_when_full => Offer::Full(Box::new(a)),
            Err(TrySendError::Full(a)) => {
                self.push_stash(a);
                Offer::Stashed
            }
            Err(TrySendError::Closed(a)) => Offer::Closed(Box::new(a)),
        }
    }

    fn push_stash(&mut self, a: Admitted) {
        self.held[a.origin.topic_tier.index()] += 1;
        self.blocked_on[a.origin.topic_tier.index()] = a.tier.index();
        self.stash[a.tier.index()].push_back(a);
    }

    fn pop_stash(&mut self, tier: usize) -> Option<Admitted> {
        let a = self.stash[tier].pop_front()?;
        self.held[a.origin.topic_tier.index()] -= 1;
        Some(a)
    }

    pub fn has_stash(&self) -> bool {
        self.stash.iter().any(|s| !s.is_empty())
    }

    /// Whether the caller must keep calling `flush` and `resumes_due`: something is stashed or a
    /// topic is paused.
    pub fn needs_attention(&self) -> bool {
        self.has_stash() || self.paused.iter().any(|&p| p)
    }

    /// Whether the channel of served tier `tier` is at least half empty (or gone).
    fn has_room(&self, tier: usize) -> bool {
        self.senders.as_ref().is_none_or(|s| {
            let tx = &s[tier];
            tx.capacity() * 2 >= tx.max_capacity()
        })
    }

    /// Moves stashed requests into their channels while there is room. Returns the number sent,
    /// or `Err(tier)` when a channel is closed (its stash is left for `drain_all`).
    pub fn flush(&mut self) -> Result<usize, Tier> {
        let mut sent = 0;
        for tier in 0..4 {
            while let Some(a) = self.pop_stash(tier) {
                let Some(senders) = &self.senders else {
                    return Err(Tier::ALL[tier]);
                };
                match senders[tier].try_send(a) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(a) | TrySendError::Closed(a)) => {
                        let closed = senders[tier].is_closed();
                        self.held[a.origin.topic_tier.index()] += 1;
                        self.stash[tier].push_front(a);
                        if closed {
                            return Err(Tier::ALL[tier]);
                        }
                        break;
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Topic tiers that now hold stashed records but are not paused yet; marks them paused.
    pub fn pauses_due(&mut self) -> Vec<Tier> {
        self.flip(|me, t| me.held[t] > 0 && !me.paused[t])
    }

    /// Paused topic tiers with no stashed record left and room in the channel they overflowed;
    /// marks them running.
    pub fn resumes_due(&mut self) -> Vec<Tier> {
        self.flip(|me, t| me.held[t] == 0 && me.paused[t] && me.has_room(me.blocked_on[t]))
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

    /// Whether partitions of the topic of `tier` are to be paused (also when newly assigned).
    pub fn is_paused(&self, tier: Tier) -> bool {
        self.paused[tier.index()]
    }

    /// Removes the stashed requests read from `partitions` (being revoked); returns their
    /// origins. Pause flags are left to `resumes_due`.
    pub fn drop_partitions(&mut self, partitions: &[PartitionKey]) -> Vec<Origin> {
        let mut dropped = Vec::new();
        for stash in &mut self.stash {
            stash.retain(|a| {
                let o = a.origin;
                let revoked = partitions.contains(&(o.topic_tier, o.partition));
                if revoked {
                    dropped.push(o);
                }
                !revoked
            });
        }
        for o in &dropped {
            self.held[o.topic_tier.index()] -= 1;
        }
        dropped
    }

    /// Empties every stash and drops the senders, which tells the batcher no more requests come.
    /// Returns the origins of the stashed requests.
    pub fn close(&mut self) -> Vec<Origin> {
        self.senders = None;
        let mut dropped = Vec::new();
        for tier in 0..4 {
            while let Some(a) = self.pop_stash(tier) {
                dropped.push(a.origin);
            }
        }
        dropped
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
