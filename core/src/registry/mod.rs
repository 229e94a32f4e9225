//! The model repository: which models and versions are served, loaded live.
//!
//! `scan` reads `<path>/<model>/<version>/model.onnx` (and `model.yaml` files, `manifest`);
//! `Registry` loads, validates and warms up what is new, retires what is gone and publishes a
//! `RoutingTable` that admission routes each request with (`routing`); `run_registry` rescans
//! every `model_registry.sync_interval_s` and on SIGHUP.
//!
//! Invariant: a version takes traffic only after it loaded, passed validation and ran its warm-up
//! (it is in a published table only then); a version that fails any step is reported and never
//! served, and the versions already serving keep serving.

mod error;
mod manifest;
mod routing;
mod scan;
mod sync;

pub use error::RegistryError;
pub use manifest::{read_samples, Manifest, VersionPolicy, Warmup, MANIFEST};
pub use routing::{ModelRoutes, RouteError, RoutingTable};
pub use scan::{scan, Found, FoundModel, FoundVersion, VersionKey, MODEL_FILE};
pub use sync::{run_registry, LoadSettings, Registry, Routes};

use std::path::PathBuf;

use crate::config::Config;
use crate::model::ModelId;

/// The file of the default model's version that requests without a version go to (its pinned
/// version, else its latest): what the tools that load one model outside `serve` run
/// (`bench-model`, the demo).
pub fn default_model_file(cfg: &Config) -> Result<(ModelId, PathBuf), RegistryError> {
    let name = cfg.model.name.clone();
    if let Some(single) = cfg.model.single_file(&cfg.model_registry) {
        return Ok((ModelId::new(name, single.version), single.path));
    }
    let found = scan(&cfg.model_registry.path)?;
    let no_model = || RegistryError::NoDefaultModel {
        model: name.clone(),
        reason: format!(
            "no directory {} with a version holding {MODEL_FILE}",
            cfg.model_registry.path.join(&name).display()
        ),
    };
    let model = found.get(&name).ok_or_else(no_model)?;
    let pinned = match &model.manifest {
        Ok(Some(Manifest {
            version_policy: VersionPolicy::Pinned(v),
            ..
        })) => model.versions.get_key_value(&VersionKey(v.clone())),
        _ => None,
    };
    let (version, v) = pinned
        .or_else(|| model.versions.iter().next_back())
        .ok_or_else(no_model)?;
    Ok((
        ModelId::new(name.clone(), version.0.clone()),
        v.file.clone(),
    ))
}
