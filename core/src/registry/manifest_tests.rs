//! Unit tests of `manifest`.

use super::*;
use crate::tensor::TensorData;

fn parse(text: &str) -> Manifest {
    serde_yaml::from_str(text).expect("manifest")
}

#[test]
fn version_policies_read_as_written() {
    assert_eq!(
        parse("version_policy: latest").version_policy,
        VersionPolicy::Latest
    );
    assert_eq!(
        parse("version_policy: {pinned: \"2\"}").version_policy,
        VersionPolicy::Pinned("2".into())
    );
    let w = parse("version_policy: {weights: {\"1\": 90, \"2\": 10}}").version_policy;
    let VersionPolicy::Weights(w) = w else {
        panic!("weights expected, got {w:?}")
    };
    assert_eq!(w.get("1"), Some(&90.0));
    assert_eq!(w.get("2"), Some(&10.0));
    assert_eq!(parse("{}").version_policy, VersionPolicy::Latest);
}

#[test]
fn batching_overrides_and_signature_are_read() {
    let m = parse(
        "batching: {max_batch_size: 8, tier_wait_ms: {critical: 1, low: 40}}\n\
         signature:\n  inputs: [{name: x, dtype: float32, shape: [4, -1]}, {name: ids, dtype: INT64, shape: [1]}]\n  outputs: [{name: y, dtype: float32, shape: [3]}]",
    );
    assert_eq!(m.batching.max_batch_size, Some(8));
    assert_eq!(
        m.batching.tier_wait_ms.in_order(),
        [Some(1.0), None, None, Some(40.0)]
    );
    let sig = m.signature.expect("signature");
    assert_eq!(
        sig.to_string(),
        "x: float32[batch, 4, ?], ids: int64[batch, 1] -> y: float32[batch, 3]"
    );
}

#[test]
fn unknown_keys_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MANIFEST);
    std::fs::write(&path, "version_polcy: latest\n").unwrap();
    let err = Manifest::read(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("model.yaml") && text.contains("version_polcy"),
        "{text}"
    );
}

#[test]
fn a_missing_manifest_is_none_and_samples_resolve_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MANIFEST);
    assert_eq!(Manifest::read(&path).unwrap(), None);
    std::fs::write(&path, "warmup: {samples: warm.json}\n").unwrap();
    let m = Manifest::read(&path).unwrap().unwrap();
    assert_eq!(m.warmup.samples, Some(dir.path().join("warm.json")));
}

#[test]
fn samples_flatten_nested_rows_and_refuse_non_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warm.json");
    std::fs::write(&path, "[[[1, 2], [3, 4]], [[5, 6], [7, 8.5]]]").unwrap();
    let samples = read_samples(&path).unwrap();
    assert_eq!(samples.len(), 2, "one sample per entry");
    let sig = Signature::float32("x", &[2, 2], "y", 1);
    let second = samples[1].tensors(&sig).unwrap();
    assert_eq!(second[0].data, TensorData::F32(vec![5.0, 6.0, 7.0, 8.5]));
    std::fs::write(&path, "[[1, \"x\"]]").unwrap();
    let err = read_samples(&path).unwrap()[0].tensors(&sig).unwrap_err();
    assert!(err.contains("samples hold numbers"), "{err}");
    std::fs::write(&path, "{\"x\": [1]}").unwrap();
    let err = read_samples(&path).unwrap_err().to_string();
    assert!(
        err.contains("warm.json") && err.contains("JSON array"),
        "{err}"
    );
}
