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
