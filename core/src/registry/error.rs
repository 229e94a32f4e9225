//! Errors of the model registry.
//!
//! Invariant: every error names the path or the model version it is about, and is `Clone` so a
//! failed version's reason can be kept and reported as long as its file is unchanged.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum RegistryError {
    #[error("cannot read {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{model} version {version}: {message}")]
    Version {
        model: String,
        version: String,
        message: String,
    },
    #[error("the default model {model:?} has no version that loaded: {reason}")]
    NoDefaultModel { model: String, reason: String },
}

impl RegistryError {
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
