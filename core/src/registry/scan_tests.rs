//! Unit tests of `scan`.

use std::fs;

use super::*;

fn touch(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn numeric_versions_order_by_value_before_named_ones() {
    let mut keys: Vec<VersionKey> = ["10", "2", "beta", "1", "alpha"]
        .into_iter()
        .map(|v| VersionKey(v.into()))
        .collect();
    keys.sort();
    let order: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(order, ["1", "2", "10", "alpha", "beta"]);
}

#[test]
fn finds_models_and_versions_and_skips_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("a/1/model.onnx"), b"one");
    touch(&root.join("a/2/model.onnx"), b"two!");
    touch(&root.join("a/model.yaml"), b"version_policy: latest\n");
    touch(&root.join("a/3/notes.txt"), b"no model here");
    touch(&root.join("b/1/model.onnx"), b"b");
    touch(&root.join("b/1/model.yaml"), b"nonsense: [");
    touch(&root.join(".hidden/1/model.onnx"), b"x");
    touch(&root.join("empty/readme"), b"x");
    touch(&root.join("loose.onnx"), b"x");
    let found = scan(root).unwrap();
    assert_eq!(found.keys().collect::<Vec<_>>(), ["a", "b"]);
    let a = &found["a"];
    let versions: Vec<&str> = a.versions.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(a.versions[&VersionKey("2".into())].fingerprint.len, 4);
    assert!(matches!(a.manifest, Ok(Some(_))));
    // A broken version manifest stays on its version; the scan goes on.
    assert!(found["b"].versions[&VersionKey("1".into())]
        .manifest
        .is_err());
}

#[test]
fn an_unreadable_root_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(scan(&dir.path().join("missing")).is_err());
}

#[test]
fn a_rewritten_file_changes_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m/1/model.onnx");
    touch(&f, b"first");
    let before = Fingerprint::of(&f).unwrap();
    touch(&f, b"second version");
    assert_ne!(Fingerprint::of(&f).unwrap(), before);
}
