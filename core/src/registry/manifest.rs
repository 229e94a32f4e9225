//! `model.yaml`: what an ONNX file cannot say about a model or one of its versions.
//!
//! Invariant: a manifest is plain data read whole or refused whole (unknown keys are errors), and
//! every path in it is resolved against the directory of the file that named it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RegistryError;
use crate::model::{parse_samples, ModelBatching, Signature, WarmupSample};

/// The manifest file's name, beside the versions (model level) or beside `model.onnx`.
pub const MANIFEST: &str = "model.yaml";

/// Which version a request that names none is routed to. Written `latest`, `{pinned: "2"}` or
/// `{weights: {"1": 90, "2": 10}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolicyForm", into = "PolicyForm")]
pub enum VersionPolicy {
    /// The highest version (numeric versions compare as numbers).
    #[default]
    Latest,
    /// Always this version.
    Pinned(String),
    /// A split by weight (a canary): each request goes to a version with probability
    /// `weight / sum`, chosen from a hash of its `request_id` so a redelivered request takes
    /// the same version.
    Weights(BTreeMap<String, f64>),
}

/// The policy as YAML spells it: a word, or a one-key map.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum PolicyForm {
    Word(String),
    Pinned(PinnedForm),
    Weights(WeightsForm),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedForm {
    pinned: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsForm {
    weights: BTreeMap<String, f64>,
}

impl TryFrom<PolicyForm> for VersionPolicy {
    type Error = String;

    fn try_from(f: PolicyForm) -> Result<Self, String> {
        match f {
            PolicyForm::Word(w) if w == "latest" => Ok(Self::Latest),
            PolicyForm::Word(w) => Err(format!(
                "version_policy {w:?}: expected latest, {{pinned: VERSION}} or {{weights: {{VERSION: WEIGHT}}}}"
            )),
            PolicyForm::Pinned(p) => Ok(Self::Pinned(p.pinned)),
            PolicyForm::Weights(w) => Ok(Self::Weights(w.weights)),
        }
    }
}

impl From<VersionPolicy> for PolicyForm {
    fn from(p: VersionPolicy) -> Self {
        match p {
            VersionPolicy::Latest => Self::Word("latest".into()),
            VersionPolicy::Pinned(pinned) => Self::Pinned(PinnedForm { pinned }),
            VersionPolicy::Weights(weights) => Self::Weights(WeightsForm { weights }),
        }
    }
}

impl std::fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionPolicy::Latest => f.write_str("latest"),
            VersionPolicy::Pinned(v) => write!(f, "pinned {v}"),
            VersionPolicy::Weights(w) => {
                let parts: Vec<String> = w.iter().map(|(v, w)| format!("{v}={w}")).collect();
                write!(f, "weights {}", parts.join(","))
            }
        }
    }
}

/// Inputs run before a version takes traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Warmup {
    /// A JSON file holding an array of input rows (each an array of numbers, nested as the
    /// per-row shape or flat); without it the warm-up runs zeros.
    pub samples: Option<PathBuf>,
}

/// One `model.yaml`. At the model level every key applies to all versions; a version's own file
/// may state `signature` and `warmup` for itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    pub version_policy: VersionPolicy,
    pub batching: ModelBatching,
    pub warmup: Warmup,
    /// The contract every version must have (`model_registry.validation_enabled`).
    pub signature: Option<Signature>,
}

impl Manifest {
    /// Reads `path`; `Ok(None)` when there is no such file.
    pub fn read(path: &Path) -> Result<Option<Self>, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RegistryError::io(path, &e)),
        };
        let mut m: Manifest = serde_yaml::from_str(&text).map_err(|e| RegistryError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let (Some(samples), Some(dir)) = (&m.warmup.samples, path.parent()) {
            m.warmup.samples = Some(dir.join(samples));
        }
        Ok(Some(m))
    }
}

/// Reads a warm-up samples file (the format `model::parse_samples` reads).
pub fn read_samples(path: &Path) -> Result<Vec<WarmupSample>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|e| RegistryError::io(path, &e))?;
    parse_samples(&text).map_err(|message| RegistryError::Manifest {
        path: path.to_path_buf(),
        message,
    })
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
