//! What `/models` (and `/stats`'s `models`) report: every model version the registry knows, its
//! state and why.
//!
//! Invariant: written only by the model registry after each change (a rescan, a version that
//! finished draining); readers get a copy, never a lock held across an await.

use serde::{Deserialize, Serialize};

/// Where one version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Loaded, validated, warmed up: takes traffic.
    Ready,
    /// Removed or replaced: takes no new requests, finishes what it holds, then unloads.
    Draining,
    /// Failed to load, validate or warm up: never served (the reason is in `error`).
    Failed,
}

impl VersionState {
    pub const ALL: [VersionState; 3] = [Self::Ready, Self::Draining, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Failed => "failed",
        }
    }
}

/// One version of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: String,
    pub state: VersionState,
    /// The request contract, as read from the ONNX file.
    pub signature: Option<String>,
    /// Where its sessions run (`cpu`, `cuda`).
    pub device: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One model and its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    /// How a request without a version picks one (`latest`, `pinned 2`, `weights 1=90,2=10`).
    pub policy: String,
    /// Why the policy could not be followed as written, if it could not.
    pub policy_problem: Option<String>,
    /// The model-level `model.yaml` failed to read (the model serves with defaults).
    pub manifest_error: Option<String>,
    pub versions: Vec<VersionView>,
}

/// Every model the registry knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelsView {
    /// Requests without a `model_name` go here.
    pub default_model: String,
    /// The repository scanned (empty in the single-file form).
    pub registry_path: String,
    pub models: Vec<ModelView>,
    /// When the last rescan finished (ms since the epoch).
    pub synced_at_ms: i64,
    /// Why the last rescan could not read the repository, if it could not.
    pub sync_error: Option<String>,
}
