//! The checks of tests/deploy_k8s.rs: functions of the parsed manifests, each returning why a
//! document set is wrong, so the tests can run them on the repository's files and on broken
//! copies alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kbatch_core::config::{load, Config, LoadOptions};
use serde::Deserialize;
use serde_yaml::Value;

/// What the kubelet puts in a `fieldRef: metadata.name` variable, for loading the configuration.
pub const POD_NAME: &str = "kbatch-5d8f7c9b6-x2x9q";
pub const TIERS: [&str; 3] = ["small", "medium", "large"];

pub type Check = Result<(), String>;

/// Returns `Err(format!(...))` from the enclosing check unless the condition holds.
macro_rules! ensure {
    ($ok:expr, $($msg:tt)+) => {
        if !$ok {
            return Err(format!($($msg)+));
        }
    };
}

pub fn k8s(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s")).join(rel)
}

/// Every non-empty YAML document of a file.
pub fn docs_in(path: &Path) -> Vec<Value> {
    let at = path.display();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{at}: {e}"));
    let docs = serde_yaml::Deserializer::from_str(&text).map(Value::deserialize);
    let docs = docs.map(|d| d.unwrap_or_else(|e| panic!("{at}: {e}")));
    docs.filter(|v| !v.is_null()).collect()
}

pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out
}

/// The base resources, as `base/kustomization.yaml` lists them.
pub fn base() -> Vec<Value> {
    let kustomization = &docs_in(&k8s("base/kustomization.yaml"))[0];
    let files = seq(&kustomization["resources"]).iter().map(text);
    files.flat_map(|f| docs_in(&k8s("base").join(f))).collect()
}

/// The documents a tier's kustomization patches the base with.
pub fn tier_patch(tier: &str) -> Vec<Value> {
    let dir = k8s(&format!("tiers/{tier}"));
    let kustomization = &docs_in(&dir.join("kustomization.yaml"))[0];
    let paths = seq(&kustomization["patches"]).iter();
    let paths = paths.map(|p| text(&p["path"]));
    paths.flat_map(|p| docs_in(&dir.join(p))).collect()
}

pub fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map_or(&[], Vec::as_slice)
}

pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A whole number, written as a number or as a string (KEDA's metadata values are strings).
pub fn int(v: &Value, what: &str) -> Result<u64, String> {
    let n = v.as_u64().or(v.as_str().and_then(|s| s.parse().ok()));
    n.ok_or(format!("{what}: {v:?} is not a whole number"))
}

pub fn find<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value, String> {
    let all: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    let n = all.len();
    ensure!(n == 1, "{n} documents of kind {kind}, not one");
    Ok(all[0])
}

/// The one document of `kind` named `name`.
pub fn find_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, String> {
    let is_it = |d: &&Value| d["kind"] == kind && d["metadata"]["name"] == name;
    let all: Vec<_> = docs.iter().filter(is_it).collect();
    let n = all.len();
    ensure!(n == 1, "{n} documents {kind} {name}, not one");
    Ok(all[0])
}

/// The workload: a StatefulSet, so each replica keeps its name (see `check_identity`).
pub const WORKLOAD: &str = "StatefulSet";

pub fn pod(docs: &[Value]) -> Result<&Value, String> {
    Ok(&find(docs, WORKLOAD)?["spec"]["template"])
}

pub fn container(docs: &[Value]) -> Result<&Value, String> {
    let c = &pod(docs)?["spec"]["containers"][0];
    ensure!(c.is_mapping(), "the {WORKLOAD} has no container");
    Ok(c)
}

/// Each replica keeps its identity across pod replacements, which exactly-once fencing needs
/// (the transactional id is `<group>-<client id>-<host name>`): the workload is a StatefulSet
/// governed by a headless Service that selects its pods, and the Kafka client id is the pod
/// name (stable under a StatefulSet: kbatch-0, kbatch-1, ...).
pub fn check_identity(docs: &[Value]) -> Check {
    let set = find(docs, WORKLOAD)?;
    let governing = text(&set["spec"]["serviceName"]);
    ensure!(
        !governing.is_empty(),
        "the {WORKLOAD} names no governing Service"
    );
    let service = find_named(docs, "Service", governing)?;
    let headless = service["spec"]["clusterIP"] == "None";
    ensure!(
        headless,
        "Service {governing} is not headless (clusterIP: None)"
    );
    let labels = &pod(docs)?["metadata"]["labels"];
    let selector = service["spec"]["selector"]
        .as_mapping()
        .filter(|m| !m.is_empty());
    let selector = selector.ok_or(format!("Service {governing} selects nothing"))?;
    let stray = selector.iter().find(|(k, v)| labels[*k] != **v);
    ensure!(
        stray.is_none(),
        "Service {governing} selects {stray:?}: no pod"
    );
    let env = seq(&container(docs)?["env"]);
    let client_id = env.iter().find(|e| e["name"] == "KBATCH_KAFKA__CLIENT_ID");
    let from_pod =
        client_id.is_some_and(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name");
    ensure!(
        from_pod,
        "KBATCH_KAFKA__CLIENT_ID is not the pod's name: {client_id:?}"
    );
    Ok(())
}

pub fn check_header(doc: &Value) -> Check {
    let name = &doc["metadata"]["name"];
    let keys = [&doc["apiVersion"], &doc["kind"], name];
    let named = keys.iter().all(|k| !text(k).is_empty());
    ensure!(named, "apiVersion, kind or metadata.name missing: {doc:?}");
    Ok(())
}

/// Every selector is non-empty and all its labels are on the pods; KEDA scales the workload.
pub fn check_selectors(docs: &[Value]) -> Check {
    let deploy = find(docs, WORKLOAD)?;
    let labels = &pod(docs)?["metadata"]["labels"];
    let pdb = &find(docs, "PodDisruptionBudget")?["spec"];
    let selectors = [
        (WORKLOAD, &deploy["spec"]["selector"]["matchLabels"]),
        (
            "Service",
            &find_named(docs, "Service", "kbatch")?["spec"]["selector"],
        ),
        ("PodDisruptionBudget", &pdb["selector"]["matchLabels"]),
    ];
    for (what, selector) in selectors {
        let pairs = selector.as_mapping().filter(|m| !m.is_empty());
        let pairs = pairs.ok_or(format!("{what} selector is empty"))?;
        let stray = pairs.iter().find(|(k, v)| labels[*k] != **v);
        ensure!(stray.is_none(), "{what} selects {stray:?}: no pod");
    }
    let target = &find(docs, "ScaledObject")?["spec"]["scaleTargetRef"];
    let name = &deploy["metadata"]["name"];
    let ok = target["kind"] == WORKLOAD && target["name"] == *name;
    ensure!(ok, "the ScaledObject scales {target:?}");
    Ok(())
}

/// The probes GET `/healthz` and `/ready` on a declared port; the Service and the scrape
/// annotation use the `http` port.
pub fn check_probes(docs: &[Value]) -> Check {
    let c = container(docs)?;
    let ports = seq(&c["ports"]);
    let declared = |p: &Value| {
        let named = |d: &Value| d["name"] == *p || d["containerPort"] == *p;
        ports.iter().any(named)
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/ready")] {
        let get = &c[probe]["httpGet"];
        let ok = get["path"] == path && declared(&get["port"]);
        ensure!(ok, "{probe} {get:?} is not GET {path} on a port");
    }
    let http = ports.iter().find(|p| p["name"] == "http");
    let http = http.ok_or("no port named http")?["containerPort"].as_u64();
    let target = &find_named(docs, "Service", "kbatch")?["spec"]["ports"][0]["targetPort"];
    let scrape = &pod(docs)?["metadata"]["annotations"]["prometheus.io/port"];
    let scrape = int(scrape, "prometheus.io/port")?;
    let ok = declared(target) && Some(scrape) == http;
    ensure!(ok, "the Service targets {target:?}, scraped: {scrape}");
    Ok(())
}

/// The value of key `key` of ConfigMap `name`.
pub fn config_key(docs: &[Value], name: &Value, key: &Value) -> Result<String, String> {
    let is_it = |d: &&Value| d["kind"] == "ConfigMap" && d["metadata"]["name"] == *name;
    let map = docs.iter().find(is_it);
    let map = map.ok_or(format!("no ConfigMap {name:?}"))?;
    let value = map["data"].get(key).and_then(Value::as_str);
    let value = value.ok_or(format!("ConfigMap {name:?} has no key {key:?}"))?;
    Ok(value.to_string())
}

/// The container's environment as the pod sees it (a `fieldRef` as the pod name; Secrets are
/// not in the repository, so a `secretKeyRef` reads as `secret`).
pub fn pod_env(docs: &[Value]) -> Result<Vec<(String, String)>, String> {
    let resolve = |var: &Value| -> Result<String, String> {
        let from = &var["valueFrom"];
        let key_ref = &from["configMapKeyRef"];
        match () {
            _ if from.is_null() => Ok(text(&var["value"]).to_string()),
            _ if from["fieldRef"]["fieldPath"] == "metadata.name" => Ok(POD_NAME.into()),
            _ if from["secretKeyRef"].is_mapping() => Ok("secret".into()),
            _ => config_key(docs, &key_ref["name"], &key_ref["key"]),
        }
    };
    let mut env = Vec::new();
    for var in seq(&container(docs)?["env"]) {
        let value = resolve(var).map_err(|e| format!("{:?}: {e}", var["name"]))?;
        env.push((text(&var["name"]).to_string(), value));
    }
    Ok(env)
}

pub fn env_var(docs: &[Value], name: &str) -> Result<String, String> {
    let found = pod_env(docs)?.into_iter().find(|(k, _)| k == name);
    Ok(found.ok_or(format!("the container does not set {name}"))?.1)
}

/// The mounted configuration: `KBATCH_CONFIG` relative to its ConfigMap volume's mount, and the
/// files of that volume (path in the mount -> content).
pub type Mounted = (PathBuf, BTreeMap<String, String>);

pub fn config_volume(docs: &[Value]) -> Result<Mounted, String> {
    let config = PathBuf::from(env_var(docs, "KBATCH_CONFIG")?);
    let mounts = seq(&container(docs)?["volumeMounts"]);
    let holds = |m: &&Value| config.starts_with(text(&m["mountPath"]));
    let mount = mounts.iter().find(holds);
    let mount = mount.ok_or("KBATCH_CONFIG not mounted")?;
    let volumes = seq(&pod(docs)?["spec"]["volumes"]);
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]);
    let source = &volume.ok_or(format!("no volume {:?}", mount["name"]))?["configMap"];
    let mut files = BTreeMap::new();
    for item in seq(&source["items"]) {
        let content = config_key(docs, &source["name"], &item["key"])?;
        files.insert(text(&item["path"]).to_string(), content);
    }
    let rel = config.strip_prefix(text(&mount["mountPath"])).unwrap();
    Ok((rel.to_path_buf(), files))
}

/// Every ConfigMap reference resolves, and the configuration file and profile are mounted.
pub fn check_config_refs(docs: &[Value]) -> Check {
    let (config, files) = config_volume(docs)?;
    let profile = env_var(docs, "KBATCH_PROFILE")?;
    let profile = format!("profiles/{profile}.yaml");
    let wanted = [config.display().to_string(), profile];
    let missing = wanted.iter().find(|f| !files.contains_key(*f));
    ensure!(missing.is_none(), "{missing:?} is not mounted");
    Ok(())
}

pub fn check_grace(docs: &[Value], drain_ms: u64) -> Check {
    let grace = &pod(docs)?["spec"]["terminationGracePeriodSeconds"];
    let grace = int(grace, "terminationGracePeriodSeconds")?;
    let ok = grace * 1000 > drain_ms;
    ensure!(ok, "grace {grace} s <= drain {drain_ms} ms");
    Ok(())
}

/// Writes the mounted files into a fresh directory and loads them with kbatch's loader and the
/// pod's environment: without a profile, then with each mounted profile.
pub fn load_mounted(docs: &[Value]) -> Result<Vec<(Option<String>, Config)>, String> {
    let (config, files) = config_volume(docs)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (path, content) in &files {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, content).unwrap();
    }
    let profiles = files.keys().filter_map(|p| profile_of(p));
    let env = pod_env(docs)?;
    let mut configs = Vec::new();
    for profile in std::iter::once(None).chain(profiles) {
        let opts = LoadOptions {
            file: Some(dir.path().join(&config)),
            profile: profile.clone(),
            env: Some(env.clone()),
            ..Default::default()
        };
        let loaded = load(&opts).map_err(|e| format!("profile {profile:?}: {e}"))?;
        configs.push((profile, loaded.config));
    }
    Ok(configs)
}

/// `Some(name)` for a mounted `profiles/<name>.yaml`.
pub fn profile_of(path: &str) -> Option<Option<String>> {
    let name = path.strip_prefix("profiles/")?.strip_suffix(".yaml")?;
    Some(Some(name.to_string()))
}

/// The Kafka triggers watch the configured group on the pod's brokers, one per tier topic.
pub fn check_keda(docs: &[Value], cfg: &Config) -> Check {
    let triggers = seq(&find(docs, "ScaledObject")?["spec"]["triggers"]);
    let kafka: Vec<_> = triggers.iter().filter(|t| t["type"] == "kafka").collect();
    let brokers = env_var(docs, "KBATCH_KAFKA__BROKERS")?;
    let fixed = [
        ("consumerGroup", cfg.kafka.group_id.as_str()),
        ("bootstrapServers", &brokers),
        ("offsetResetPolicy", "earliest"),
        ("allowIdleConsumers", "false"),
    ];
    for m in kafka.iter().map(|t| &t["metadata"]) {
        let wrong = fixed.iter().find(|(k, want)| m[*k] != *want);
        ensure!(wrong.is_none(), "kafka trigger {m:?}: not {wrong:?}");
        let lag = int(&m["lagThreshold"], "lagThreshold")?;
        ensure!(lag > 0, "lagThreshold 0");
    }
    let topics = kafka.iter().map(|t| text(&t["metadata"]["topic"]));
    let topics: BTreeSet<_> = topics.collect();
    let t = &cfg.kafka.topics;
    let tiers = [&t.critical, &t.high, &t.normal, &t.low].map(String::as_str);
    let ok = topics == BTreeSet::from(tiers) && topics.len() == kafka.len();
    ensure!(ok, "kafka triggers watch {topics:?}, not {tiers:?}");
    Ok(())
}

/// 1 <= min <= max <= partitions; the New York cron floor within [min, max]; a scale-down
/// stabilization window of at least a minute (each rebalance pauses the group).
pub fn check_replicas(so: &Value) -> Check {
    let partitions = &so["metadata"]["annotations"]["kbatch.io/partitions"];
    let partitions = int(partitions, "kbatch.io/partitions")?;
    let min = int(&so["spec"]["minReplicaCount"], "minReplicaCount")?;
    let max = int(&so["spec"]["maxReplicaCount"], "maxReplicaCount")?;
    let fits = 1 <= min && min <= max && max <= partitions;
    ensure!(fits, "replicas {min}..={max}, {partitions} partitions");
    let triggers = seq(&so["spec"]["triggers"]).iter();
    let crons: Vec<_> = triggers.filter(|t| t["type"] == "cron").collect();
    ensure!(!crons.is_empty(), "no cron trigger for market hours");
    for m in crons.iter().map(|t| &t["metadata"]) {
        let desired = int(&m["desiredReplicas"], "desiredReplicas")?;
        let new_york = m["timezone"] == "America/New_York";
        let ok = new_york && (min..=max).contains(&desired);
        ensure!(ok, "cron {m:?} not New York, {min}..={max}");
    }
    let behavior = &so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    let window = &behavior["scaleDown"]["stabilizationWindowSeconds"];
    let window = int(window, "scale-down window")?;
    ensure!(window >= 60, "scale-down window {window} s flaps replicas");
    Ok(())
}

/// A Kubernetes quantity (`500m`, `2`, `1Gi`, `512M`) as a number.
pub fn quantity(v: &Value) -> Result<f64, String> {
    let s = v.as_u64().map_or(text(v).to_string(), |n| n.to_string());
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(at);
    let power = |units: [&str; 4]| units.iter().position(|u| *u == unit);
    let (decimal, binary) = (power(["k", "M", "G", "T"]), power(["Ki", "Mi", "Gi", "Ti"]));
    let scale = match (unit, decimal, binary) {
        ("", ..) => 1.0,
        ("m", ..) => 1e-3,
        (_, Some(p), _) => 1e3f64.powi(p as i32 + 1),
        (_, _, Some(p)) => 1024f64.powi(p as i32 + 1),
        _ => return Err(format!("{v:?}: unknown unit")),
    };
    let n = digits.parse::<f64>().map_err(|e| format!("{v:?}: {e}"))?;
    Ok(n * scale)
}

/// A tier patch names objects of the base, gives the base's container requests <= limits, and
/// leaves the ScaledObject's replica bounds valid.
pub fn check_tier(patch: &[Value], base: &[Value]) -> Check {
    ensure!(!patch.is_empty(), "an empty tier patch");
    for doc in patch {
        check_header(doc)?;
        let kind = text(&doc["kind"]);
        let target = find(base, kind)?;
        let name = &doc["metadata"]["name"];
        let ok = *name == target["metadata"]["name"];
        ensure!(ok, "no {kind} {name:?} in base");
        match kind {
            WORKLOAD => check_tier_resources(doc, base)?,
            "ScaledObject" => check_replicas(&merged(target, doc))?,
            other => return Err(format!("a tier patches {other}")),
        }
    }
    Ok(())
}

pub fn check_tier_resources(doc: &Value, base: &[Value]) -> Check {
    let c = &doc["spec"]["template"]["spec"]["containers"][0];
    let same = c["name"] == container(base)?["name"];
    ensure!(same, "container {:?} is not the base's", c["name"]);
    for resource in ["cpu", "memory"] {
        let request = quantity(&c["resources"]["requests"][resource])?;
        let limit = quantity(&c["resources"]["limits"][resource])?;
        let ok = 0.0 < request && request <= limit;
        ensure!(ok, "{resource}: request {request} > limit {limit}");
    }
    Ok(())
}

/// `patch` merged into `base` as a JSON merge patch (how kustomize patches a custom resource).
pub fn merged(base: &Value, patch: &Value) -> Value {
    let (Value::Mapping(b), Value::Mapping(p)) = (base, patch) else {
        return patch.clone();
    };
    let mut out = b.clone();
    for (k, v) in p {
        out.insert(k.clone(), merged(&base[k], v));
    }
    Value::Mapping(out)
}
