//! Unit tests of `routing`.

use std::path::PathBuf;

use super::*;
use crate::config::Device;
use crate::model::{ModelId, ModelInfo, Signature};

fn served(name: &str, version: &str) -> Arc<ServedModel> {
    Arc::new(ServedModel::unloaded(ModelInfo {
        id: ModelId::new(name, version),
        signature: Signature::float32("input", &[2], "output", 1),
        device: Device::Cpu,
        library_path: PathBuf::new(),
    }))
}

fn versions(name: &str, vs: &[&str]) -> BTreeMap<VersionKey, Arc<ServedModel>> {
    vs.iter()
        .map(|v| (VersionKey((*v).into()), served(name, v)))
        .collect()
}

fn table(policy: VersionPolicy) -> RoutingTable {
    let mut models = BTreeMap::new();
    let a = ModelRoutes::new(versions("a", &["1", "2", "10"]), policy).unwrap();
    models.insert("a".to_string(), a);
    let b = ModelRoutes::new(versions("b", &["1"]), VersionPolicy::Latest).unwrap();
    models.insert("b".to_string(), b);
    RoutingTable {
        default_model: "a".into(),
        fallback: served("a", "10"),
        models,
    }
}

fn version_of(t: &RoutingTable, name: Option<&str>, version: Option<&str>, id: &str) -> String {
    t.resolve(name, version, id).unwrap().id().to_string()
}

#[test]
fn names_and_versions_route_and_defaults_fill_in() {
    let t = table(VersionPolicy::Latest);
    assert_eq!(version_of(&t, None, None, "r"), "a:10");
    assert_eq!(version_of(&t, Some("b"), None, "r"), "b:1");
    assert_eq!(version_of(&t, Some("a"), Some("2"), "r"), "a:2");
    assert_eq!(version_of(&t, None, Some("1"), "r"), "a:1");
}

#[test]
fn unknown_names_and_versions_say_what_is_served() {
    let t = table(VersionPolicy::Latest);
    let e = t.resolve(Some("c"), None, "r").unwrap_err();
    assert_eq!(
        e.to_string(),
        "model \"c\" is not served here (serving \"a\", \"b\")"
    );
    let e = t.resolve(Some("a"), Some("3"), "r").unwrap_err();
    assert_eq!(
        e.to_string(),
        "model \"a\" has no version \"3\" (serving 1, 2, 10)"
    );
}

#[test]
fn a_pinned_version_serves_and_a_missing_pin_falls_back_to_latest() {
    let t = table(VersionPolicy::Pinned("2".into()));
    assert_eq!(version_of(&t, None, None, "r"), "a:2");
    let t = table(VersionPolicy::Pinned("7".into()));
    assert_eq!(version_of(&t, None, None, "r"), "a:10");
    assert!(t.models["a"]
        .policy_problem
        .as_deref()
        .unwrap()
        .contains("pinned version 7"));
}

#[test]
fn a_weighted_split_follows_its_weights_and_is_stable_per_request() {
    let weights = [("1".to_string(), 90.0), ("2".to_string(), 10.0)].into();
    let t = table(VersionPolicy::Weights(weights));
    let n = 10_000;
    let to_2 = (0..n)
        .filter(|i| version_of(&t, None, None, &format!("req-{i}")) == "a:2")
        .count();
    let share = to_2 as f64 / n as f64;
    assert!(
        (share - 0.10).abs() < 0.01,
        "version 2 got {share:.4} of requests"
    );
    // Nothing goes to the unweighted version 10.
    assert!((0..1000).all(|i| version_of(&t, None, None, &format!("x{i}")) != "a:10"));
    // The same request id always takes the same version (a redelivery too).
    for i in 0..100 {
        let id = format!("again-{i}");
        assert_eq!(
            version_of(&t, None, None, &id),
            version_of(&t, None, None, &id)
        );
    }
}

#[test]
fn weights_naming_unserved_versions_are_reported_and_skipped() {
    let weights = [("2".to_string(), 50.0), ("9".to_string(), 50.0)].into();
    let t = table(VersionPolicy::Weights(weights));
    assert!((0..200).all(|i| version_of(&t, None, None, &format!("r{i}")) == "a:2"));
    assert!(t.models["a"]
        .policy_problem
        .as_deref()
        .unwrap()
        .contains("version 9"));
}
