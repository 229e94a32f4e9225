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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kbatch::config::{Config, PerformanceMonitoring};
use kbatch::telemetry::Metrics;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const RULES: &str = "deploy/prometheus/kbatch-alerts.yml";
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/kbatch-dashboard.json";

/// The rules whose thresholds are the seed's `performance_monitoring` defaults.
const LATENCY_RULE: &str = "KbatchEndToEndLatencyP99High";
const ERROR_RATE_RULE: &str = "KbatchErrorRateHigh";

/// Labels Prometheus attaches to every scraped series (target labels).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];
/// Labels whose values depend on the deployment (topic names, partition numbers).
const FREE_FORM_LABELS: [&str; 2] = ["topic", "partition"];

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
// What kbatch exports.

/// The metric families of a fresh registry, with the label values kbatch pre-records.
struct Exported {
    families: BTreeSet<String>,
    histograms: BTreeSet<String>,
    /// family → label → values seen in the exposition (`le` left out).
    labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exported {
    fn new() -> Self {
        let m = Metrics::new(256).expect("registry");
        // Lag has no series before an assignment; one placeholder makes its labels visible.
        m.consumer_lag.with_label_values(&["topic", "0"]).set(0);
        let families: BTreeSet<String> = m.names().iter().cloned().collect();
        let mut e = Exported {
            families,
            histograms: BTreeSet::new(),
            labels: BTreeMap::new(),
        };
        let page = m.render();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, "histogram")) = rest.split_once(' ') {
                    e.histograms.insert(name.to_owned());
                }
            }
        }
        for line in page
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, labels) = parse_sample(line);
            let family = e
                .family(series)
                .unwrap_or_else(|| panic!("exposed series {series} has no family"))
                .to_owned();
            let entry = e.labels.entry(family).or_default();
            for (k, v) in labels {
                if k != "le" {
                    entry.entry(k).or_default().insert(v);
                }
            }
        }
        e
    }

    /// The family a series name belongs to, if kbatch exports it.
    fn family<'a>(&self, series: &'a str) -> Option<&'a str> {
        if self.families.contains(series) {
            return Some(series);
        }
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| series.strip_suffix(s))
            .find(|base| self.histograms.contains(*base))
    }
}

/// `name{k="v",...} value` → (name, labels).
fn parse_sample(line: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = line.split_once('{') else {
        return (line.split(' ').next().unwrap_or(line), Vec::new());
    };
    let body = rest.split_once('}').map_or("", |(b, _)| b);
    let labels = body
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    (name, labels)
}

// ---------------------------------------------------------------------------------------------
// PromQL, as far as the checks need it.

#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A `kbatch_*` series selector.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct Scan {
    selectors: Vec<Selector>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` clauses.
    grouping: Vec<String>,
    /// `label_values(metric, label)`: the label asked for.
    label_values: Vec<(String, String)>,
    problems: Vec<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// A character cursor over an expression; quoted strings are skipped as a whole.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted string at the cursor (`"`, `'` or backtick), unescaped minimally.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|c| matches!(c, b'"' | b'\'' | b'`'))?;
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' if quote != b'`' => {
                    out.extend(self.peek());
                    self.i += 1;
                }
                c if c == quote => return Some(String::from_utf8_lossy(&out).into_owned()),
                c => out.push(c),
            }
        }
        None
    }

    /// A parenthesized, comma-separated list of identifiers, if one is at the cursor.
    fn ident_list(&mut self) -> Option<Vec<String>> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek()? {
                b')' => {
                    self.i += 1;
                    return Some(out);
                }
                b',' => self.i += 1,
                c if is_ident_start(c) => out.push(self.ident()),
                _ => return None,
            }
        }
    }

    /// `{label op "value", ...}` after a metric name; `Ok(vec![])` when there is no brace.
    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let save = self.i;
        self.skip_ws();
        if self.peek() != Some(b'{') {
            self.i = save;
            return Ok(Vec::new());
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b',') => self.i += 1,
                Some(c) if is_ident_start(c) => {
                    let label = self.ident();
                    self.skip_ws();
                    let op = ["=~", "!~", "!=", "="]
                        .into_iter()
                        .find(|op| self.s[self.i..].starts_with(op.as_bytes()))
                        .ok_or_else(|| format!("no matcher operator after label {label}"))?;
                    self.i += op.len();
                    self.skip_ws();
                    let value = self
                        .string()
                        .ok_or_else(|| format!("label {label}: unquoted or unterminated value"))?;
                    out.push(Matcher {
                        label,
                        op: op.to_owned(),
                        value,
                    });
                }
                _ => return Err("malformed label matchers".to_owned()),
            }
        }
    }
}

/// The `kbatch_*` selectors, grouping labels and `label_values` calls of one expression.
fn scan(expr: &str) -> Scan {
    let mut c = Cursor {
        s: expr.as_bytes(),
        i: 0,
    };
    let mut out = Scan::default();
    while let Some(ch) = c.peek() {
        if matches!(ch, b'"' | b'\'' | b'`') {
            if c.string().is_none() {
                out.problems.push("unterminated string".to_owned());
            }
            continue;
        }
        if !is_ident_start(ch) {
            c.i += 1;
            continue;
        }
        let word = c.ident();
        if word.starts_with("kbatch_") {
            match c.matchers() {
                Ok(matchers) => out.selectors.push(Selector {
                    name: word,
                    matchers,
                }),
                Err(e) => out.problems.push(format!("{word}: {e}")),
            }
        } else if matches!(
            word.as_str(),
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            if let Some(labels) = c.ident_list() {
                out.grouping.extend(labels);
            }
        } else if word == "label_values" {
            let save = c.i;
            if let Some([metric, label]) = c.ident_list().as_deref() {
                out.label_values.push((metric.clone(), label.clone()));
            }
            // Scan the arguments again so the metric is checked as a selector too.
            c.i = save;
        }
    }
    out
}

/// Everything wrong with one PromQL expression, as messages naming `what`.
fn check_expr(e: &Exported, what: &str, expr: &str) -> Vec<String> {
    let s = scan(expr);
    let mut problems: Vec<String> = s.problems.iter().map(|p| format!("{what}: {p}")).collect();
    let mut used_labels: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
    used_labels.insert("le");
    for sel in &s.selectors {
        let Some(family) = e.family(&sel.name) else {
            problems.push(format!(
                "{what}: {} is not a metric kbatch exports",
                sel.name
            ));
            continue;
        };
        let labels = e.labels.get(family);
        used_labels.extend(
            labels
                .into_iter()
                .flat_map(|l| l.keys().map(String::as_str)),
        );
        for m in &sel.matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) || (m.label == "le" && family != sel.name)
            {
                continue;
            }
            let Some(values) = labels.and_then(|l| l.get(&m.label)) else {
                problems.push(format!("{what}: {} has no label {}", sel.name, m.label));
                continue;
            };
            if FREE_FORM_LABELS.contains(&m.label.as_str()) {
                continue;
            }
            let wanted: Vec<&str> = match m.op.as_str() {
                "=" | "!=" if m.value.is_empty() => Vec::new(),
                "=" | "!=" => vec![m.value.as_str()],
                // A plain alternation (`a|b`) is checked; a template variable or a real
                // regular expression is not.
                _ if m.value.bytes().all(|b| is_ident(b) || b == b'|') => {
                    m.value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for v in wanted {
                if !values.contains(v) {
                    problems.push(format!(
                        "{what}: {}{{{}{}\"{v}\"}}: kbatch records no such {} (has {values:?})",
                        sel.name, m.label, m.op, m.label
                    ));
                }
            }
        }
    }
    if !s.selectors.is_empty() {
        for g in &s.grouping {
            if !used_labels.contains(g.as_str()) {
                problems.push(format!(
                    "{what}: groups by {g}, a label none of its kbatch metrics has"
                ));
            }
        }
    }
    for (metric, label) in &s.label_values {
        let has = e
            .family(metric)
            .and_then(|f| e.labels.get(f))
            .is_some_and(|l| l.contains_key(label));
        if !has {
            problems.push(format!(
                "{what}: label_values({metric}, {label}): no such label"
            ));
        }
    }
    problems
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
