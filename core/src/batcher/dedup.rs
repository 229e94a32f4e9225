//! Request deduplication: identical inputs for the same model within a TTL are computed once,
//! and every requester gets its own reply (the key is `pipeline::dedup_key`). Pure state: no I/O,
//! no clock of its own (the caller passes `now`).
//!
//! Invariant: every admitted request leaves exactly once: as `Run` or `Cached` from `admit`, or
//! later, as a follower, from `complete`, `fail` or `cancel_expired`.
//!
//! Rules:
//! - **Leader and followers.** The first request for a key without a fresh result runs
//!   (`Admit::Run`); identical requests arriving while it is queued or running join it
//!   (`Admit::Joined`) and `complete` returns them to be answered with the leader's outputs.
//! - **The caller's part.** Every `Run` is followed by exactly one `complete` (it ran) or `fail`
//!   (it failed, or was answered without running: deadline, overload) for its key. A `complete`
//!   or `fail` that finds nothing pending is harmless: `complete` only stores the result.
//! - **Failures are not shared.** `fail` caches nothing and hands the followers back in arrival
//!   order; the caller admits them again, so the first becomes the new leader and the rest join
//!   it. A failure may be the leader's own (its deadline), not the input's.
//! - **Cross-tier.** A request joins a pending leader only if that leader is at least as urgent
//!   (`leader.tier <= follower.tier`, `Critical` first). A more urgent request runs itself and
//!   becomes the key's leader tier; whichever leader finishes first answers or hands back every
//!   follower, so a follower never waits on a leader less urgent than itself.
//! - **Deadlines.** A follower whose own deadline passes while it waits leaves through
//!   `cancel_expired` (DEADLINE_EXCEEDED), so a slow leader never holds it past its deadline.
//! - **Memory.** At most `cache_size` results are kept. Followers are not bounded here: each one
//!   is an admitted request counted against the caller's queue bound, like a queued request.
//!   Expired results also go when the cache is next used; with a `purge_interval` the caller
//!   purges them at `next_purge` too, so an idle instance does not hold stale results for good.
//! - **Disabled.** `admit` returns `Run` and nothing is stored or counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::pipeline::{Admitted, DedupKey};
use crate::tensor::Tensor;
use crate::tier::Tier;

/// The settings a `Coalescer` runs with (the `deduplication` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupParams {
    pub enabled: bool,
    /// Most results kept for reuse.
    pub cache_size: usize,
    /// How long a result may be reused after it was computed.
    pub ttl: Duration,
    /// `resource_management.enable_memory_cleanup` with `cleanup_interval_seconds`: how often
    /// expired results are released even when nothing uses the cache (`None`: only on use).
    pub purge_interval: Option<Duration>,
}

impl DedupParams {
    pub fn from_config(config: &Config) -> Self {
        let d = &config.deduplication;
        Self {
            enabled: d.enable_deduplication,
            cache_size: d.deduplication_cache_size,
            ttl: d.ttl(),
            purge_interval: config.resource_management.cleanup_interval(),
        }
    }
}

/// What to do with an admitted request.
#[derive(Debug)]
pub enum Admit {
    /// The leader: compute it (queue it) and later call `complete` or `fail` with its key.
    Run(Admitted),
    /// Answer it now with a result computed within the TTL.
    Cached(Admitted, Arc<[Tensor]>),
    /// An identical request is queued or running; this one waits for its result.
    Joined,
}

/// What one `purge` released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired results dropped.
    pub results: usize,
    /// Their output tensors' value bytes.
    pub bytes: usize,
}

/// Counters (totals since start) and gauges (`cached`, `pending`, `waiting`: now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that joined a pending leader.
    pub joins: u64,
    /// Requests admitted to run while deduplication was on.
    pub leaders: u64,
    /// Results dropped before their TTL to respect `cache_size` (or because dedup was disabled).
    pub evictions: u64,
    /// Results dropped because their TTL passed.
    pub expired: u64,
    /// Followers removed by `cancel_expired` because their own deadline passed.
    pub cancelled: u64,
    /// Results held.
    pub cached: usize,
    /// Keys with a leader queued or running.
    pub pending: usize,
    /// Followers waiting for a leader.
    pub waiting: usize,
}

#[derive(Debug)]
struct CachedResult {
    outputs: Arc<[Tensor]>,
    stored_at: Instant,
    /// Position in `Coalescer::by_age`.
    seq: u64,
}

#[derive(Debug)]
struct Follower {
    seq: u64,
    admitted: Admitted,
}

#[derive(Debug)]
struct Pending {
    /// The most urgent tier among the key's leaders: who may join.
    tier: Tier,
    /// In arrival order, so a handed-back first follower leads again.
    followers: Vec<Follower>,
}

/// Deduplication state: cached results and pending leaders with their followers.
#[derive(Debug)]
pub struct Coalescer {
    params: DedupParams,
    results: HashMap<DedupKey, CachedResult>,
    /// Cached keys in store order. Oldest-first eviction rather than LRU: with one TTL for all,
    /// the oldest result is also the next to expire, so one ordered index serves both, and a hot
    /// result is recomputed once per TTL anyway.
    by_age: BTreeMap<u64, DedupKey>,
    pending: HashMap<DedupKey, Pending>,
    /// `(deadline, follower seq, key)` of every waiting follower that has a deadline.
    deadlines: BTreeSet<(Instant, u64, DedupKey)>,
    waiting: usize,
    next_seq: u64,
    /// When expired results were last purged, or when the cache last went from empty to
    /// holding a result: `next_purge` counts the interval from it.
    purged_at: Option<Instant>,
    /// Counters only; the gauges are filled in by `stats`.
    counters: DedupStats,
}

impl Coalescer {
    pub fn new(params: DedupParams) -> Self {
        Self {
            params,
            results: HashMap::new(),
            by_age: BTreeMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            waiting: 0,
            next_seq: 0,
            purged_at: None,
            counters: DedupStats::default(),
        }
    }

    pub fn params(&self) -> DedupParams {
        self.params
    }

    /// Hot reload. A smaller cache evicts its oldest results; disabling drops them all. Pending
    /// followers stay: their leaders' `complete` or `fail` still returns them.
    pub fn set_params(&mut self, params: DedupParams) {
        self.params = params;
        let limit = if params.enabled { params.cache_size } else { 0 };
        self.evict_to(limit);
    }

    /// Decides how `admitted` (whose input hashes to `key`) is served. See the module rules.
    pub fn admit(&mut self, admitted: Admitted, key: DedupKey, now: Instant) -> Admit {
        if !self.params.enabled {
            return Admit::Run(admitted);
        }
        self.expire(now);
        let ttl = self.params.ttl;
        let hit = self
            .results
            .get(&key)
            .filter(|r| fresh(r.stored_at, now, ttl));
        if let Some(hit) = hit {
            self.counters.hits += 1;
            return Admit::Cached(admitted, Arc::clone(&hit.outputs));
        }
        let seq = self.take_seq();
        match self.pending.get_mut(&key) {
            Some(p) if p.tier <= admitted.tier => {
                if let Some(at) = admitted.deadline {
                    self.deadlines.insert((at, seq, key));
                }
                p.followers.push(Follower { seq, admitted });
                self.waiting += 1;
                self.counters.joins += 1;
                Admit::Joined
            }
            // A less urgent leader is pending: run this one too, and let it set who may join.
            Some(p) => {
                p.tier = admitted.tier;
                self.counters.leaders += 1;
                Admit::Run(admitted)
            }
            None => {
                let followers = Vec::new();
                self.pending.insert(
                    key,
                    Pending {
                        tier: admitted.tier,
                        followers,
                    },
                );
                self.counters.leaders += 1;
                Admit::Run(admitted)
            }
        }
    }

    /// A leader for `key` computed `outputs`: stores them for reuse (when enabled) and returns
    /// the followers, in arrival order, to be answered with the same outputs.
    pub fn complete(
        &mut self,
        key: &DedupKey,
        outputs: Arc<[Tensor]>,
        now: Instant,
    ) -> Vec<Admitted> {
        if self.params.enabled && self.params.cache_size > 0 {
            self.expire(now);
            self.store(*key, outputs, now);
        }
        self.take_followers(key)
    }

    /// A leader for `key` failed or was answered without running: nothing is stored, and the
    /// followers are returned in arrival order for the caller to admit again (the first leads).
    pub fn fail(&mut self, key: &DedupKey) -> Vec<Admitted> {
        self.take_followers(key)
    }

    /// Removes and returns the followers whose deadline is at or before `now` (earliest first),
    /// and drops results whose TTL has passed.
    pub fn cancel_expired(&mut self, now: Instant) -> Vec<Admitted> {
        self.expire(now);
        let mut out = Vec::new();
        while let Some(&(at, seq, key)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(p) = self.pending.get_mut(&key) else {
                continue;
            };
            if let Some(i) = p.followers.iter().position(|f| f.seq == seq) {
                out.push(p.followers.remove(i).admitted);
            }
        }
        self.waiting -= out.len();
        self.counters.cancelled += out.len() as u64;
        out
    }

    /// When `purge` is next due: an interval after the last purge, while results are held and
    /// a `purge_interval` is set.
    pub fn next_purge(&self) -> Option<Instant> {
        let interval = self.params.purge_interval?;
        if self.results.is_empty() {
            return None;
        }
        self.purged_at.map(|at| at + interval)
    }

    /// Releases every result whose TTL has passed and restarts the purge interval at `now`.
    pub fn purge(&mut self, now: Instant) -> Purged {
        let before = self.counters.expired;
        let bytes = self.expire(now);
        self.purged_at = Some(now);
        Purged {
            results: (self.counters.expired - before) as usize,
            bytes,
        }
    }

    /// The earliest deadline of a waiting follower: when `cancel_expired` has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _, _)| at)
    }

    pub fn stats(&self) -> DedupStats {
        DedupStats {
            cached: self.results.len(),
            pending: self.pending.len(),
            waiting: self.waiting,
            ..self.counters
        }
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn take_followers(&mut self, key: &DedupKey) -> Vec<Admitted> {
        let Some(p) = self.pending.remove(key) else {
            return Vec::new();
        };
        self.waiting -= p.followers.len();
        p.followers
            .into_iter()
            .map(|f| {
                if let Some(at) = f.admitted.deadline {
                    self.deadlines.remove(&(at, f.seq, *key));
                }
                f.admitted
            })
            .collect()
    }

    fn store(&mut self, key: DedupKey, outputs: Arc<[Tensor]>, now: Instant) {
        let seq = self.take_seq();
        if self.results.is_empty() {
            self.purged_at = Some(now);
        }
        let fresh = CachedResult {
            outputs,
            stored_at: now,
            seq,
        };
        if let Some(old) = self.results.insert(key, fresh) {
            self.by_age.remove(&old.seq);
        }
        self.by_age.insert(seq, key);
        self.evict_to(self.params.cache_size);
    }

    /// Drops the oldest results until at most `limit` remain.
    fn evict_to(&mut self, limit: usize) {
        while self.results.len() > limit {
            let Some((_, key)) = self.by_age.pop_first() else {
                break;
            };
            self.results.remove(&key);
            self.counters.evictions += 1;
        }
    }

    /// Drops results older than the TTL and returns their value bytes. Store order is age order
    /// (`now` never goes back), so only the front is checked.
    fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.params.ttl;
        let mut bytes = 0;
        while let Some(oldest) = self.by_age.first_entry() {
            let stored_at = self.results.get(oldest.get()).map(|r| r.stored_at);
            if stored_at.is_some_and(|at| fresh(at, now, ttl)) {
                break;
            }
            let key = oldest.remove();
            if let Some(gone) = self.results.remove(&key) {
                bytes += gone
                    .outputs
                    .iter()
                    .map(|t| t.data.byte_len())
                    .sum::<usize>();
            }
            self.counters.expired += 1;
        }
        bytes
    }
}

/// Whether a result stored at `stored_at` may still be reused at `now`.
fn fresh(stored_at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(stored_at) < ttl
}

#[cfg(test)]
#[path = "dedup_tests.rs"]
mod tests;
