//! Reading the repository's layout: `<root>/<model>/<version>/model.onnx`, with an optional
//! `model.yaml` beside the versions and beside each `model.onnx`.
//!
//! Invariant: a scan only reads the file system and returns plain data; a directory that is not
//! a model or a version (no `model.onnx`, a name that is not a path segment, a hidden entry) is
//! skipped, and a broken manifest is kept as that version's or model's error so the rest of the
//! repository still serves.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::manifest::{Manifest, MANIFEST};
use super::RegistryError;

/// The ONNX file's name inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";

/// A version's order: numeric versions by value, before any non-numeric ones (by text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionKey(pub String);

impl VersionKey {
    fn numeric(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl Ord for VersionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.numeric(), other.numeric()) {
            (Some(a), Some(b)) => a.cmp(&b).then_with(|| self.0.cmp(&other.0)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.0.cmp(&other.0),
        }
    }
}

impl PartialOrd for VersionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What identifies the content of a file without reading it: a changed file is loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl Fingerprint {
    pub fn of(path: &Path) -> Result<Self, RegistryError> {
        let meta = std::fs::metadata(path).map_err(|e| RegistryError::io(path, &e))?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// One version directory found on disk.
#[derive(Debug, Clone)]
pub struct FoundVersion {
    pub file: PathBuf,
    pub fingerprint: Fingerprint,
    /// The version's own `model.yaml`.
    pub manifest: Result<Option<Manifest>, RegistryError>,
}

/// One model directory found on disk.
#[derive(Debug, Clone)]
pub struct FoundModel {
    /// The model's `model.yaml` (beside its versions).
    pub manifest: Result<Option<Manifest>, RegistryError>,
    pub versions: BTreeMap<VersionKey, FoundVersion>,
}

/// Everything a scan found, by model name.
pub type Found = BTreeMap<String, FoundModel>;

/// Scans `root`. Only an unreadable root is an error; anything wrong below it is skipped or
/// recorded on its entry.
pub fn scan(root: &Path) -> Result<Found, RegistryError> {
    let mut found = Found::new();
    for (name, dir) in subdirs(root)? {
        let mut versions = BTreeMap::new();
        let Ok(entries) = subdirs(&dir) else { continue };
        for (version, vdir) in entries {
            let file = vdir.join(MODEL_FILE);
            let Ok(fingerprint) = Fingerprint::of(&file) else {
                continue;
            };
            versions.insert(
                VersionKey(version),
                FoundVersion {
                    file,
                    fingerprint,
                    manifest: Manifest::read(&vdir.join(MANIFEST)),
                },
            );
        }
        if versions.is_empty() {
            continue;
        }
        found.insert(
            name,
            FoundModel {
                manifest: Manifest::read(&dir.join(MANIFEST)),
                versions,
            },
        );
    }
    Ok(found)
}

/// The visible subdirectories of `dir` whose names are UTF-8 path segments.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RegistryError::io(dir, &e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
