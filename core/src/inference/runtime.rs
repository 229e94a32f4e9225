//! Locating and loading the ONNX Runtime shared library.
//!
//! Invariant: at most one libonnxruntime is loaded per process, exactly once, through
//! `ort::init_from` (never ort's lazy `ORT_DYLIB_PATH` route, which panics on failure), and one
//! `ort::environment::Environment` lives for the rest of the process. Every failure is a typed
//! `InferenceError`; a failed attempt leaves nothing behind, so a later attempt may succeed.
//!
//! Discovery is split into a pure plan (`search_plan`) and a file-system probe (`locate`) so the
//! search order can be tested without touching the process-global library state.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use super::InferenceError;

/// File name ONNX Runtime's shared library has on this platform (`libonnxruntime.so` on Linux).
pub fn library_file_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Where to look for the library, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPlan {
    /// A path someone asked for explicitly (config or `ORT_DYLIB_PATH`); nothing else is tried,
    /// because silently loading a different library would hide a misconfiguration.
    Explicit(PathBuf),
    /// Directories probed in order for `libonnxruntime.so`, then for a versioned
    /// `libonnxruntime.so.*`.
    Directories(Vec<PathBuf>),
}

/// Decides where to look: configured path, else `ORT_DYLIB_PATH`, else `vendor/onnxruntime/`
/// under `cwd`, else the executable's directory and its ancestors (each also with
/// `vendor/onnxruntime/` under it, so a binary in `target/release/` finds the repository's copy
/// whatever the working directory). Pure: reads no environment and no file system.
pub fn search_plan(
    configured: Option<&Path>,
    env_path: Option<&OsStr>,
    cwd: &Path,
    exe: Option<&Path>,
) -> SearchPlan {
    if let Some(path) = configured {
        return SearchPlan::Explicit(path.to_path_buf());
    }
    if let Some(path) = env_path.filter(|p| !p.is_empty()) {
        return SearchPlan::Explicit(PathBuf::from(path));
    }
    let vendor = Path::new("vendor").join("onnxruntime");
    let mut dirs = vec![cwd.join(&vendor)];
    // Four levels cover target/<profile>/deps/<test binary> up to the repository root.
    for dir in exe
        .and_then(Path::parent)
        .into_iter()
        .flat_map(Path::ancestors)
        .take(4)
    {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join(&vendor));
    }
    dirs.dedup();
    SearchPlan::Directories(dirs)
}

/// Probes the file system along `plan` and returns the first library file found.
pub fn locate(plan: &SearchPlan) -> Result<PathBuf, InferenceError> {
    let file_name = library_file_name();
    match plan {
        SearchPlan::Explicit(path) if path.is_file() => Ok(path.clone()),
        SearchPlan::Explicit(path) => Err(InferenceError::LibraryNotFound {
            searched: vec![path.clone()],
        }),
        SearchPlan::Directories(dirs) => {
            for dir in dirs {
                if let Some(found) = find_in_dir(dir, &file_name) {
                    return Ok(found);
                }
            }
            let searched = dirs
                .iter()
                .map(|d| d.join(format!("{file_name}*")))
                .collect();
            Err(InferenceError::LibraryNotFound { searched })
        }
    }
}

fn find_in_dir(dir: &Path, file_name: &str) -> Option<PathBuf> {
    let plain = dir.join(file_name);
    if plain.is_file() {
        return Some(plain);
    }
    // Only a versioned file (e.g. the symlink was not created): take the highest-sorting one.
    let prefix = format!("{file_name}.");
    let mut versioned: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    versioned.sort();
    versioned.pop()
}

/// The process's ONNX Runtime: where it was loaded from and its environment, if built.
struct Loaded {
    path: PathBuf,
    environment: Option<Environment>,
}

/// `None` until a library has been loaded; guarded so concurrent first calls load only once.
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// A handle on the loaded ONNX Runtime.
#[derive(Clone)]
pub struct Runtime {
    /// Canonical path of the loaded library.
    pub library_path: PathBuf,
    /// The process-wide environment every session is built in.
    pub environment: Environment,
}

/// Loads ONNX Runtime (once per process) following the discovery order and returns it.
///
/// A later call that resolves to the same library gets the same runtime; one that resolves to a
/// different library fails with `LibraryLoad`, because ONNX Runtime cannot be swapped in-process.
pub fn load(configured: Option<&Path>) -> Result<Runtime, InferenceError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let exe = std::env::current_exe().ok();
    let env_path = std::env::var_os("ORT_DYLIB_PATH");
    let plan = search_plan(configured, env_path.as_deref(), &cwd, exe.as_deref());
    let found = locate(&plan)?;
    let path = fs::canonicalize(&found).map_err(|e| InferenceError::LibraryLoad {
        path: found.clone(),
        message: e.to_string(),
    })?;
    load_from(&path)
}

fn load_from(path: &Path) -> Result<Runtime, InferenceError> {
    // A panic elsewhere while holding the lock leaves the state consistent; keep using it.
    let mut guard = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let load_error = |message: String| InferenceError::LibraryLoad {
        path: path.to_path_buf(),
        message,
    };

    let loaded = match guard.as_mut() {
        Some(loaded) if loaded.path != path => {
            return Err(load_error(format!(
                "ONNX Runtime is already loaded from {} in this process and cannot be replaced",
                loaded.path.display()
            )));
        }
        Some(loaded) => loaded,
        None => {
            // On failure ort keeps no state, so nothing is recorded and a retry may succeed.
            ort::init_from(path).map_err(|e| load_error(e.to_string()))?;
            tracing::info!(path = %path.display(), "loaded ONNX Runtime");
            guard.insert(Loaded {
                path: path.to_path_buf(),
                environment: None,
            })
        }
    };

    if loaded.environment.is_none() {
        // ort allows one environment per process; building it under the lock keeps that true.
        // The library is loaded by now, so the plain builder binds to it.
        let environment = ort::init()
            .with_name("kbatch")
            .with_telemetry(false)
            .build()
            .map_err(|e| load_error(format!("cannot create environment: {e}")))?;
        loaded.environment = Some(environment);
    }
    let environment = loaded
        .environment
        .clone()
        .expect("environment was just set");
    Ok(Runtime {
        library_path: path.to_path_buf(),
        environment,
    })
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
