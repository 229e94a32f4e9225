//! The offset tracker shared between the consumer thread (track, assign, revoke, commit), the
//! replier task (done) and the app (shutdown drain).
//!
//! Invariants: every change that can make a partition drained (a done that empties it, an
//! abandon, a revoke) wakes both kinds of waiters: the blocking one (a librdkafka rebalance
//! callback on the consumer thread, through the `Condvar`) and the async ones (tokio, through
//! `Notify`). The lock is held only for the tracker's O(log n) bookkeeping, never across a wait.
//!
//! Exactly-once commit gate: an exactly-once transaction checks that all its outcomes belong to
//! current assignments and closes the gate in one step ([`SharedTracker::begin_commit`]), and
//! opens it once the transaction is committed or aborted; a revoke first ends the partitions'
//! assignment and then waits for the gate to open ([`SharedTracker::wait_commit_finished`]).
//! So a transaction either saw the revoke (and aborts: the outcomes belong to the next owner)
//! or commits before the partitions are given up: outcomes of an old assignment are never
//! committed.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use tokio::sync::Notify;

use super::offsets::{OffsetTracker, PartitionKey, PartitionRead};
use crate::pipeline::Origin;
use crate::tier::Tier;

#[derive(Default)]
struct Inner {
    tracker: Mutex<OffsetTracker>,
    /// An exactly-once transaction passed the commit gate and has not ended yet. Guarded by
    /// `tracker`'s lock (changed only while it is held), waited for on `drained`.
    committing: std::sync::atomic::AtomicBool,
    drained: Condvar,
    drained_async: Notify,
    group: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

/// Cheaply cloneable handle to one [`OffsetTracker`].
#[derive(Debug, Clone, Default)]
pub struct SharedTracker {
    inner: Arc<Inner>,
}

impl SharedTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tracker itself, for several operations under one lock.
    fn lock(&self) -> MutexGuard<'_, OffsetTracker> {
        // Tracker operations cannot leave it half-updated, so a panic elsewhere while the lock
        // was held does not make the data unusable.
        self.inner
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.inner.drained.notify_all();
        self.inner.drained_async.notify_waiters();
    }

    pub fn assign(&self, tier: Tier, partition: i32) -> u64 {
        self.lock().assign(tier, partition)
    }

    pub fn revoke(&self, tier: Tier, partition: i32) -> Option<i64> {
        let out = self.lock().revoke(tier, partition);
        self.wake();
        out
    }

    pub fn track(&self, tier: Tier, partition: i32, offset: i64) -> Option<u64> {
        self.lock().track(tier, partition, offset)
    }

    /// See [`OffsetTracker::done`].
    pub fn done(&self, origin: &Origin) -> bool {
        let finished = self.lock().finish(origin);
        if finished == Some(true) {
            self.wake();
        }
        finished.is_some()
    }

    /// See [`OffsetTracker::abandon`].
    pub fn abandon(&self, origin: &Origin) -> bool {
        let out = self.lock().abandon(origin);
        self.wake();
        out
    }

    pub fn committable(&self) -> Vec<(Tier, i32, i64)> {
        self.lock().committable()
    }

    /// See [`OffsetTracker::commit_failed`].
    pub fn commit_failed(&self, offsets: &[(Tier, i32, i64)]) {
        self.lock().commit_failed(offsets);
    }

    /// See [`OffsetTracker::reads`].
    pub fn reads(&self) -> Vec<PartitionRead> {
        self.lock().reads()
    }

    pub fn positions(&self) -> Vec<(Tier, i32, i64)> {
        self.lock().positions()
    }

    /// See [`OffsetTracker::is_current`].
    pub fn is_current(&self, origin: &Origin) -> bool {
        self.lock().is_current(origin)
    }

    /// The exactly-once commit gate (see the module docs): when every one of `origins` belongs
    /// to a current assignment, closes the gate and returns the commit offsets of
    /// [`OffsetTracker::positions_if_done`]; else leaves it open and returns the stale origins.
    /// Every `Ok` must be followed by [`SharedTracker::end_commit`].
    pub fn begin_commit(&self, origins: &[Origin]) -> Result<Vec<(Tier, i32, i64)>, Vec<Origin>> {
        let guard = self.lock();
        let stale: Vec<Origin> = origins
            .iter()
            .filter(|o| !guard.is_current(o))
            .copied()
            .collect();
        if !stale.is_empty() {
            return Err(stale);
        }
        self.inner
            .committing
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(guard.positions_if_done(origins))
    }

    /// Opens the commit gate: the transaction committed or aborted.
    pub fn end_commit(&self) {
        let _guard = self.lock();
        self.inner
            .committing
            .store(false, std::sync::atomic::Ordering::Release);
        self.inner.drained.notify_all();
    }

    /// Blocks the calling thread (the rebalance callback) until no transaction is past the
    /// commit gate or `timeout` passes; returns whether the gate is open.
    pub fn wait_commit_finished(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        while self
            .inner
            .committing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .inner
                .drained
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// See [`OffsetTracker::positions_if_done`].
    pub fn positions_if_done(&self, origins: &[Origin]) -> Vec<(Tier, i32, i64)> {
        self.lock().positions_if_done(origins)
    }

    /// The consumer's group membership after its last rebalance (exactly-once transactions
    /// commit offsets under it, so a fenced member's commit fails).
    pub fn set_group(&self, meta: Option<ConsumerGroupMetadata>) {
        *self
            .inner
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = meta.map(Arc::new);
    }

    pub fn group(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        self.inner
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn pending(&self, tier: Tier, partition: i32) -> usize {
        self.lock().pending(tier, partition)
    }

    pub fn total_pending(&self) -> usize {
        self.lock().total_pending()
    }

    pub fn assigned(&self) -> Vec<PartitionKey> {
        self.lock().assigned()
    }

    /// Blocks the calling thread until none of `partitions` has pending records or `timeout`
    /// passes; returns whether they drained. For the rebalance callback, which librdkafka runs
    /// on the consumer's polling thread (never call it from an async task).
    pub fn wait_until_drained(&self, partitions: &[PartitionKey], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            if partitions.iter().all(|&(t, p)| guard.pending(t, p) == 0) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .inner
                .drained
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until no record is pending anywhere or `timeout` passes; returns whether it
    /// drained. For tokio tasks.
    pub async fn wait_all_done(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.drained_async.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the check and the await is kept.
            notified.as_mut().enable();
            if self.total_pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.total_pending() == 0;
            }
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
