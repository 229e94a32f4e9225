//! Unit tests of `runtime`.

use super::*;

fn dirs(plan: SearchPlan) -> Vec<PathBuf> {
    match plan {
        SearchPlan::Directories(d) => d,
        other => panic!("expected a directory search, got {other:?}"),
    }
}

#[test]
fn configured_path_wins_over_env_and_directories() {
    let plan = search_plan(
        Some(Path::new("/opt/ort/libonnxruntime.so")),
        Some(OsStr::new("/env/libonnxruntime.so")),
        Path::new("/work"),
        Some(Path::new("/bin/kbatch")),
    );
    assert_eq!(
        plan,
        SearchPlan::Explicit("/opt/ort/libonnxruntime.so".into())
    );
}

#[test]
fn env_path_wins_over_directories_but_empty_env_is_ignored() {
    let plan = search_plan(None, Some(OsStr::new("/env/lib.so")), Path::new("/w"), None);
    assert_eq!(plan, SearchPlan::Explicit("/env/lib.so".into()));
    let plan = search_plan(None, Some(OsStr::new("")), Path::new("/w"), None);
    assert_eq!(dirs(plan), vec![PathBuf::from("/w/vendor/onnxruntime")]);
}

#[test]
fn directory_search_is_vendor_then_executable_ancestors() {
    let plan = search_plan(
        None,
        None,
        Path::new("/w"),
        Some(Path::new("/r/target/debug/deps/t")),
    );
    let expected: Vec<PathBuf> = [
        "/w/vendor/onnxruntime",
        "/r/target/debug/deps",
        "/r/target/debug/deps/vendor/onnxruntime",
        "/r/target/debug",
        "/r/target/debug/vendor/onnxruntime",
        "/r/target",
        "/r/target/vendor/onnxruntime",
        "/r",
        "/r/vendor/onnxruntime",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(dirs(plan), expected);
}

#[test]
fn missing_explicit_library_is_a_typed_error() {
    let missing = PathBuf::from("/nonexistent/kbatch/libonnxruntime.so");
    let err = locate(&SearchPlan::Explicit(missing.clone())).unwrap_err();
    assert_eq!(
        err,
        InferenceError::LibraryNotFound {
            searched: vec![missing]
        }
    );
}

#[test]
fn empty_directories_report_every_searched_pattern() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let plan = SearchPlan::Directories(vec![a.path().into(), b.path().into()]);
    match locate(&plan).unwrap_err() {
        InferenceError::LibraryNotFound { searched } => {
            assert_eq!(searched.len(), 2);
            assert!(searched[1].starts_with(b.path()));
            assert!(searched[1]
                .to_string_lossy()
                .ends_with("libonnxruntime.so*"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn versioned_library_is_found_without_the_plain_symlink() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libonnxruntime.so.1.31.1");
    fs::write(&lib, b"not really a library").unwrap();
    let plan = SearchPlan::Directories(vec![empty.path().into(), dir.path().into()]);
    assert_eq!(locate(&plan).unwrap(), lib);
}

#[test]
fn plain_name_is_preferred_over_versioned_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("libonnxruntime.so.1.31.1"), b"x").unwrap();
    fs::write(dir.path().join("libonnxruntime.so"), b"x").unwrap();
    let plan = SearchPlan::Directories(vec![dir.path().into()]);
    assert_eq!(locate(&plan).unwrap(), dir.path().join("libonnxruntime.so"));
}

#[test]
fn bad_library_path_is_a_typed_error_not_a_panic() {
    let missing = Path::new("/nonexistent/kbatch/libonnxruntime.so");
    assert!(matches!(
        load(Some(missing)),
        Err(InferenceError::LibraryNotFound { .. })
    ));
}

#[test]
fn non_library_file_is_a_load_error_whatever_was_loaded_before() {
    // Either dlopen rejects it (nothing loaded yet) or the one-library rule does; both are
    // LibraryLoad, so this holds in any test order.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    fs::write(&fake, b"definitely not an ELF file").unwrap();
    assert!(matches!(
        load(Some(&fake)),
        Err(InferenceError::LibraryLoad { .. })
    ));
}
