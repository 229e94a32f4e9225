//! Which loaded version answers a request: by its `model_name` (null: the default model) and
//! `model_version` (null: the model's version policy).
//!
//! Invariants: a table is immutable once published (a rescan publishes a new one), holds only
//! versions that loaded, validated and warmed up, and never a retired one; a weighted split picks
//! from a hash of the request id, so the same request always takes the same version.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::manifest::VersionPolicy;
use super::scan::VersionKey;
use crate::model::ServedModel;

/// The versions one model serves and how a request without a version picks one.
#[derive(Debug, Clone)]
pub struct ModelRoutes {
    pub versions: BTreeMap<VersionKey, Arc<ServedModel>>,
    /// Cumulative weights for a split, or a single entry; never empty while `versions` is not.
    pub choice: Vec<(f64, Arc<ServedModel>)>,
    /// The policy as configured, for reports.
    pub policy: VersionPolicy,
    /// Why the configured policy could not be followed as written (a version it names is not
    /// served, a weight is not positive); the choice then falls back as described.
    pub policy_problem: Option<String>,
}

impl ModelRoutes {
    /// Routes of `versions` under `policy` (`None` when `versions` is empty). Versions the
    /// policy names that are not served are left out; when nothing is left, the latest serves.
    pub fn new(
        versions: BTreeMap<VersionKey, Arc<ServedModel>>,
        policy: VersionPolicy,
    ) -> Option<Self> {
        let latest = versions.values().next_back()?.clone();
        let (choice, policy_problem) = match &policy {
            VersionPolicy::Latest => (vec![(1.0, latest)], None),
            VersionPolicy::Pinned(v) => match versions.get(&VersionKey(v.clone())) {
                Some(m) => (vec![(1.0, m.clone())], None),
                None => (
                    vec![(1.0, latest)],
                    Some(format!(
                        "pinned version {v} is not served; the latest serves"
                    )),
                ),
            },
            VersionPolicy::Weights(weights) => split(&versions, weights, latest),
        };
        Some(Self {
            versions,
            choice,
            policy,
            policy_problem,
        })
    }

    /// The version for a request that names none; `request_id` decides a weighted split.
    pub fn pick(&self, request_id: &str) -> &Arc<ServedModel> {
        if let [(_, only)] = self.choice.as_slice() {
            return only;
        }
        let total = self.choice.last().map_or(1.0, |(c, _)| *c);
        let at = unit_hash(request_id) * total;
        self.choice
            .iter()
            .find(|(c, _)| at < *c)
            .or(self.choice.last())
            .map(|(_, m)| m)
            .expect("a split has at least one version")
    }
}

type Choice = (Vec<(f64, Arc<ServedModel>)>, Option<String>);

fn split(
    versions: &BTreeMap<VersionKey, Arc<ServedModel>>,
    weights: &BTreeMap<String, f64>,
    latest: Arc<ServedModel>,
) -> Choice {
    let mut problems = Vec::new();
    let mut cumulative = 0.0;
    let mut choice = Vec::new();
    for (v, &w) in weights {
        match versions.get(&VersionKey(v.clone())) {
            Some(m) if w.is_finite() && w > 0.0 => {
                cumulative += w;
                choice.push((cumulative, m.clone()));
            }
            Some(_) => problems.push(format!("version {v} has weight {w}, not a positive number")),
            None => problems.push(format!("version {v} is not served")),
        }
    }
    if choice.is_empty() {
        problems.push("no weighted version is served; the latest serves".into());
        choice.push((1.0, latest));
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    (choice, problem)
}

/// A request id's position in [0, 1): FNV-1a, then a 64-bit finalizer so ids that differ in
/// their last characters (`req-1`, `req-2`, ...) spread evenly.
fn unit_hash(id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Why a request cannot be routed (its reply is UNKNOWN_MODEL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("model {name:?} is not served here (serving {served})")]
    UnknownModel { name: String, served: String },
    #[error("model {name:?} has no version {version:?} (serving {served})")]
    UnknownVersion {
        name: String,
        version: String,
        served: String,
    },
}

/// Every model served, and the one that requests without a name go to.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub default_model: String,
    pub models: BTreeMap<String, ModelRoutes>,
    /// Names the model in replies to requests that never run: the default model's choice for a
    /// request without an id, or an unloaded stand-in while the default model serves nothing.
    pub fallback: Arc<ServedModel>,
}

impl RoutingTable {
    /// Every version the table routes to.
    pub fn served(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values().flat_map(|m| m.versions.values())
    }

    /// A table serving exactly `model`, as the default model (tools and tests that serve one
    /// model without a repository).
    pub fn single(model: Arc<ServedModel>) -> Self {
        let id = model.id().clone();
        let mut versions = BTreeMap::new();
        versions.insert(VersionKey(id.version.clone()), model.clone());
        let routes =
            ModelRoutes::new(versions, VersionPolicy::Latest).expect("one version is a route");
        Self {
            default_model: id.name.clone(),
            models: [(id.name, routes)].into(),
            fallback: model,
        }
    }

    /// The version that serves a request naming `name` and `version` (either may be absent).
    pub fn resolve(
        &self,
        name: Option<&str>,
        version: Option<&str>,
        request_id: &str,
    ) -> Result<&Arc<ServedModel>, RouteError> {
        let name = name.unwrap_or(&self.default_model);
        let Some(routes) = self.models.get(name) else {
            return Err(RouteError::UnknownModel {
                name: name.to_owned(),
                served: self.served_names(),
            });
        };
        match version {
            None => Ok(routes.pick(request_id)),
            Some(v) => routes
                .versions
                .get(&VersionKey(v.to_owned()))
                .ok_or_else(|| RouteError::UnknownVersion {
                    name: name.to_owned(),
                    version: v.to_owned(),
                    served: routes
                        .versions
                        .keys()
                        .map(|k| k.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
        }
    }

    fn served_names(&self) -> String {
        if self.models.is_empty() {
            return "no model".into();
        }
        self.models
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
