//! Priority tiers. A request's tier comes from the topic it was read from; the request may ask
//! for a lower tier, never a higher one (`Tier::demoted_to`), so a producer cannot jump the queue.

use serde::{Deserialize, Serialize};

/// The four priority tiers, highest first. The discriminant is the Avro enum index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tier {
    Critical = 0,
    High = 1,
    Normal = 2,
    Low = 3,
}

impl Tier {
    /// All tiers, highest priority first.
    pub const ALL: [Tier; 4] = [Tier::Critical, Tier::High, Tier::Normal, Tier::Low];

    /// Position in `ALL` (0 = highest priority); also the Avro enum index.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tier at an Avro enum index.
    pub fn from_index(index: usize) -> Option<Tier> {
        Self::ALL.get(index).copied()
    }

    /// Lower-case name used in config keys, metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::High => "high",
            Tier::Normal => "normal",
            Tier::Low => "low",
        }
    }

    /// The tier a request is served at: the topic's tier unless the request asked for a lower one.
    pub fn demoted_to(self, requested: Option<Tier>) -> Tier {
        match requested {
            Some(r) if r > self => r,
            _ => self,
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "tier_tests.rs"]
mod tests;
