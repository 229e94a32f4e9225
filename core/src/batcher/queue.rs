//! One tier's queue: requests ordered earliest-expiry-first, with an arrival index so the oldest
//! request (which starts the tier's wait) is found without a scan.
//!
//! Invariants: `by_expiry` and `by_arrival` always hold the same requests; a request's expiry is
//! its deadline, or its admission plus the starvation bound when that comes first (requests
//! without a deadline therefore keep arrival order among themselves); `bytes` is the sum of the
//! queued tensors' sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::pipeline::Admitted;

/// Why a queued request expires at its expiry instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Its own deadline (`deadline_ms` or `timeout_ms`): DEADLINE_EXCEEDED.
    Deadline,
    /// It waited the starvation bound without being batched: OVERLOADED.
    Starved,
}

/// A queued request with the instant it must leave the queue by.
#[derive(Debug)]
pub struct Entry {
    pub admitted: Admitted,
    pub expires: Option<(Instant, Expiry)>,
}

impl Entry {
    pub fn new(admitted: Admitted, starvation_bound: Option<Duration>) -> Self {
        let starved = starvation_bound
            .and_then(|b| admitted.admitted_at.checked_add(b))
            .map(|at| (at, Expiry::Starved));
        let deadline = admitted.deadline.map(|at| (at, Expiry::Deadline));
        let expires = match (deadline, starved) {
            (Some(d), Some(s)) => Some(if d.0 <= s.0 { d } else { s }),
            (d, s) => d.or(s),
        };
        Self { admitted, expires }
    }

    /// Bytes of tensor data the request adds to a batch.
    pub fn bytes(&self) -> usize {
        let tensors = self.admitted.request.inputs.tensors();
        tensors.iter().map(|t| t.data.byte_len()).sum()
    }
}

/// Expiry-ordered key: `(never expires, expiry, seq)`, so entries that never expire sort last
/// (by arrival) although `None < Some` for `Option`.
type Key = (bool, Option<Instant>, u64);

#[derive(Debug, Default)]
pub struct TierQueue {
    by_expiry: BTreeMap<Key, Entry>,
    /// `(admitted_at, seq)` of every queued request.
    by_arrival: BTreeSet<(Instant, u64)>,
    bytes: usize,
}

fn key(e: &Entry, seq: u64) -> Key {
    let at = e.expires.map(|(at, _)| at);
    (at.is_none(), at, seq)
}

impl TierQueue {
    pub fn len(&self) -> usize {
        self.by_expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_expiry.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `e`; `seq` is unique and increasing across the state (ties keep arrival order).
    pub fn push(&mut self, e: Entry, seq: u64) {
        self.bytes += e.bytes();
        self.by_arrival.insert((e.admitted.admitted_at, seq));
        self.by_expiry.insert(key(&e, seq), e);
    }

    /// Admission instant of the oldest queued request.
    pub fn oldest(&self) -> Option<Instant> {
        self.by_arrival.first().map(|(at, _)| *at)
    }

    /// The earliest expiry in the queue.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry
            .first_key_value()
            .and_then(|(_, e)| e.expires.map(|(at, _)| at))
    }

    /// Bytes of the request that would leave next.
    pub fn front_bytes(&self) -> Option<usize> {
        self.by_expiry.first_key_value().map(|(_, e)| e.bytes())
    }

    /// Removes the request with the earliest expiry.
    pub fn pop(&mut self) -> Option<Entry> {
        let ((_, _, seq), e) = self.by_expiry.pop_first()?;
        self.by_arrival.remove(&(e.admitted.admitted_at, seq));
        self.bytes -= e.bytes();
        Some(e)
    }

    /// Removes every request whose expiry is at or before `at`, earliest first.
    pub fn pop_expired(&mut self, at: Instant, out: &mut Vec<Entry>) {
        while self.next_expiry().is_some_and(|x| x <= at) {
            if let Some(e) = self.pop() {
                out.push(e);
            }
        }
    }

    /// The queued requests, earliest expiry first.
    pub fn iter(&self) -> impl Iterator<Item = &Admitted> {
        self.by_expiry.values().map(|e| &e.admitted)
    }
}
