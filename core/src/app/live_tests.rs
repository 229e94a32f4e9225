//! Every setting documented as live (`config::reload::is_reloadable`) changes what a running
//! instance does after a reload: each one, changed alone through the reload merge, must change
//! what some stage re-reads when a reload reaches it (the batcher's policy, adaptive and
//! deduplication parameters, admission, the tier gate, telemetry, the sampler and checker
//! periods, the log level).

use serde_json::Value;

use crate::batcher::adaptive::AdaptiveParams;
use crate::batcher::dedup::DedupParams;
use crate::batcher::BatchPolicy;
use crate::config::reload::{is_reloadable, merge_reloadable};
use crate::config::{validate, Config};
use crate::kafka::{tier_gate, Admission};
use crate::registry::{Routes, RoutingTable};
use crate::telemetry::Telemetry;

/// What the stages hold after applying a reload of `cfg` onto a start with the defaults, each
/// through the same call the stage makes (named, for the failure message).
fn observed(cfg: &Config) -> Vec<(&'static str, String)> {
    let defaults = Config::default();
    let routes = Routes::fixed(RoutingTable::single(crate::pipeline::fixtures::model()));
    let mut admission = Admission::new(&defaults, routes);
    admission.reconfigure(cfg);
    let mut gate = tier_gate(&defaults);
    let wanted = tier_gate(cfg);
    gate.configure(wanted.enabled(), wanted.share());
    let telemetry = Telemetry::new(&defaults).expect("telemetry");
    telemetry.reconfigure(&cfg.performance_monitoring);
    let m = &telemetry.metrics;
    let pm = &cfg.performance_monitoring;
    vec![
        (
            "batcher policy",
            format!("{:?}", BatchPolicy::from_config(cfg)),
        ),
        (
            "adaptive",
            format!("{:?}", AdaptiveParams::from_config(cfg)),
        ),
        (
            "deduplication",
            format!("{:?}", DedupParams::from_config(cfg)),
        ),
        ("admission", format!("{admission:?}")),
        ("tier gate", format!("{:?}", (gate.enabled(), gate.share()))),
        (
            "telemetry",
            format!(
                "{:?}",
                (
                    telemetry.log_every(),
                    telemetry.health.stall_bound(),
                    m.alert_latency_threshold_ms.get(),
                    m.alert_error_rate_threshold.get(),
                )
            ),
        ),
        ("sampler period", format!("{:?}", pm.metrics_period())),
        ("liveness period", format!("{:?}", pm.health_period())),
        ("log level", cfg.logging.level.clone()),
    ]
}

/// Dotted paths of every leaf of `v` (a map's entries are leaves below it; an empty map is a leaf).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Values to try in place of `current`, most natural first.
fn candidates(current: &Value) -> Vec<Value> {
    match current {
        Value::Bool(b) => vec![Value::Bool(!b)],
        Value::Number(n) if n.is_u64() => {
            let n = n.as_u64().unwrap_or_default();
            [n + 1, n * 2, n / 2, 1, 0]
                .into_iter()
                .map(Value::from)
                .collect()
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            [x * 2.0, x / 2.0, x + 0.5, 0.5, 0.0]
                .into_iter()
                .map(Value::from)
                .collect()
        }
        Value::String(_) => [
            "latency",
            "priority",
            "throughput",
            "debug",
            "reject",
            "json",
        ]
        .into_iter()
        .map(Value::from)
        .collect(),
        _ => Vec::new(),
    }
}

/// `base` with the leaf at `key` set to the first candidate that differs and still validates.
fn changed_alone(base: &Value, key: &str) -> Option<Config> {
    let pointer = format!("/{}", key.replace('.', "/"));
    let current = base.pointer(&pointer)?;
    candidates(current)
        .into_iter()
        .filter(|c| c != current)
        .find_map(|c| {
            let mut tree = base.clone();
            *tree.pointer_mut(&pointer)? = c;
            let cfg: Config = serde_json::from_value(tree).ok()?;
            validate(&cfg, None).is_empty().then_some(cfg)
        })
}

/// A setting that matters only beside another one, and how that other one is set for it (both
/// before and after the reload).
struct Context {
    key: &'static str,
    set: fn(&mut Config),
}

const CONTEXT: &[Context] = &[Context {
    // One wait for all tiers replaces the tier waits only without priority queueing.
    key: "batch_processing.max_wait_time_seconds",
    set: |c| c.priority_queueing.enable_priority_queueing = false,
}];

#[test]
fn every_live_setting_changes_what_a_running_stage_reads_after_a_reload() {
    let mut keys = Vec::new();
    leaves(
        &serde_json::to_value(Config::default()).expect("config serializes"),
        "",
        &mut keys,
    );
    let live: Vec<String> = keys.into_iter().filter(|k| is_reloadable(k)).collect();
    assert!(
        live.len() > 30,
        "the live settings were found: {}",
        live.len()
    );
    let mut failures = Vec::new();
    for key in &live {
        let mut running = Config::default();
        if let Some(context) = CONTEXT.iter().find(|c| c.key == key) {
            (context.set)(&mut running);
        }
        let base = serde_json::to_value(&running).expect("config serializes");
        let before = observed(&running);
        let Some(loaded) = changed_alone(&base, key) else {
            failures.push(format!("{key}: no other valid value to try"));
            continue;
        };
        let merge = merge_reloadable(&running, &loaded).expect("merge");
        if merge.changed != [key.clone()] {
            failures.push(format!("{key}: the reload changed {:?}", merge.changed));
            continue;
        }
        let after = observed(&merge.config);
        if after == before {
            failures.push(format!("{key}: no stage reads it after a reload"));
        }
    }
    assert!(
        failures.is_empty(),
        "documented as live but not:\n{}",
        failures.join("\n")
    );
}

#[test]
fn restart_only_settings_are_kept_by_a_reload() {
    let running = Config::default();
    let mut loaded = Config::default();
    loaded.batch_processing.when_queue_full = crate::config::QueueFull::Reject;
    loaded.resource_management.cleanup_interval_seconds = 5;
    loaded.kafka.commit_interval_ms = 50;
    let merge = merge_reloadable(&running, &loaded).expect("merge");
    assert!(merge.changed.is_empty(), "{:?}", merge.changed);
    assert_eq!(
        merge.needs_restart,
        [
            "batch_processing.when_queue_full",
            "kafka.commit_interval_ms",
            "resource_management.cleanup_interval_seconds",
        ]
    );
    assert_eq!(merge.config, running);
}
