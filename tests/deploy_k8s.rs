//! The Kubernetes manifests under `deploy/k8s/` against each other and against kbatch itself:
//! a broken manifest otherwise fails only in a cluster, or worse, runs and misbehaves.
//!
//! Checked: every YAML document has `apiVersion`, `kind` and `metadata.name`; kustomizations
//! name files that exist and the base lists every file beside it; the StatefulSet's pod labels
//! satisfy its own, the Service's and the PodDisruptionBudget's selectors and the ScaledObject
//! scales that StatefulSet; each replica keeps its name across pod replacements (a headless
//! governing Service, the pod name as Kafka client id), which exactly-once fencing needs; the probes GET `/healthz` and `/ready` on a declared port; every
//! ConfigMap and key a volume or variable names exists, and `KBATCH_CONFIG`/`KBATCH_PROFILE`
//! name mounted files; the grace period outlasts the `kafka.shutdown_timeout_ms` drain; the
//! ConfigMap's configuration loads and validates with kbatch's own loader under every profile
//! and the pod's environment, and its profiles equal `config/profiles/`; the KEDA Kafka triggers
//! watch the configured group, brokers and tier topics; replica bounds stay within the topics'
//! partitions (`kbatch.io/partitions`), the market-hours floor within them; each resource tier
//! patches the base's objects with requests <= limits. The checks are functions of the parsed
//! documents, and the last tests feed them broken copies that each must reject.

#[path = "deploy_k8s/checks.rs"]
#[macro_use]
mod checks;

use std::collections::BTreeSet;

use checks::*;
use kbatch_core::config::{Config, PROFILES};
use serde_yaml::Value;
#[test]
fn every_document_is_named_and_every_kustomization_complete() {
    let files = yaml_files(&k8s(""));
    assert!(files.len() >= 10, "deploy/k8s holds {files:?}");
    for file in &files {
        let (docs, at) = (docs_in(file), file.display());
        assert!(!docs.is_empty(), "{at}: no document");
        let named = docs.iter().try_for_each(check_header);
        named.unwrap_or_else(|e| panic!("{at}: {e}"));
        let patches = seq(&docs[0]["patches"]).iter().map(|p| &p["path"]);
        for path in seq(&docs[0]["resources"]).iter().chain(patches).map(text) {
            let found = file.parent().unwrap().join(path).exists();
            assert!(found, "{at}: {path} does not exist");
        }
    }
    let listed = &docs_in(&k8s("base/kustomization.yaml"))[0]["resources"];
    let listed = seq(listed).iter().map(|f| k8s("base").join(text(f)));
    let beside = yaml_files(&k8s("base")).into_iter();
    let beside = beside.filter(|f| !f.ends_with("kustomization.yaml"));
    let (listed, beside): (BTreeSet<_>, BTreeSet<_>) = (listed.collect(), beside.collect());
    assert_eq!(listed, beside, "base/kustomization.yaml lists all");
    for tier in TIERS {
        let k = &docs_in(&k8s(&format!("tiers/{tier}/kustomization.yaml")))[0];
        assert_eq!(k["resources"], Value::from(vec!["../../base"]), "{tier}");
    }
}

#[test]
fn pods_are_selected_probed_configured_and_drained() {
    let docs = base();
    check_selectors(&docs).unwrap();
    check_probes(&docs).unwrap();
    check_config_refs(&docs).unwrap();
    check_identity(&docs).unwrap();
    let deployed = load_mounted(&docs).unwrap().into_iter();
    let drains = deployed.map(|(_, c)| c.kafka.shutdown_timeout_ms);
    let drain = drains.fold(Config::default().kafka.shutdown_timeout_ms, u64::max);
    check_grace(&docs, drain).unwrap();
}

#[test]
fn the_configmap_loads_with_every_profile_and_matches_the_repository() {
    let docs = base();
    let configs = load_mounted(&docs).unwrap();
    let profiles: Vec<_> = configs.iter().filter_map(|(p, _)| p.as_deref()).collect();
    assert_eq!(profiles, PROFILES, "every profile is mounted");
    let port = seq(&container(&docs).unwrap()["ports"])[0]["containerPort"].as_u64();
    for (profile, cfg) in &configs {
        assert_eq!(port, Some(cfg.http.port.into()), "{profile:?}: http.port");
        let client_id = (cfg.kafka.client_id.as_str(), profile);
        assert_eq!(client_id, (POD_NAME, profile), "a client id per pod");
    }
    let (_, files) = config_volume(&docs).unwrap();
    let parse = |s: &str| serde_yaml::from_str::<Value>(s).unwrap();
    for name in PROFILES {
        let repo = k8s(&format!("../../config/profiles/{name}.yaml"));
        let repo = std::fs::read_to_string(repo).unwrap();
        let mounted = parse(&files[&format!("profiles/{name}.yaml")]);
        assert!(mounted == parse(&repo), "{name}: the copy drifted");
    }
}

#[test]
fn keda_and_the_tiers_scale_on_the_configured_group_within_the_partitions() {
    let docs = base();
    for (profile, cfg) in load_mounted(&docs).unwrap() {
        check_keda(&docs, &cfg).unwrap_or_else(|e| panic!("{profile:?}: {e}"));
    }
    check_replicas(find(&docs, "ScaledObject").unwrap()).unwrap();
    for tier in TIERS {
        let patch = tier_patch(tier);
        check_tier(&patch, &docs).unwrap_or_else(|e| panic!("tier {tier}: {e}"));
    }
}

/// Applies `Kind path=yaml` (or `index path=yaml`): replaces the value at the `/`-separated path
/// (`ctr/` = the container; numbers index lists) of that document.
fn broken(mut docs: Vec<Value>, edit: &str) -> Vec<Value> {
    let (target, rest) = edit.split_once(' ').unwrap();
    let (path, yaml) = rest.split_once('=').unwrap();
    let index = target.parse().ok();
    let is_it = |(i, d): &(usize, &mut Value)| index == Some(*i) || d["kind"] == target;
    let (_, mut node) = docs.iter_mut().enumerate().find(is_it).unwrap();
    let path = path.replace("ctr/", "spec/template/spec/containers/0/");
    for key in path.split('/') {
        node = match key.parse::<usize>() {
            Ok(i) => &mut node[i],
            Err(_) => &mut node[key],
        };
    }
    *node = serde_yaml::from_str(yaml).unwrap();
    docs
}

/// The check a negative case names.
fn check_named(name: &str, docs: &[Value]) -> Check {
    let defaults = Config::default();
    match name {
        "selectors" => check_selectors(docs),
        "probes" => check_probes(docs),
        "refs" => check_config_refs(docs),
        "grace" => check_grace(docs, defaults.kafka.shutdown_timeout_ms),
        "loads" => load_mounted(docs).map(drop),
        "keda" => check_keda(docs, &defaults),
        "replicas" => check_replicas(find(docs, "ScaledObject")?),
        "header" => docs.iter().try_for_each(check_header),
        "identity" => check_identity(docs),
        other => panic!("no check {other}"),
    }
}

#[test]
fn broken_base_documents_are_rejected() {
    let cases = [
        "selectors: Service spec/selector={app: kbatch}",
        "selectors: PodDisruptionBudget spec/selector={}",
        "selectors: StatefulSet spec/selector/matchLabels={tier: x}",
        "selectors: ScaledObject spec/scaleTargetRef/name=kbatch-old",
        "probes: StatefulSet ctr/readinessProbe/httpGet/path=/healthz",
        "probes: StatefulSet ctr/livenessProbe/httpGet/port=metrics",
        "probes: StatefulSet ctr/ports/0/name=metrics",
        "refs: StatefulSet spec/template/spec/volumes/0/configMap/items/1/key=x",
        "refs: ConfigMap data/brokers=~",
        "refs: StatefulSet ctr/env/1/value=weekend",
        "grace: StatefulSet spec/template/spec/terminationGracePeriodSeconds=10",
        "loads: ConfigMap data/kbatch.yaml='batch_processing: {max_batch_size: 0}'",
        "keda: ScaledObject spec/triggers/0/metadata/consumerGroup=other",
        "keda: ScaledObject spec/triggers/3/metadata/topic=inference.requests.high",
        "replicas: ScaledObject spec/maxReplicaCount=30",
        "replicas: ScaledObject spec/triggers/4/metadata/desiredReplicas='1'",
        "header: Service metadata/name=''",
        "identity: StatefulSet kind=Deployment",
        "identity: StatefulSet spec/serviceName=kbatch",
        "identity: 3 spec/clusterIP=10.0.0.9",
        "identity: StatefulSet ctr/env/3/valueFrom/fieldRef/fieldPath=status.podIP",
    ];
    for case in cases {
        let (check, edit) = case.split_once(": ").unwrap();
        assert!(check_named(check, &base()).is_ok(), "{case}: base fails");
        let broken = broken(base(), edit);
        assert!(check_named(check, &broken).is_err(), "{case}: accepted");
    }
}

#[test]
fn broken_tier_patches_are_rejected() {
    let edits = [
        "0 ctr/resources/requests/memory=3Gi",
        "0 ctr/resources/limits/cpu=500m",
        "0 ctr/name=sidecar",
        "0 metadata/name=kbatch-old",
        "1 spec/maxReplicaCount=13",
        "1 kind=HorizontalPodAutoscaler",
    ];
    for edit in edits {
        let patch = broken(tier_patch("small"), edit);
        assert!(check_tier(&patch, &base()).is_err(), "{edit}: accepted");
    }
}

#[test]
fn quantities_parse_like_kubernetes() {
    let q = |s: &str| quantity(&Value::from(s)).unwrap();
    let parsed = [q("500m"), q("2"), q("1Gi"), q("512Mi"), q("1G"), q("3k")];
    assert_eq!(parsed, [0.5, 2.0, 1073741824.0, 536870912.0, 1e9, 3e3]);
    assert_eq!(quantity(&Value::from(4)), Ok(4.0));
    assert!(quantity(&Value::from("lots")).is_err());
}
