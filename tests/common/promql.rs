//! The PromQL the deploy checks need (selectors, matchers, grouping labels) and what kbatch
//! exports (metric families and the label values a fresh registry pre-records), for
//! `tests/deploy_monitoring.rs`.

use std::collections::{BTreeMap, BTreeSet};

use kbatch_core::model::ModelId;
use kbatch_core::telemetry::models::{ModelView, ModelsView, VersionState, VersionView};
use kbatch_core::telemetry::Metrics;

/// Labels Prometheus attaches to every scraped series (target labels).
pub const TARGET_LABELS: [&str; 2] = ["instance", "job"];
/// Labels whose values depend on the deployment (topic names, partition numbers).
pub const FREE_FORM_LABELS: [&str; 2] = ["topic", "partition"];

// ---------------------------------------------------------------------------------------------
// What kbatch exports.

/// The metric families of a fresh registry, with the label values kbatch pre-records.
pub struct Exported {
    pub families: BTreeSet<String>,
    pub histograms: BTreeSet<String>,
    /// family → label → values seen in the exposition (`le` left out).
    pub labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exported {
    pub fn new() -> Self {
        let m = Metrics::new(256).expect("registry");
        // Lag has no series before an assignment; one placeholder makes its labels visible.
        m.consumer_lag.with_label_values(&["topic", "0"]).set(0);
        // Nor do the per-model-version series before the registry reports and a batch runs.
        m.model_batch(&ModelId::new("model", "1"), 1);
        m.model_load_failed("model");
        m.set_models(&ModelsView {
            models: vec![ModelView {
                name: "model".into(),
                policy: "latest".into(),
                policy_problem: None,
                manifest_error: None,
                versions: vec![VersionView {
                    version: "1".into(),
                    state: VersionState::Ready,
                    signature: None,
                    device: None,
                    error: None,
                }],
            }],
            ..ModelsView::default()
        });
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
    pub fn family<'a>(&self, series: &'a str) -> Option<&'a str> {
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
pub fn parse_sample(line: &str) -> (&str, Vec<(String, String)>) {
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
pub struct Matcher {
    pub label: String,
    pub op: String,
    pub value: String,
}

/// A `kbatch_*` series selector.
#[derive(Debug)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub selectors: Vec<Selector>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` clauses.
    pub grouping: Vec<String>,
    /// `label_values(metric, label)`: the label asked for.
    pub label_values: Vec<(String, String)>,
    pub problems: Vec<String>,
}

pub fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

pub fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// A character cursor over an expression; quoted strings are skipped as a whole.
pub struct Cursor<'a> {
    pub s: &'a [u8],
    pub i: usize,
}

impl Cursor<'_> {
    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    pub fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted string at the cursor (`"`, `'` or backtick), unescaped minimally.
    pub fn string(&mut self) -> Option<String> {
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
    pub fn ident_list(&mut self) -> Option<Vec<String>> {
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
    pub fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
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
pub fn scan(expr: &str) -> Scan {
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
pub fn check_expr(e: &Exported, what: &str, expr: &str) -> Vec<String> {
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
