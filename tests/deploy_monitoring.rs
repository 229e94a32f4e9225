//! The monitoring files under `deploy/` against what kbatch exports: the Prometheus alert rules
//! (`deploy/prometheus/kbatch-alerts.yml`), the scrape configuration that loads them
//! (`deploy/prometheus/prometheus.yml`) and the Grafana dashboard
//! (`deploy/grafana/kbatch-dashboard.json`).
//!
//! Invariant checked: every `kbatch_*` series a PromQL expression names belongs to a metric
//! family `Metrics` registers (histogram series carry `_bucket`/`_sum`/`_count`), every label it
//! matches or groups by is one that family has, and every fixed label value it matches (tier,
//! status, error_type, stage, flush_reason, result) is one kbatch records; the two seed
//! thresholds in the rules equal `Config::default().performance_monitoring`. The checks are
//! functions of the parsed documents, so the tests at the end feed them broken copies and
//! require a rejection: a misspelled metric or label can never pass silently.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::promql::*;

use kbatch_core::config::{Config, PerformanceMonitoring};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const RULES: &str = "deploy/prometheus/kbatch-alerts.yml";
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/kbatch-dashboard.json";

/// The rules whose thresholds are the seed's `performance_monitoring` defaults.
const LATENCY_RULE: &str = "KbatchEndToEndLatencyP99High";
const ERROR_RATE_RULE: &str = "KbatchErrorRateHigh";

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read_yaml(p: &Path) -> Yaml {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_json(p: &Path) -> Json {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// The documents.

fn str_at<'a>(v: &'a Yaml, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Yaml::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// `5m`, `1h30m`, `0s`: Prometheus durations.
fn is_duration(s: &str) -> bool {
    let units = ["ms", "s", "m", "h", "d", "w", "y"];
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(u) = units.iter().find(|u| rest.starts_with(*u)) else {
            return false;
        };
        rest = &rest[u.len()..];
    }
    true
}

/// Every alerting rule: `(group, rule)`.
fn rules(doc: &Yaml) -> Vec<(&str, &Yaml)> {
    let groups = doc.get("groups").and_then(Yaml::as_sequence);
    groups
        .into_iter()
        .flatten()
        .flat_map(|g| {
            let name = str_at(g, "name").unwrap_or("?");
            g.get("rules")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .map(move |r| (name, r))
        })
        .collect()
}

fn check_rules(doc: &Yaml, e: &Exported) -> Vec<String> {
    let mut problems = Vec::new();
    let groups = doc.get("groups").and_then(Yaml::as_sequence);
    if groups.is_none_or(|g| g.is_empty()) {
        problems.push("rules: no groups".to_owned());
    }
    for g in groups.into_iter().flatten() {
        let name = str_at(g, "name");
        if name.is_none() {
            problems.push("rules: a group without a name".to_owned());
        }
        if g.get("rules")
            .and_then(Yaml::as_sequence)
            .is_none_or(|r| r.is_empty())
        {
            problems.push(format!("rules: group {name:?} has no rules"));
        }
    }
    let mut names = BTreeSet::new();
    for (group, r) in rules(doc) {
        let Some(alert) = str_at(r, "alert") else {
            problems.push(format!("rules: a rule of group {group} has no alert name"));
            continue;
        };
        if !names.insert(alert) {
            problems.push(format!("rules: {alert} is defined twice"));
        }
        match str_at(r, "expr") {
            Some(expr) => problems.extend(check_expr(e, alert, expr)),
            None => problems.push(format!("{alert}: no expr")),
        }
        if !str_at(r, "for").is_some_and(is_duration) {
            problems.push(format!("{alert}: `for` missing or not a duration"));
        }
        let severity = r.get("labels").and_then(|l| str_at(l, "severity"));
        if !severity.is_some_and(|s| ["info", "warning", "critical"].contains(&s)) {
            problems.push(format!(
                "{alert}: labels.severity missing or unknown: {severity:?}"
            ));
        }
        for a in ["summary", "description"] {
            if r.get("annotations").and_then(|x| str_at(x, a)).is_none() {
                problems.push(format!("{alert}: annotations.{a} missing"));
            }
        }
    }
    problems
}

/// The number an alert compares against: what follows the expression's last `>`.
fn threshold(expr: &str) -> Option<f64> {
    let (_, after) = expr.rsplit_once('>')?;
    after.trim_start_matches('=').trim().parse().ok()
}

fn check_thresholds(doc: &Yaml, pm: &PerformanceMonitoring) -> Vec<String> {
    let mut problems = Vec::new();
    for (alert, want) in [
        (LATENCY_RULE, pm.alert_threshold_latency_ms),
        (ERROR_RATE_RULE, pm.alert_threshold_error_rate),
    ] {
        let expr = rules(doc)
            .into_iter()
            .find(|(_, r)| str_at(r, "alert") == Some(alert))
            .and_then(|(_, r)| str_at(r, "expr"));
        match expr.map(|x| (x, threshold(x))) {
            None => problems.push(format!("{alert}: no such rule")),
            Some((x, None)) => problems.push(format!("{alert}: no `> threshold` in {x:?}")),
            Some((_, Some(got))) if got != want => problems.push(format!(
                "{alert}: threshold {got} differs from the config default {want}"
            )),
            Some(_) => {}
        }
    }
    problems
}

fn check_prometheus(doc: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let rule_files: Vec<&str> = doc
        .get("rule_files")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    if !rule_files.iter().any(|f| f.ends_with("kbatch-alerts.yml")) {
        problems.push(format!(
            "prometheus: rule_files {rule_files:?} miss kbatch-alerts.yml"
        ));
    }
    let jobs = doc.get("scrape_configs").and_then(Yaml::as_sequence);
    let job = jobs
        .into_iter()
        .flatten()
        .find(|j| str_at(j, "job_name") == Some("kbatch"));
    let Some(job) = job else {
        problems.push(
            "prometheus: no scrape job named kbatch (the rules match job=\"kbatch\")".to_owned(),
        );
        return problems;
    };
    if str_at(job, "metrics_path").is_some_and(|p| p != "/metrics") {
        problems.push("prometheus: kbatch is scraped on a path other than /metrics".to_owned());
    }
    let targets: Vec<&str> = job
        .get("static_configs")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("targets").and_then(Yaml::as_sequence))
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    if targets.is_empty() || targets.iter().any(|t| !t.ends_with(":9090")) {
        problems.push(format!(
            "prometheus: kbatch targets {targets:?} are not all on port 9090"
        ));
    }
    problems
}

/// Every panel, rows' nested panels included.
fn panels(doc: &Json) -> Vec<&Json> {
    fn walk<'a>(list: Option<&'a Json>, out: &mut Vec<&'a Json>) {
        for p in list.and_then(Json::as_array).into_iter().flatten() {
            out.push(p);
            walk(p.get("panels"), out);
        }
    }
    let mut out = Vec::new();
    walk(doc.get("panels"), &mut out);
    out
}

fn json_str<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn uses_input_datasource(v: &Json) -> bool {
    v.get("datasource")
        .and_then(|d| json_str(d, "uid"))
        .is_some_and(|u| u == "${DS_PROMETHEUS}")
}

fn check_dashboard(doc: &Json, e: &Exported) -> Vec<String> {
    let mut problems = Vec::new();
    let input = doc
        .get("__inputs")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find(|i| json_str(i, "name") == Some("DS_PROMETHEUS"));
    if !input.is_some_and(|i| {
        json_str(i, "type") == Some("datasource") && json_str(i, "pluginId") == Some("prometheus")
    }) {
        problems.push("dashboard: no DS_PROMETHEUS datasource input".to_owned());
    }
    let schema = doc.get("schemaVersion").and_then(Json::as_u64);
    if schema.is_none_or(|v| v < 36) {
        problems.push("dashboard: schemaVersion missing or older than 36".to_owned());
    }
    let vars: Vec<&Json> = doc
        .pointer("/templating/list")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .collect();
    match vars.iter().find(|v| json_str(v, "name") == Some("tier")) {
        None => problems.push("dashboard: no tier template variable".to_owned()),
        Some(v) => {
            let query = v
                .get("query")
                .and_then(|q| q.as_str().or_else(|| json_str(q, "query")));
            match query {
                Some(q) => problems.extend(check_expr(e, "variable tier", q)),
                None => problems.push("dashboard: the tier variable has no query".to_owned()),
            }
            if !uses_input_datasource(v) {
                problems.push("dashboard: the tier variable does not use ${DS_PROMETHEUS}".into());
            }
        }
    }
    let all = panels(doc);
    if all.iter().all(|p| json_str(p, "type") == Some("row")) {
        problems.push("dashboard: no panels".to_owned());
    }
    let mut ids = BTreeSet::new();
    for p in all {
        let title = json_str(p, "title").unwrap_or("");
        if title.is_empty() {
            problems.push("dashboard: a panel without a title".to_owned());
        }
        if let Some(id) = p.get("id").and_then(Json::as_u64) {
            if !ids.insert(id) {
                problems.push(format!("{title}: panel id {id} is used twice"));
            }
        }
        if p.get("gridPos").is_none() {
            problems.push(format!("{title}: no gridPos"));
        }
        let kind = json_str(p, "type").unwrap_or("");
        match kind {
            "row" => continue,
            "timeseries" | "stat" | "heatmap" => {}
            other => problems.push(format!("{title}: unexpected panel type {other:?}")),
        }
        if !uses_input_datasource(p) {
            problems.push(format!("{title}: panel does not use ${{DS_PROMETHEUS}}"));
        }
        let targets = p.get("targets").and_then(Json::as_array);
        if targets.is_none_or(|t| t.is_empty()) {
            problems.push(format!("{title}: no targets"));
        }
        for t in targets.into_iter().flatten() {
            let r = json_str(t, "refId").unwrap_or("?");
            match json_str(t, "expr") {
                Some(expr) => problems.extend(check_expr(e, &format!("{title} [{r}]"), expr)),
                None => problems.push(format!("{title} [{r}]: empty expr")),
            }
            if !uses_input_datasource(t) {
                problems.push(format!(
                    "{title} [{r}]: target does not use ${{DS_PROMETHEUS}}"
                ));
            }
        }
    }
    problems
}

/// Every `kbatch_*` family the documents' expressions use.
fn families_used(e: &Exported, exprs: &[&str]) -> BTreeSet<String> {
    exprs
        .iter()
        .flat_map(|x| scan(x).selectors)
        .filter_map(|s| e.family(&s.name).map(str::to_owned))
        .collect()
}

fn dashboard_exprs(doc: &Json) -> Vec<&str> {
    panels(doc)
        .into_iter()
        .flat_map(|p| {
            p.get("targets")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|t| json_str(t, "expr"))
        .collect()
}

fn assert_clean(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// The shipped files.

#[test]
fn the_alert_rules_are_well_formed_and_use_only_exported_metrics() {
    let e = Exported::new();
    let doc = read_yaml(&path(RULES));
    assert_clean(RULES, check_rules(&doc, &e));
    assert!(rules(&doc).len() >= 10, "fewer rules than the brief lists");
}

#[test]
fn the_alert_thresholds_are_the_config_defaults() {
    let doc = read_yaml(&path(RULES));
    let pm = Config::default().performance_monitoring;
    assert_eq!(pm.alert_threshold_latency_ms, 100.0);
    assert_eq!(pm.alert_threshold_error_rate, 0.01);
    assert_clean(RULES, check_thresholds(&doc, &pm));
    let latency = rules(&doc)
        .into_iter()
        .find_map(|(_, r)| (str_at(r, "alert") == Some(LATENCY_RULE)).then(|| str_at(r, "expr")))
        .flatten()
        .expect("latency rule");
    assert!(
        latency.contains("histogram_quantile(0.99")
            && latency.contains("kbatch_request_end_to_end_latency_ms_bucket"),
        "{latency}"
    );
}

#[test]
fn prometheus_scrapes_kbatch_and_loads_the_rules() {
    let doc = read_yaml(&path(PROMETHEUS));
    assert_clean(PROMETHEUS, check_prometheus(&doc));
    // The rules file is named relative to prometheus.yml.
    assert!(path(PROMETHEUS)
        .with_file_name("kbatch-alerts.yml")
        .exists());
}

#[test]
fn the_dashboard_is_well_formed_and_uses_only_exported_metrics() {
    let e = Exported::new();
    let doc = read_json(&path(DASHBOARD));
    assert_clean(DASHBOARD, check_dashboard(&doc, &e));
}

#[test]
fn the_dashboard_shows_every_exported_metric() {
    let e = Exported::new();
    let doc = read_json(&path(DASHBOARD));
    let used = families_used(&e, &dashboard_exprs(&doc));
    let missing: Vec<&String> = e.families.difference(&used).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

// ---------------------------------------------------------------------------------------------
// The checks reject broken copies.

/// Copies `rel` into a temporary directory with every `from` replaced by `to` (`from` must occur).
fn broken_copy(rel: &str, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(path(rel)).expect("read");
    assert!(text.contains(from), "{rel} does not contain {from:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir
        .path()
        .join(Path::new(rel).file_name().expect("file name"));
    std::fs::write(&p, text.replace(from, to)).expect("write");
    (dir, p)
}

fn assert_rejected(problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}: {problems:?}"
    );
}

#[test]
fn a_misspelled_metric_in_a_rule_is_rejected() {
    let e = Exported::new();
    for (from, to) in [
        ("kbatch_dead_letters_total", "kbatch_dead_letter_total"),
        (
            "kbatch_request_end_to_end_latency_ms_bucket",
            "kbatch_request_end_to_end_latency_ms_buckets",
        ),
        // A suffix only histograms have.
        (
            "kbatch_consumer_lag_records",
            "kbatch_consumer_lag_records_count",
        ),
    ] {
        let (_dir, p) = broken_copy(RULES, from, to);
        assert_rejected(check_rules(&read_yaml(&p), &e), to);
    }
}

#[test]
fn a_wrong_label_or_label_value_in_a_rule_is_rejected() {
    let e = Exported::new();
    for (from, to, needle) in [
        (
            "\"delivery_failed\"",
            "\"delivery_failure\"",
            "delivery_failure",
        ),
        ("status=\"OVERLOADED\"", "status=\"OVERLOAD\"", "OVERLOAD"),
        (
            "result=\"rejected\"",
            "outcome=\"rejected\"",
            "no label outcome",
        ),
        ("by (le, tier)", "by (le, tiers)", "groups by tiers"),
    ] {
        let (_dir, p) = broken_copy(RULES, from, to);
        assert_rejected(check_rules(&read_yaml(&p), &e), needle);
    }
}

#[test]
fn an_incomplete_rule_is_rejected() {
    let e = Exported::new();
    for (from, to, needle) in [
        (
            "severity: critical",
            "priority: critical",
            "labels.severity",
        ),
        (
            "summary: \"kbatch error rate",
            "title: \"kbatch error rate",
            "annotations.summary",
        ),
        ("for: 5m", "for: soon", "not a duration"),
    ] {
        let (_dir, p) = broken_copy(RULES, from, to);
        assert_rejected(check_rules(&read_yaml(&p), &e), needle);
    }
}

#[test]
fn a_threshold_drifting_from_the_config_is_rejected() {
    let pm = Config::default().performance_monitoring;
    let (_dir, p) = broken_copy(RULES, "[5m]))) > 100", "[5m]))) > 150");
    assert_rejected(check_thresholds(&read_yaml(&p), &pm), LATENCY_RULE);
    let (_dir, p) = broken_copy(
        RULES,
        "  > 0.01\n        for: 5m",
        "  > 0.02\n        for: 5m",
    );
    assert_rejected(check_thresholds(&read_yaml(&p), &pm), ERROR_RATE_RULE);
    // And the other way round: a config default that moved leaves the shipped rules stale.
    let moved = PerformanceMonitoring {
        alert_threshold_latency_ms: 50.0,
        ..pm
    };
    assert_rejected(
        check_thresholds(&read_yaml(&path(RULES)), &moved),
        LATENCY_RULE,
    );
}

#[test]
fn a_prometheus_config_without_the_rules_or_job_is_rejected() {
    let (_dir, p) = broken_copy(PROMETHEUS, "- kbatch-alerts.yml", "- other.yml");
    assert_rejected(check_prometheus(&read_yaml(&p)), "kbatch-alerts.yml");
    let (_dir, p) = broken_copy(PROMETHEUS, "job_name: kbatch", "job_name: inference");
    assert_rejected(check_prometheus(&read_yaml(&p)), "no scrape job");
    let (_dir, p) = broken_copy(PROMETHEUS, "kbatch:9090", "kbatch:8000");
    assert_rejected(check_prometheus(&read_yaml(&p)), "9090");
}

#[test]
fn a_misspelled_metric_or_label_on_the_dashboard_is_rejected() {
    let e = Exported::new();
    for (from, to, needle) in [
        (
            "kbatch_dedup_joins_total",
            "kbatch_dedup_join_total",
            "kbatch_dedup_join_total",
        ),
        (
            "kbatch_batch_size_bucket",
            "kbatch_batch_sizes_bucket",
            "kbatch_batch_sizes_bucket",
        ),
        (
            "kbatch_queue_wait_ms_sum",
            "kbatch_queue_wait_ms_total",
            "kbatch_queue_wait_ms_total",
        ),
        ("by (flush_reason)", "by (reason)", "groups by reason"),
        (
            "label_values(kbatch_replies_total, tier)",
            "label_values(kbatch_replies_total, priority)",
            "no such label",
        ),
    ] {
        let (_dir, p) = broken_copy(DASHBOARD, from, to);
        assert_rejected(check_dashboard(&read_json(&p), &e), needle);
    }
}

#[test]
fn an_incomplete_dashboard_is_rejected() {
    let e = Exported::new();
    let mut doc = read_json(&path(DASHBOARD));
    doc["__inputs"] = Json::Array(Vec::new());
    let first = doc["panels"]
        .as_array_mut()
        .expect("panels")
        .iter_mut()
        .find(|p| p["type"] == "timeseries")
        .expect("a timeseries panel");
    first["targets"][0]["expr"] = Json::String(String::new());
    first["title"] = Json::String(String::new());
    let problems = check_dashboard(&doc, &e);
    assert_rejected(problems.clone(), "DS_PROMETHEUS datasource input");
    assert_rejected(problems.clone(), "empty expr");
    assert_rejected(problems, "a panel without a title");
}

#[test]
fn the_expression_scanner_reads_selectors_and_grouping() {
    let s = scan(
        r#"sum by (tier) (rate(kbatch_replies_total{status!="OK", tier=~"$tier"}[5m])) / on(job) up{job="kbatch_x"}"#,
    );
    assert_eq!(s.selectors.len(), 1, "{s:?}");
    let m = &s.selectors[0].matchers;
    assert_eq!(
        (m[0].label.as_str(), m[0].op.as_str(), m[0].value.as_str()),
        ("status", "!=", "OK")
    );
    assert_eq!(
        (m[1].label.as_str(), m[1].op.as_str(), m[1].value.as_str()),
        ("tier", "=~", "$tier")
    );
    assert_eq!(s.grouping, ["tier", "job"]);
    assert_eq!(threshold("x > 0.01"), Some(0.01));
    assert_eq!(threshold("x >= 5"), Some(5.0));
    assert!(is_duration("1h30m") && is_duration("0m") && !is_duration("5") && !is_duration(""));
}

#[test]
fn the_shipped_rules_are_what_kbatch_alert_rules_writes_for_the_defaults() {
    let shipped = std::fs::read_to_string(path(RULES)).expect("read");
    let written = kbatch::alerts::render(&Config::default(), kbatch::alerts::DEFAULTS);
    assert!(
        shipped == written,
        "deploy/prometheus/kbatch-alerts.yml is not `kbatch alert-rules` output: regenerate it \
         with `cargo run -q -- alert-rules > deploy/prometheus/kbatch-alerts.yml`"
    );
}
