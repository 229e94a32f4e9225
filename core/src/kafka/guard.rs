//! Per-tier client access (`security.tier_access`): an allow-list of `client_id`s and a token
//! bucket per client, checked at admission for the tier a request would be served at.
//!
//! A request's `client_id` is what its producer wrote; nothing authenticates it. Kafka ACLs on
//! the tier topics decide who may write there; this guard keeps clients to the tiers they were
//! given and bounds how fast each one is served, against mistakes and runaway producers.
//!
//! Invariant: at most `security.max_tracked_clients` named buckets are kept (plus one per tier
//! for requests without a `client_id`). A bucket refilled to its burst is the same as a new one,
//! so forgetting it changes nothing; when room is needed the guard forgets those first, then
//! the buckets that would gain the fewest tokens by being forgotten.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::config::{RateLimit, SecurityConfig};
use crate::tier::Tier;

/// Allow-lists and rate limits of the four tiers, with the buckets of the clients seen.
pub struct ClientGuard {
    rules: [Rules; 4],
    /// Per tier (index), the bucket of each named client.
    buckets: [HashMap<String, Bucket>; 4],
    /// Per tier, the one bucket shared by requests without a `client_id`.
    anonymous: [Option<Bucket>; 4],
    max_tracked: usize,
}

#[derive(Debug, Default)]
struct Rules {
    allowed: Option<HashSet<String>>,
    limit: Option<RateLimit>,
}

/// A token bucket: `tokens` as of `last`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Tokens at `now`: refilled at the limit's rate since `last`, never past the burst.
    fn tokens_at(&self, limit: RateLimit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * limit.rate_per_second).min(f64::from(limit.burst))
    }

    /// Takes one token if there is one at `now`.
    fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.tokens = self.tokens_at(limit, now);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens the client would gain if this bucket were forgotten (a new one starts full).
    fn loss_if_forgotten(&self, limit: RateLimit, now: Instant) -> f64 {
        f64::from(limit.burst) - self.tokens_at(limit, now)
    }
}

impl std::fmt::Debug for ClientGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the buckets: thousands of client ids would drown any log line.
        f.debug_struct("ClientGuard")
            .field("rules", &self.rules)
            .field("tracked", &self.tracked())
            .field("max_tracked", &self.max_tracked)
            .finish()
    }
}

impl ClientGuard {
    pub fn new(s: &SecurityConfig) -> Self {
        Self {
            rules: Tier::ALL.map(|t| {
                let a = s.tier_access.tier(t);
                Rules {
                    allowed: a
                        .allowed_clients
                        .as_ref()
                        .map(|c| c.iter().cloned().collect()),
                    limit: a.rate_limit,
                }
            }),
            buckets: Default::default(),
            anonymous: [None; 4],
            max_tracked: s.max_tracked_clients.max(1),
        }
    }

    /// Whether `client_id` may be served at `tier` now; the error is the reply's message.
    /// Takes a token from the client's bucket when the tier is rate-limited.
    pub fn check(
        &mut self,
        client_id: Option<&str>,
        tier: Tier,
        now: Instant,
    ) -> Result<(), String> {
        let i = tier.index();
        if let Some(allowed) = &self.rules[i].allowed {
            if !client_id.is_some_and(|c| allowed.contains(c)) {
                return Err(match client_id {
                    Some(c) => format!(
                        "client {c:?} is not allowed on tier {tier} \
                         (security.tier_access.{tier}.allowed_clients)"
                    ),
                    None => format!(
                        "tier {tier} serves only listed clients and the request has no \
                         client_id (security.tier_access.{tier}.allowed_clients)"
                    ),
                });
            }
        }
        let Some(limit) = self.rules[i].limit else {
            return Ok(());
        };
        let taken = match client_id {
            None => self.anonymous[i]
                .get_or_insert_with(|| Bucket::full(limit, now))
                .take(limit, now),
            Some(c) => self.take_named(i, c, limit, now),
        };
        if taken {
            return Ok(());
        }
        let who = match client_id {
            Some(c) => format!("client {c:?}"),
            None => "requests without a client_id".to_owned(),
        };
        Err(format!(
            "rate limit exceeded for {who} on tier {tier} \
             (security.tier_access.{tier}.rate_limit: {} per second, burst {})",
            limit.rate_per_second, limit.burst
        ))
    }

    /// Named buckets held now.
    pub fn tracked(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }

    fn take_named(&mut self, i: usize, client: &str, limit: RateLimit, now: Instant) -> bool {
        if let Some(b) = self.buckets[i].get_mut(client) {
            return b.take(limit, now);
        }
        if self.tracked() >= self.max_tracked {
            self.make_room(now);
        }
        let mut b = Bucket::full(limit, now);
        let taken = b.take(limit, now);
        self.buckets[i].insert(client.to_owned(), b);
        taken
    }

    /// Forgets a sixteenth of the cap (at least one bucket), those whose loss changes least
    /// first, so the O(n) sweep is paid once per `max_tracked / 16` new clients.
    fn make_room(&mut self, now: Instant) {
        let keep = self.max_tracked - (self.max_tracked / 16).max(1);
        let rules = &self.rules;
        let loss = |i: usize, b: &Bucket| {
            // Only rate-limited tiers hold buckets.
            rules[i].limit.map_or(0.0, |l| b.loss_if_forgotten(l, now))
        };
        let mut losses: Vec<f64> = (0..4)
            .flat_map(|i| self.buckets[i].values().map(move |b| loss(i, b)))
            .collect();
        let Some(evict) = losses.len().checked_sub(keep).filter(|&n| n > 0) else {
            return;
        };
        let (_, &mut threshold, _) = losses.select_nth_unstable_by(evict - 1, f64::total_cmp);
        // Everything below the threshold goes, then as many at it as are still needed.
        let below = losses.iter().filter(|&&l| l < threshold).count();
        let mut at_threshold = evict - below;
        for (i, buckets) in self.buckets.iter_mut().enumerate() {
            buckets.retain(|_, b| {
                let l = loss(i, b);
                if l < threshold {
                    return false;
                }
                if l == threshold && at_threshold > 0 {
                    at_threshold -= 1;
                    return false;
                }
                true
            });
        }
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
